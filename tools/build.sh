#!/usr/bin/env bash
# Configure and build gpuml.
#   tools/build.sh              release build in build/ (CUDA on when nvcc is found)
#   tools/build.sh --sanitize   ASan + UBSan build in build-asan/
#   tools/build.sh --tsan       ThreadSanitizer build in build-tsan/
#   tools/build.sh --cuda-emu   the CUDA half on the emulated CUDA platform
#                               (tests/cudaemu), CPU only, in build-emu/
#   tools/build.sh --cuda-emu-asan  the same under ASan + UBSan, in build-emu-asan/
# Extra meson options may follow, e.g. -Dgpu_archs=80,90.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
opts=()
case "${1:-}" in
  --sanitize) dir=build-asan; opts+=(-Db_sanitize=address,undefined -Dbuildtype=debugoptimized); shift ;;
  --tsan) dir=build-tsan; opts+=(-Db_sanitize=thread -Dbuildtype=debugoptimized -Dcuda=disabled); shift ;;
  --cuda-emu) dir=build-emu; opts+=(-Demulate_cuda=true -Dbuildtype=debugoptimized); shift ;;
  --cuda-emu-asan) dir=build-emu-asan; opts+=(-Demulate_cuda=true -Db_sanitize=address,undefined -Dbuildtype=debugoptimized); shift ;;
esac

# The CUDA toolkit is not on PATH by default on most machines.
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
  if [ -x "$d/nvcc" ]; then export PATH="$PATH:$d"; break; fi
done

if [ ! -f "$dir/build.ninja" ]; then
  # nvcc through tools/nvcc_deps.sh: with meson before 1.3, nvcc writes no
  # dependency file, and editing a kernel body (kernels/<op>.h) would not
  # rebuild the CUDA objects that include it.
  if command -v nvcc >/dev/null 2>&1; then
    mkdir -p "$dir"
    printf "[binaries]\ncuda = '%s'\n" "$(pwd)/tools/nvcc_deps.sh" >"$dir/nvcc-native.ini"
    opts+=(--native-file "$dir/nvcc-native.ini")
  fi
  meson setup "$dir" "${opts[@]}" "$@"
elif [ $# -gt 0 ]; then
  meson configure "$dir" "$@"
fi
ninja -C "$dir"
