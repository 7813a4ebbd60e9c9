#!/bin/sh
# tools/nvcc_deps.sh - nvcc, plus the make-style dependency file meson's
# build rule names (<object>.d) when meson does not ask nvcc for it itself.
#
# The kernels' arithmetic lives in headers (kernels/<op>.h) that the CUDA
# launchers include. Meson before 1.3 gives nvcc no -MD, so ninja never
# learnt which headers a .cu object includes, and editing a body left the
# GPU build running the old arithmetic. tools/build.sh configures CUDA
# builds with NVCC pointing here; a compile (-c ... -o OUT) gets
# "-MD -MT OUT -MF OUT.d" unless its arguments already ask for
# dependencies. Everything else (version queries, links) passes through.
real=${GPUML_REAL_NVCC:-nvcc}
out=
compile=0
deps=0
prev=
for a in "$@"; do
    if [ "$prev" = "-o" ]; then out=$a; fi
    case "$a" in
    -c) compile=1 ;;
    -M | -MD | -MM | -MMD | --generate-dependencies | --generate-dependencies-with-compile) deps=1 ;;
    esac
    prev=$a
done
if [ "$compile" = 1 ] && [ -n "$out" ] && [ "$deps" = 0 ]; then
    exec "$real" -MD -MT "$out" -MF "$out.d" "$@"
fi
exec "$real" "$@"
