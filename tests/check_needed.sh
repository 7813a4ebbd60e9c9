#!/bin/sh
# tests/check_needed.sh LIB - libgpuml.so must not name optional GPU
# libraries as DT_NEEDED (they are opened with dlopen when first used;
# libgpuml/core/dynlib.h), so that importing gpuml and then PyTorch works.
set -eu
lib=$1
if ! command -v readelf >/dev/null 2>&1; then echo "readelf not found: skipped"; exit 77; fi
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "DT_NEEDED of $lib:"; echo "$needed" | sed 's/^/  /'
bad=$(echo "$needed" | grep -E '^lib(nccl|cudnn)' || true)
if [ -n "$bad" ]; then
  echo "FAIL: optional libraries linked at load time: $bad"
  exit 1
fi
echo "ok: no libnccl / libcudnn"
