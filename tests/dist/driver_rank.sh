#!/usr/bin/env bash
# One rank of the driver fault test (run by mpirun through mpirun_test.sh):
# train_particlenet --distributed, the last rank killing itself at step 3.
#   driver_rank.sh MODE TRAIN_PARTICLENET DATA CONFIG [DEVICE]
# DEVICE cuda: CUDA contexts and the NCCL backend (default: the CPU, MPI).
exe=$2 data=$3 config=$4 device=${5:-cpu}
exec "$exe" --distributed --device "$device" --data "$data" --config "$config" --epochs 50 --max-steps 40 --threads 1 \
  --comm-timeout 20 --fault-rank $((OMPI_COMM_WORLD_SIZE - 1)) --fault-step 3 --ckpt-every 0 --metrics /dev/null \
  --out /dev/null
