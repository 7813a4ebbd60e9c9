#!/usr/bin/env bash
# Build gpuml and run its whole test suite (the README's test command).
#   tools/test.sh              install deps, build, run all tests, check an
#                              out-of-tree program links through pkg-config
#   tools/test.sh --sanitize   the same suite under ASan + UBSan
#   tools/test.sh --tsan       the engine tests under ThreadSanitizer (no CUDA)
#   tools/test.sh --cuda-emu   every test with its CUDA rows, on the emulated
#                              CUDA platform (tests/cudaemu) in build-emu/; prints
#                              how many of the __global__ kernels the suite ran
#   tools/test.sh --cuda-emu-asan  the same under ASan + UBSan (build-emu-asan/)
# Extra meson options may follow the mode, e.g. -Dgpu_archs=80,90.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh

mode=plain
dir=build
case "${1:-}" in
  --sanitize) mode=asan; dir=build-asan ;;
  --tsan) mode=tsan; dir=build-tsan ;;
  --cuda-emu) mode=emu; dir=build-emu ;;
  --cuda-emu-asan) mode=emu-asan; dir=build-emu-asan ;;
esac
./tools/build.sh "$@"

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# OpenMP threads that wait at a barrier sleep instead of spinning: on a
# machine shared with other work, spinning threads burn the time slices the
# thread they wait for needs (measured 10x slower training under load;
# README, "Threads").
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ "$mode" = asan ] || [ "$mode" = emu-asan ]; then
  # protect_shadow_gap=0: the CUDA runtime maps memory ASan would otherwise reserve.
  export ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fi
tests=()
if [ "$mode" = tsan ]; then
  # The threaded parts - the engine, the loader's prefetch thread, the HDF5
  # lock; tests/meson.build sets OMP_NUM_THREADS=1 and TSAN_OPTIONS
  # (tests/tsan.supp) for this build.
  tests=(test_engine test_loader test_io test_dataset)
fi
if [ "$mode" = emu ] || [ "$mode" = emu-asan ]; then
  # Each process appends the kernels it launched (file:kernel) here.
  cov=$(mktemp -d)
  trap 'rm -rf "$cov"' EXIT
  export GPUML_EMU_COVERAGE_DIR=$cov
  echo "emulated CUDA: GPUML_EMU_SEED=${GPUML_EMU_SEED:=1} GPUML_EMU_DEVICES=${GPUML_EMU_DEVICES:=2}"
  export GPUML_EMU_SEED GPUML_EMU_DEVICES
fi
rc=0
meson test -C "$dir" --print-errorlogs --num-processes 2 "${tests[@]}" || rc=$?

if [ "$mode" = emu ] || [ "$mode" = emu-asan ]; then
  ./tools/emu_coverage.sh "$cov" || rc=1 # also after failures: which kernels ran
fi
if [ "$rc" -ne 0 ]; then
  echo "test.sh ($mode): FAILED"
  exit "$rc"
fi

if [ "$mode" = plain ]; then
  ./tests/pkgconfig_check.sh "$dir"
fi
echo "test.sh ($mode): all tests passed"
