#!/usr/bin/env bash
# Install gpuml into a scratch root and build the README example outside the
# tree with `pkg-config --cflags --libs gpuml`, as a user would.
set -euo pipefail
build=${1:-build}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
meson install -C "$build" --destdir "$root" --quiet
pc=$(dirname "$(find "$root" -name gpuml.pc | head -n1)")
export PKG_CONFIG_PATH="$pc" PKG_CONFIG_SYSROOT_DIR="$root"
cc -std=c11 -Wall -Werror examples/readme_example.c $(pkg-config --cflags --libs gpuml) -o "$root/readme_example"
libdir=$(dirname "$(find "$root" -name 'libgpuml.so*' | head -n1)")
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$root/readme_example" > "$root/out.txt"
grep -q "per-event mean" "$root/out.txt"
echo "pkgconfig_check: out-of-tree build via pkg-config works"
