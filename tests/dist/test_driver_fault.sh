#!/usr/bin/env bash
# A rank of a data-parallel training run dies mid-way: the survivors must
# report the fault and exit with an error within the timeout (no hang).
#   test_driver_fault.sh MPIRUN_TEST GEN_DATASET TRAIN_PARTICLENET CONFIG [DEVICE]
set -eu
runner=$1 gen=$2 exe=$3 config=$4 device=${5:-cpu}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$gen" jets --events 300 --seed 4 --out "$dir/jets.h5" >/dev/null
"$runner" fault 3 "$(dirname "$0")/driver_rank.sh" kill "$exe" "$dir/jets.h5" "$config" "$device"
