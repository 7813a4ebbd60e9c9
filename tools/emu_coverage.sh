#!/usr/bin/env bash
# Which __global__ kernels of kernels/cuda/ an emulated-CUDA run launched.
#   tools/emu_coverage.sh DIR   DIR: GPUML_EMU_COVERAGE_DIR of the run
# Prints "cuda kernels executed: N of M" and the kernels never launched;
# exits 1 unless N = M. Kernels are named file:function (two files may use
# the same function name).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
all=$(mktemp)
ran=$(mktemp)
trap 'rm -f "$all" "$ran"' EXIT
grep -o "__global__ void [A-Za-z_0-9]*" kernels/cuda/*.cu | sed 's#^kernels/cuda/##; s#:__global__ void #:#' | sort -u > "$all"
cat "$dir"/kernels.* 2>/dev/null | sort -u > "$ran" || true
m=$(wc -l < "$all")
n=$(comm -12 "$all" "$ran" | wc -l)
echo "cuda kernels executed: $n of $m"
if [ "$n" -ne "$m" ]; then
  echo "never launched:"
  comm -23 "$all" "$ran" | sed 's/^/  /'
  exit 1
fi
