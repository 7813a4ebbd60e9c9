#!/usr/bin/env bash
# A check that can fail (issue 11, item 7): breaks a temporary copy of the
# tree on purpose, one mutation at a time, and requires the emulated CUDA
# suite - the test that covers the broken code - to fail on each:
#   barrier    a __syncthreads removed (knn.cu, the first one indented 12
#              spaces: inside the event-box tree reduction)
#   block      a block too large (knn.cu EV_BLOCK 2048 > 1024 threads)
#   sync       a synchronisation dropped before a host read (the engine's
#              completion no longer waits for the batch's event)
#   legacy     a kernel launched on the legacy stream instead of the
#              context's (every launcher through GPUML_CUDA_RUN, launch.cuh;
#              test_unary catches it)
#   offbyone   an off-by-one in a grid-stride loop (unary.cu, n + 1)
# Each test is first run on the unmutated copy and must pass there.
#   tools/emu_mutations.sh [NAME...]     (default: all; ~10 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src
mkdir -p "$src"
git ls-files -z -co --exclude-standard | xargs -0 tar -cf - | tar -xf - -C "$src"
echo "emu_mutations: building the emulated CUDA configuration of a copy in $src"
meson setup "$src/build" "$src" -Demulate_cuda=true -Dbuildtype=debugoptimized >/dev/null
ninja -C "$src/build" >/dev/null

# name | file | from | to | test program | cmocka filter
muts=(
  "barrier|kernels/cuda/knn.cu|            __syncthreads();|            /* mutation: barrier removed */|test_knn|"
  "block|kernels/cuda/knn.cu|#define EV_BLOCK 256|#define EV_BLOCK 2048|test_knn|"
  "sync|libgpuml/core/cuda_rt.c|        e = cudaEventSynchronize((cudaEvent_t)ev);|        (void)ev; /* mutation: no wait */|test_engine|test_cuda_engine"
  "legacy|kernels/cuda/launch.cuh|GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(__VA_ARGS__);|GPUML_CUDA_BLOCK, 0, (cudaStream_t)0)(__VA_ARGS__);|test_ops|test_unary"
  "offbyone|kernels/cuda/unary.cu|GPUML_GRID_STRIDE(i, n) y[i]|GPUML_GRID_STRIDE(i, n + 1) y[i]|test_ops|test_unary"
)
want=("$@")
run_test() { # program filter -> exit status
  (cd "$src/build" && GPUML_TEST_FILTER="$2" GPUML_EMU_LEGACY_DELAY_US=3000 OMP_NUM_THREADS=2 \
    timeout 300 "./tests/$1" >"$tmp/out.txt" 2>&1)
}
caught=0 total=0
for m in "${muts[@]}"; do
  IFS='|' read -r name file from to prog filter <<<"$m"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  total=$((total + 1))
  if ! run_test "$prog" "$filter"; then
    echo "emu_mutations: $name: $prog${filter:+ ($filter)} fails WITHOUT the mutation; see below"
    tail -20 "$tmp/out.txt"
    continue
  fi
  cp "$src/$file" "$tmp/orig"
  python3 - "$src/$file" "$from" "$to" <<'PY'
import sys
p, a, b = sys.argv[1:4]
s = open(p).read()
i = s.find(a)
if i < 0:
    raise SystemExit(f"mutation text not found in {p}: {a!r}")
s = s[:i] + b + s[i + len(a):]
open(p, "w").write(s)
PY
  if ! ninja -C "$src/build" >"$tmp/build.txt" 2>&1; then
    echo "emu_mutations: $name: the mutated tree does not build"; tail -5 "$tmp/build.txt"
  elif run_test "$prog" "$filter"; then
    echo "emu_mutations: $name: NOT caught ($file; $prog${filter:+ $filter} passed)"
  else
    echo "emu_mutations: $name: caught by $prog${filter:+ ($filter)}: $(grep -a -m1 -E 'FAIL|ERROR|error|cudaemu' "$tmp/out.txt" | cut -c1-150)"
    caught=$((caught + 1))
  fi
  cp "$tmp/orig" "$src/$file"
  ninja -C "$src/build" >/dev/null
done
echo "emu_mutations: $caught of $total mutations caught"
[ "$caught" -eq "$total" ]
