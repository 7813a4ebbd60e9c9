#!/usr/bin/env bash
# For the day a GPU is lent: from a build made on a CPU machine (tools/build.sh
# with nvcc present compiles the CUDA sources into build/), run the CUDA
# suite and the kNN, layer and engine benchmarks on the GPU, all results in
# one folder. Budget: under 8 minutes (each step has its own timeout).
#   tools/gpu_check.sh [BUILD_DIR] [OUT_DIR]
#     BUILD_DIR  default build (must have been configured with CUDA on)
#     OUT_DIR    default gpu_check_<host>_<date>
# Steps (each writes OUT_DIR/<step>.txt; a failing step does not stop the rest):
#   device       nvidia-smi, the build's features
#   tests        meson test (every test with its CUDA rows), 300 s
#   knn          bench_knn --device cuda and --device cpu on 10k..200k points, 60 s each
#   layers       bench_layers --device cuda (GravNet, ParticleNet block), 45 s
#   engine       bench_engine --device cuda vs --device cpu, 45 s each
#   (the tests include tests/test_drivers_cuda.py: both drivers, CUDA vs CPU)
# OUT_DIR/summary.txt lists each step's exit status and time.
set -uo pipefail
cd "$(dirname "$0")/.."
b=${1:-build}
out=${2:-gpu_check_$(hostname -s)_$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary=$out/summary.txt
: >"$summary"
step() { # name timeout_s command...
  local name=$1 t=$2
  shift 2
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$out/$name.txt"
  timeout "$t" "$@" >>"$out/$name.txt" 2>&1
  local rc=$?
  printf '%-10s rc=%-3d %4ds  %s\n' "$name" "$rc" $((SECONDS - t0)) "$*" | tee -a "$summary"
}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
step device 30 bash -c "nvidia-smi; grep -E 'GPUML_HAVE' $b/gpuml_config.h; git log -1 --oneline"
step tests 300 meson test -C "$b" --no-rebuild --print-errorlogs --num-processes 2
cp "$b/meson-logs/testlog.txt" "$out/testlog.txt" 2>/dev/null
step knn_cuda 60 "$b/bench/bench_knn" --device cuda --repeat 3 --no-write --only d3
step knn_cpu 60 "$b/bench/bench_knn" --device cpu --repeat 3 --no-write --only d3 --threads "$OMP_NUM_THREADS"
step layers 45 "$b/bench/bench_layers" --device cuda --reps 5 --out "$out/layers_data.h5"
step engine_cuda 45 "$b/bench/bench_engine" --device cuda --events 2000 --repeats 2
step engine_cpu 45 "$b/bench/bench_engine" --device cpu --events 2000 --repeats 2
echo "gpu_check: results in $out"
cat "$summary"
