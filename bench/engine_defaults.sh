#!/usr/bin/env bash
# The engine's CPU defaults against the alternatives, across event sizes and
# submitting-thread counts (issue 13; bench/README-engine.md, "Defaults").
# One line per (sizes, threads, configuration): engine events/s, p99, events
# per CPU-second, and the event-by-event (sync) rate of the same run.
#   bench/engine_defaults.sh [model.json|model.h5] [events] [repeats]
set -euo pipefail
cd "$(dirname "$0")/.."
b=${BUILD:-build}
model=${1:-examples/configs/gravnet_oc.json}
events=${2:-400}
repeats=${3:-1}
configs=(
  "defaults|"
  "old defaults: 1 inst x all threads, batch 64, 1 ms|--instances 1 --batch-events 64 --delay-us 1000"
  "1 inst x all threads, batch 8|--instances 1 --batch-events 8"
  "defaults, batch 32|--batch-events 32"
)
printf "%-6s %-3s %-52s %10s %9s %10s %10s\n" sizes thr configuration "engine ev/s" "p99 ms" "ev/cpu-s" "sync ev/s"
for sizes in tiny small; do
  for thr in 2 8; do
    for c in "${configs[@]}"; do
      name=${c%%|*}; opts=${c#*|}
      # shellcheck disable=SC2086
      out=$(env -u OMP_WAIT_POLICY "$b/bench/bench_engine" --model "$model" --sizes $sizes --threads $thr \
              --inflight 1 --events "$events" --repeats "$repeats" $opts 2>/dev/null | grep '^RESULT ')
      python3 - "$sizes" "$thr" "$name" "$out" <<'PY'
import json, sys
s, t, name, line = sys.argv[1:]
r = json.loads(line[7:])
print(f"{s:6s} {t:3s} {name:52s} {r['engine_rate']:10.1f} {r['engine_p99_us'] / 1e3:9.2f} "
      f"{r['engine_cpu_rate']:10.1f} {r['sync_rate']:10.1f}")
PY
    done
  done
done
