#!/usr/bin/env bash
# bench/ab_compare.sh BASE [HEAD] - the CPU benchmarks of two commits on the
# same machine in the same run: does a change (a restructuring, say) move
# the numbers?
#
# Each commit is checked out (git worktree, detached) under
# ${AB_DIR:-/tmp/gpuml-ab}/<sha> and built with the same options
# (-Dcuda=disabled, release; the CPU paths are what this machine can time).
# Then ROUNDS rounds (default 3) run, each running the two builds back to
# back in alternating order (A B, B A, ...), so that a drift of the machine's
# load hits both alike:
#   bench_graphops  GravNet aggregation, EdgeConv, masked batch norm (fwd+bwd)
#   bench_layers    one GravNetConv and one ParticleNet EdgeConv block (fwd+bwd)
#   bench_knn       gpuml_knn on HGCAL-like events (single events and 64x2k)
#   bench_engine    the inference engine and synchronous inference, events/s
# Every number is the best over all rounds of that build's best-of-reps; the
# table prints BASE, HEAD and HEAD/BASE for times (events/s: BASE/HEAD), so a
# ratio above 1 means HEAD is slower. THREADS (default 2) CPU threads.
#
# usage: bench/ab_compare.sh ba858e3            # against the working tree's HEAD
#        ROUNDS=5 bench/ab_compare.sh 88d3aa8 main
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
base=$(git rev-parse --short "${1:?usage: bench/ab_compare.sh BASE [HEAD]}")
head=$(git rev-parse --short "${2:-HEAD}")
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
dir=${AB_DIR:-/tmp/gpuml-ab}
mkdir -p "$dir"

build() { # sha -> prints the build dir
  local sha=$1 src="$dir/$1"
  if [ ! -d "$src" ]; then
    git worktree add --detach "$src" "$sha" >/dev/null 2>&1
  fi
  if [ ! -f "$src/build-ab/build.ninja" ]; then
    (cd "$src" && meson setup build-ab -Dcuda=disabled -Dbuildtype=release >/dev/null)
  fi
  ninja -C "$src/build-ab" bench/bench_graphops bench/bench_layers bench/bench_knn bench/bench_engine >/dev/null
  echo "$src/build-ab"
}

echo "building $base and $head (-Dcuda=disabled, release) under $dir" >&2
bdir_base=$(build "$base")
bdir_head=$(build "$head")
out="$dir/results-$base-$head.txt"
: >"$out"

run_one() { # label builddir
  local label=$1 b=$2 tmp
  tmp=$(mktemp -d)
  "$b/bench/bench_graphops" --threads "$threads" --reps 10 |
    sed -n 's/^\([a-z_]*\)[^:]*: .*forward+backward \([0-9.]*\) ms.*/\1 \2/p' |
    while read -r k v; do echo "$label graphops.$k ms $v"; done >>"$out"
  "$b/bench/bench_layers" --threads "$threads" --reps 5 --out "$tmp/l.h5" |
    sed -n 's/^RESULT {"impl": "gpuml", "layer": "\([a-z]*\)", "ms": \([0-9.]*\).*/\1 \2/p' |
    while read -r k v; do echo "$label layers.$k ms $v"; done >>"$out"
  "$b/bench/bench_knn" --threads "$threads" --repeat 5 |
    awk -v l="$label" '$1 ~ /_d[34]_k/ {print l, "knn." $1, "s", $6}' >>"$out"
  "$b/bench/bench_engine" --threads 4 --events 600 --repeats 2 |
    sed -n 's/^RESULT {"sync_rate": \([0-9.]*\), .*"engine_rate": \([0-9.]*\),.*/\1 \2/p' |
    while read -r s e; do
      echo "$label engine.sync rate $s"
      echo "$label engine.engine rate $e"
    done >>"$out"
  rm -rf "$tmp"
}

for ((r = 1; r <= rounds; r++)); do
  echo "round $r of $rounds" >&2
  if ((r % 2)); then
    run_one base "$bdir_base"
    run_one head "$bdir_head"
  else
    run_one head "$bdir_head"
    run_one base "$bdir_base"
  fi
done

python3 - "$out" "$base" "$head" "$rounds" "$threads" <<'EOF'
import sys, collections
path, base, head, rounds, threads = sys.argv[1:]
best = collections.defaultdict(dict)
unit = {}
for line in open(path):
    label, key, u, v = line.split()
    v = float(v)
    unit[key] = u
    old = best[key].get(label)
    if u == "rate":
        best[key][label] = v if old is None else max(old, v)
    else:
        best[key][label] = v if old is None else min(old, v)
print("CPU benchmarks, %s threads, best of %s alternating rounds: BASE %s, HEAD %s" % (threads, rounds, base, head))
print("%-26s %6s %12s %12s %10s" % ("benchmark", "unit", "BASE", "HEAD", "HEAD/BASE"))
ratios = []
for key in sorted(best):
    b, h = best[key].get("base"), best[key].get("head")
    if b is None or h is None:
        continue
    u = unit[key]
    r = (b / h) if u == "rate" else (h / b)  # above 1: HEAD slower
    ratios.append(r)
    print("%-26s %6s %12.4g %12.4g %10.3f" % (key, "ev/s" if u == "rate" else u, b, h, r))
if ratios:
    import math
    g = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    print("geometric mean of HEAD/BASE (time; above 1 = HEAD slower): %.3f over %d benchmarks" % (g, len(ratios)))
EOF
