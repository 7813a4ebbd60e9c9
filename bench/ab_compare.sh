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
# Each round gives each build's best-of-reps; the table prints the best
# round of each build, HEAD/BASE of those (events/s: BASE/HEAD, so a ratio
# above 1 always means HEAD is slower), the same ratio of the median
# rounds, and BASE's spread over its rounds: a ratio inside the spread is
# noise. THREADS (default 2) CPU threads.
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
import sys, collections, math, statistics
path, base, head, rounds, threads = sys.argv[1:]
runs = collections.defaultdict(lambda: collections.defaultdict(list))
unit = {}
for line in open(path):
    label, key, u, v = line.split()
    unit[key] = u
    runs[key][label].append(float(v))
print("CPU benchmarks, %s threads, %s alternating rounds: BASE %s, HEAD %s" % (threads, rounds, base, head))
print("best: the best round of each build; median: the median round; spread: (worst - best) / best of BASE's rounds")
print("%-26s %5s %10s %10s %9s %10s %8s" % ("benchmark", "unit", "BASE best", "HEAD best", "ratio", "median rt", "spread"))
ratios, mratios = [], []
for key in sorted(runs):
    b, h = runs[key].get("base"), runs[key].get("head")
    if not b or not h:
        continue
    rate = unit[key] == "rate"
    bb, hb = (max(b), max(h)) if rate else (min(b), min(h))
    bm, hm = statistics.median(b), statistics.median(h)
    r = bb / hb if rate else hb / bb  # above 1: HEAD slower
    rm = bm / hm if rate else hm / bm
    spread = (max(b) - min(b)) / min(b)
    ratios.append(r), mratios.append(rm)
    print("%-26s %5s %10.4g %10.4g %9.3f %10.3f %7.0f%%" % (key, "ev/s" if rate else unit[key], bb, hb, r, rm,
                                                           100 * spread))
if ratios:
    g = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))
    print("geometric mean of HEAD/BASE time (above 1 = HEAD slower): best %.3f, median %.3f, over %d benchmarks"
          % (g(ratios), g(mratios), len(ratios)))
EOF
