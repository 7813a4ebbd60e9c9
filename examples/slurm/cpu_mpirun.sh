#!/bin/bash
# Data-parallel training on CPUs with Open MPI: N processes on one machine
# (or on the hosts of a hostfile), each with its share of the cores.
#   examples/slurm/cpu_mpirun.sh 2 --data jets_train.h5 --val jets_val.h5
set -euo pipefail
np=${1:?usage: cpu_mpirun.sh NP driver-options...}
shift
threads=$(( $(nproc) / np ))
export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
# --enable-recovery: a dead rank does not kill the others before they report it.
mpirun --enable-recovery --bind-to none -np "$np" \
  ./build/examples/train_particlenet --distributed --threads "$OMP_NUM_THREADS" "$@"
