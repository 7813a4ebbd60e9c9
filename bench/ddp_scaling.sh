#!/usr/bin/env bash
# Data-parallel training throughput on this machine: the GravNet driver
# (examples/train_gravnet) with 1 rank x T threads, and with R ranks x T/R
# threads under mpirun --distributed, on the same data, global batch and
# number of epochs. Prints each run's events/s (the driver's final metrics)
# and the ratio. Rounds alternate the configurations (shared machines are
# noisy); the best of each is reported.
#
#   bench/ddp_scaling.sh [BUILD_DIR] [ROUNDS] [RANKS] [THREADS]
#
# Defaults: build 3 2 2 (one process with 2 threads against 2 processes
# with 1 thread each: the same 2 cores).
# CPU ranks only; what a step does on GPUs (launches, NCCL calls and bytes)
# is counted by bench/ddp_step_counts.sh, and docs/scaling.md's model uses
# those counts.
set -euo pipefail
b=${1:-build} rounds=${2:-3} ranks=${3:-2} threads=${4:-2}
cfg=$(dirname "$0")/../examples/configs/gravnet_oc.json
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # README, "Threads"
"$b/examples/gen_dataset" hgcal --events 256 --seed 1 --min-hits 100 --max-hits 600 --out "$d/train.h5" >/dev/null
common=(--data "$d/train.h5" --config "$cfg" --epochs 1 --max-rows 8000 --max-events 32 --out "$d/m.h5")
per=$((threads / ranks))
[ "$per" -ge 1 ] || per=1
best1=0 bestn=0
for r in $(seq "$rounds"); do
  e1=$("$b/examples/train_gravnet" "${common[@]}" --threads "$threads" 2>/dev/null | tail -1 |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_s"])')
  en=$(mpirun --oversubscribe --bind-to none -np "$ranks" "$b/examples/train_gravnet" "${common[@]}" \
       --threads "$per" --distributed 2>/dev/null | grep '^{' | tail -1 |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_s"])')
  echo "round $r: 1 rank x $threads threads $e1 ev/s | $ranks ranks x $per threads $en ev/s"
  best1=$(python3 -c "print(max($best1, $e1))")
  bestn=$(python3 -c "print(max($bestn, $en))")
done
python3 -c "print(f'best: 1 rank {$best1:.1f} ev/s, $ranks ranks {$bestn:.1f} ev/s, ratio {$bestn / $best1:.2f}')"
