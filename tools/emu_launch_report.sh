#!/usr/bin/env bash
# Launch report (issue 11, item 8): GravNet and ParticleNet training steps
# on the emulated CUDA platform at two sizes (4x the rows), then per kernel
# the threads launched and the per-thread work, flagging kernels whose
# per-thread work grows with the rows (tools/emu_launch_report.py).
#   tools/emu_launch_report.sh [OUT_DIR]     (builds build-emu/ if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
b=build-emu
[ -x $b/examples/train_gravnet ] || ./tools/build.sh --cuda-emu >/dev/null
mkdir -p "$out"/small "$out"/large "$out"/data
rm -f "$out"/small/launches.* "$out"/large/launches.*
$b/examples/gen_dataset hgcal --events 64 --seed 1 --min-hits 200 --max-hits 400 --out "$out"/data/h.h5 >/dev/null
$b/examples/gen_dataset jets --events 512 --seed 2 --out "$out"/data/j.h5 >/dev/null
run() { # size events
  local dir=$out/$1 ev=$2
  GPUML_EMU_LAUNCH_LOG=$dir $b/examples/train_gravnet --data "$out"/data/h.h5 --config examples/configs/gravnet_oc.json \
    --device cuda --max-events "$ev" --max-rows 100000 --max-steps 2 --threads 2 --ckpt-every 0 \
    --metrics "$dir"/g.jsonl --out "$dir"/g.h5 >/dev/null 2>&1
  GPUML_EMU_LAUNCH_LOG=$dir $b/examples/train_particlenet --data "$out"/data/j.h5 \
    --config examples/configs/particlenet_lite.json --device cuda --max-events "$((ev * 8))" --max-steps 2 \
    --threads 2 --ckpt-every 0 --metrics "$dir"/p.jsonl --out "$dir"/p.h5 >/dev/null 2>&1
}
run small 4
run large 16
python3 tools/emu_launch_report.py "$out"/small "$out"/large --scale 4 | tee "$out"/report.txt
