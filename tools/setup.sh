#!/usr/bin/env bash
# Install what gpuml needs to build and test on Debian/Ubuntu. Idempotent:
# does nothing when everything is present. Run as root (or with sudo).
#   tools/setup.sh            build + test dependencies
set -euo pipefail

PKGS=(
  meson ninja-build pkg-config gcc g++
  libhdf5-dev hdf5-tools          # datasets, model files, checkpoints
  libcmocka-dev                   # C unit tests
  libopenblas-openmp-dev          # CBLAS, OpenMP build (shares our thread pool)
  libjansson-dev                  # model configs (JSON)
  libtbb-dev                      # tests of the TBB executor (examples/cmssw/gpuml_tbb_executor.h)
  libopenmpi-dev openmpi-bin      # multi-process training
  clang-14 libclang-rt-14-dev     # libFuzzer for tools/fuzz.sh
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# OpenBLAS comes in pthread, OpenMP and serial builds; make sure the OpenMP
# one is what libopenblas.so resolves to, so its threads and ours do not fight.
if [ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 ] && command -v update-alternatives >/dev/null; then
  cur=$(readlink -f /usr/lib/x86_64-linux-gnu/libopenblas.so.0 || true)
  case "$cur" in
    *openblas-openmp*) ;;
    *) ${SUDO:-} update-alternatives --set libopenblas.so.0-x86_64-linux-gnu \
         /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 >/dev/null 2>&1 || true ;;
  esac
fi

# Python packages for the bindings' tests and the plotting scripts.
PY=${PYTHON:-python3}
if command -v "$PY" >/dev/null; then
  if ! "$PY" -c "import numpy, h5py, pytest" >/dev/null 2>&1; then
    echo "setup: pip install numpy h5py pytest"
    "$PY" -m pip install -q numpy h5py pytest
  fi
fi
echo "setup: ok"
