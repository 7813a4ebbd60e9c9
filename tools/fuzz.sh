#!/usr/bin/env bash
# Fuzz the model config parser with libFuzzer for a bounded time.
#   tools/fuzz.sh [seconds]      default 60
# Builds gpuml with clang, ASan and libFuzzer coverage into build-fuzz/
# (CUDA off: nvcc's host compiler is gcc). Crashes land in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
CLANG=$(command -v clang-14 || command -v clang || true)
if [ -z "$CLANG" ]; then
  echo "fuzz.sh: clang not found (apt-get install clang-14 libclang-rt-14-dev)"; exit 1
fi
if [ ! -f build-fuzz/build.ninja ]; then
  CC="$CLANG" meson setup build-fuzz -Dcuda=disabled -Db_sanitize=address -Dbuildtype=debugoptimized \
    -Dc_args=-fsanitize=fuzzer-no-link -Dfuzz=enabled -Ddefault_library=static -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz tests/fuzz_model_config >/dev/null
mkdir -p build-fuzz/corpus
cp -n tests/fuzz_corpus/* build-fuzz/corpus/ 2>/dev/null || true
ASAN_OPTIONS=detect_leaks=1 ./build-fuzz/tests/fuzz_model_config build-fuzz/corpus \
  -max_total_time="$secs" -max_len=8192 -dict=tests/fuzz_config.dict -print_final_stats=1 \
  -artifact_prefix=build-fuzz/ 2>&1 | tail -n 12
echo "fuzz.sh: no crash in ${secs}s"
