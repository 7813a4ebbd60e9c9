#!/usr/bin/env bash
# Launch report (issue 11, item 8): GravNet and ParticleNet training steps on
# the emulated CUDA platform, then per kernel the threads launched and the
# largest number of loop iterations one CUDA thread ran (every for/while
# iteration in the kernel and the bodies it calls: tests/cudaemu/wrap.cpp.in),
# in two comparisons (tools/emu_launch_report.py):
#   events  4x the events per batch, events of the same size: no kernel's
#           per-thread work may grow;
#   size    4x the hits (particles) per event, the same number of events:
#           per-thread work that grows must be bounded by one event and say
#           why (the report prints the reason).
#   tools/emu_launch_report.sh [OUT_DIR]     (builds build-emu/ if needed)
# Writes OUT_DIR/report.md; exit status 1 when a kernel is SERIAL.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
b=build-emu
[ -x $b/examples/train_gravnet ] || ./tools/build.sh --cuda-emu >/dev/null
mkdir -p "$out"/data
for r in base events size; do
  mkdir -p "$out/$r"
  rm -f "$out/$r"/launches.*
done
gen() { $b/examples/gen_dataset "$@" >/dev/null; }
gen hgcal --events 64 --seed 1 --min-hits 200 --max-hits 400 --out "$out"/data/h.h5
gen hgcal --events 16 --seed 1 --min-hits 800 --max-hits 1600 --out "$out"/data/h4.h5
gen jets --events 512 --seed 2 --min-particles 20 --max-particles 40 --out "$out"/data/j.h5
gen jets --events 128 --seed 2 --min-particles 80 --max-particles 160 --out "$out"/data/j4.h5
run() { # dir hgcal-file gravnet-events jets-file particlenet-jets
  local dir=$out/$1
  GPUML_EMU_LAUNCH_LOG=$dir $b/examples/train_gravnet --data "$2" --config examples/configs/gravnet_oc.json \
    --device cuda --max-events "$3" --max-rows 100000 --max-steps 1 --threads 2 --ckpt-every 0 \
    --metrics "$dir"/g.jsonl --out "$dir"/g.h5 >/dev/null 2>&1
  GPUML_EMU_LAUNCH_LOG=$dir $b/examples/train_particlenet --data "$4" \
    --config examples/configs/particlenet_lite.json --device cuda --max-events "$5" --max-steps 1 \
    --threads 2 --ckpt-every 0 --metrics "$dir"/p.jsonl --out "$dir"/p.h5 >/dev/null 2>&1
}
run base "$out"/data/h.h5 2 "$out"/data/j.h5 8
run events "$out"/data/h.h5 8 "$out"/data/j.h5 32
run size "$out"/data/h4.h5 2 "$out"/data/j4.h5 8
rows() { python3 -c 'import json,sys; print(max(json.loads(l)["rows"] for l in open(sys.argv[1])))' "$1"; }
{
  echo "# Launch report of the emulated CUDA platform"
  echo
  echo "Made by \`tools/emu_launch_report.sh\` (build-emu, one training step each, GPUML_EMU_SEED unset)."
  echo "Rows per step - GravNet (object condensation): base $(rows "$out"/base/g.jsonl), events $(rows "$out"/events/g.jsonl),"
  echo "size $(rows "$out"/size/g.jsonl); ParticleNet: base $(rows "$out"/base/p.jsonl), events $(rows "$out"/events/p.jsonl),"
  echo "size $(rows "$out"/size/p.jsonl)."
  echo
  python3 tools/emu_launch_report.py "$out"/base "$out"/events "$out"/size --scale 4
} | tee "$out"/report.md
exit "${PIPESTATUS[0]}"
