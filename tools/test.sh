#!/usr/bin/env bash
# Build gpuml and run its whole test suite (the README's test command).
#   tools/test.sh              install deps, build, run all tests, check an
#                              out-of-tree program links through pkg-config
#   tools/test.sh --sanitize   the same suite under ASan + UBSan
#   tools/test.sh --tsan       the engine tests under ThreadSanitizer (no CUDA)
# Extra meson options may follow the mode, e.g. -Dgpu_archs=80,90.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh

mode=plain
dir=build
case "${1:-}" in
  --sanitize) mode=asan; dir=build-asan ;;
  --tsan) mode=tsan; dir=build-tsan ;;
esac
./tools/build.sh "$@"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# gpuml's own pool never spins (README, "Threads"); this only matters where
# OpenMP still runs: the OpenMP executor the op tables are also checked on.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ "$mode" = asan ]; then
  # protect_shadow_gap=0: the CUDA runtime maps memory ASan would otherwise reserve.
  export ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fi
tests=()
if [ "$mode" = tsan ]; then
  # The threaded parts - the engine, the loader's prefetch thread, the HDF5
  # lock; tests/meson.build sets OMP_NUM_THREADS=1 and TSAN_OPTIONS
  # (tests/tsan.supp) for this build.
  tests=(test_engine test_executor test_loader test_io test_dataset)
fi
meson test -C "$dir" --print-errorlogs --num-processes 2 "${tests[@]}"

if [ "$mode" = plain ]; then
  ./tests/pkgconfig_check.sh "$dir"
fi
echo "test.sh ($mode): all tests passed"
