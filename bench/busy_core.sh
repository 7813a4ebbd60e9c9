#!/usr/bin/env bash
# GravNet training on 2 threads while another process keeps one core busy,
# against the same run on a quiet machine, back to back (issue 13). Prints
# the busy/quiet throughput ratio; the target is >= 0.45 with no OpenMP
# environment variables set. Run after tools/build.sh.
#   bench/busy_core.sh [executor] [rounds]     executor: pool (default) | openmp | serial
# bench/README-busy.md has measured numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
b=${BUILD:-build}
data=${TMPDIR:-/tmp}/gpuml_busy_core_$$.h5
trap 'rm -f "$data"' EXIT
"$b/examples/gen_dataset" hgcal --events 200 --seed 1 --min-hits 100 --max-hits 600 --out "$data" >/dev/null
# No environment: the point is what gpuml does by itself.
env -u OMP_WAIT_POLICY -u OMP_NUM_THREADS -u GOMP_SPINCOUNT -u OMP_PROC_BIND \
  "$b/bench/bench_busy_core" "$data" examples/configs/gravnet_oc.json "${1:-pool}" 2 30 "${2:-3}"
