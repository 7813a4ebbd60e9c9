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

# Python packages: numpy for the bindings, h5py and pytest for their tests,
# matplotlib for the curves of the main job (examples/plot_metrics.py) and
# examples/python/knn_graph.py.
PY=${PYTHON:-python3}
PY_PKGS=(numpy h5py pytest matplotlib)
if command -v "$PY" >/dev/null; then
  if ! "$PY" -c "import numpy, h5py, pytest, matplotlib" >/dev/null 2>&1; then
    echo "setup: pip install ${PY_PKGS[*]}"
    "$PY" -m pip install -q "${PY_PKGS[@]}"
  fi
  # Test-only: gpuml.convert's tests build the real PyTorch, PyTorch
  # Geometric and weaver modules (python-bindings/tests/test_convert.py).
  # PyPI's torch wheel pulls the CUDA runtime packages (no CPU-only torch on
  # PyPI; without them `import torch` fails): about 5 GB installed, 3-4
  # minutes here on the first run, nothing afterwards. weaver-core without
  # its dependencies: ParticleNet needs only torch and numpy, the rest
  # (uproot, awkward, tensorboard, ...) is for weaver's data pipeline.
  # GPUML_SKIP_TORCH=1 skips this (the tests then skip with the reason).
  if [ "${GPUML_SKIP_TORCH:-0}" != 1 ]; then
    has() { "$PY" -c "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)" "$@"; }
    if ! has torch torch_geometric; then
      echo "setup: pip install torch torch_geometric (test-only; ~5 GB with torch's CUDA packages)"
      "$PY" -m pip install -q torch torch_geometric
    fi
    if ! has weaver; then
      echo "setup: pip install --no-deps weaver-core (test-only)"
      "$PY" -m pip install -q --no-deps weaver-core
    fi
  fi
fi
echo "setup: ok"
