#!/usr/bin/env bash
# What one data-parallel training step launches and moves, counted on the
# emulated CUDA platform (docs/scaling.md, "What a step does, counted"):
# both drivers under mpirun --distributed on emulated GPUs (NCCL path, one
# device per rank), at 2 and 4 ranks, each run once with 1 step and once with
# 3 steps; the difference / 2 is one step without the set-up (model
# creation, initial broadcasts, first-use allocations). The counts come from
# the emulator's launch log (GPUML_EMU_LAUNCH_LOG: one line per kernel
# launch) and NCCL trace (GPUML_EMU_NCCL_TRACE: one line per collective or
# grouped send/recv, with its bytes); bench/ddp_step_counts.py reads them.
# Counts only: the emulator's times say nothing about a GPU.
#
#   bench/ddp_step_counts.sh [OUT_DIR] [RANKS...]     (default ranks: 2 4)
#
# Writes OUT_DIR/counts.json (for bench/scaling_model.py --counts) and
# prints the table. Builds build-emu/ if needed. ~5-10 min on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
shift || true
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(2 4)
b=build-emu
[ -x $b/examples/train_gravnet ] || ./tools/build.sh --cuda-emu >/dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
export GPUML_EMU_DEVICES=4 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Small events: launch counts and gradient bytes do not depend on the hits
# per event (ragged batches: one launch per op per batch), only the time does.
$b/examples/gen_dataset hgcal --events 64 --seed 1 --min-hits 50 --max-hits 150 --out "$out"/h.h5 >/dev/null
$b/examples/gen_dataset jets --events 256 --seed 2 --out "$out"/j.h5 >/dev/null
run() { # driver np steps
  local drv=$1 np=$2 steps=$3 dir=$out/$1.np$2.s$3 data cfg
  case $drv in
    gravnet) data=$out/h.h5 cfg=examples/configs/gravnet_oc.json ;;
    particlenet) data=$out/j.h5 cfg=examples/configs/particlenet_lite.json ;;
  esac
  rm -rf "$dir" && mkdir -p "$dir"
  GPUML_EMU_LAUNCH_LOG=$dir GPUML_EMU_NCCL_TRACE=$dir \
    mpirun --oversubscribe --bind-to none -x GPUML_EMU_LAUNCH_LOG -x GPUML_EMU_NCCL_TRACE -x GPUML_EMU_DEVICES \
    -x OMP_NUM_THREADS -np "$np" $b/examples/train_$drv --distributed --device cuda --data "$data" --config "$cfg" \
    --max-events 8 --max-steps "$steps" --epochs 10 --threads 1 --ckpt-every 0 --comm-timeout 300 \
    --run-dir "$dir/run" >"$dir/stdout" 2>"$dir/stderr" ||
    { echo "failed: $drv np $np steps $steps (see $dir/stderr)" >&2; exit 1; }
}
for drv in gravnet particlenet; do
  for np in "${ranks[@]}"; do
    for steps in 1 3; do
      run $drv "$np" $steps
    done
  done
done
python3 bench/ddp_step_counts.py "$out" | tee "$out"/report.txt
