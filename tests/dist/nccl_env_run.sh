#!/usr/bin/env bash
# The environment-variable bootstrap under mpirun: the launcher makes the
# NCCL ids (test_dist_nccl print-id) and every rank inherits them.
#   nccl_env_run.sh MPIRUN_TEST NP TEST_DIST_NCCL
set -eu
runner=$1 np=$2 prog=$3
GPUML_TEST_NCCL_ID=$("$prog" print-id)
GPUML_TEST_NCCL_ID1=$("$prog" print-id)
export GPUML_TEST_NCCL_ID GPUML_TEST_NCCL_ID1
exec "$runner" plain "$np" "$prog" env
