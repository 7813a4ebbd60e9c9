#!/usr/bin/env bash
# The README's C consumer, as a user follows it: the README block marked
# `readme-test: install` (meson install into a prefix, PKG_CONFIG_PATH, cc
# with an rpath, run) is run verbatim, in a scratch directory that has the
# repository's examples/ and the build directory, with $HOME there too (the
# block installs into ~/.local/gpuml). The block reconfigures the build's
# prefix and libdir; they are put back afterwards. Called by tools/test.sh
# after `meson test` (reconfiguring during the tests would disturb them).
#   tests/pkgconfig_check.sh [BUILD_DIR]     (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
scratch=$(mktemp -d)

options() { # the build's current value of a builtin option
  meson introspect "$build" --buildoptions |
    python3 -c "import json, sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name'] == '$1'))"
}
old_prefix=$(options prefix)
old_libdir=$(options libdir)
restore() {
  meson configure "$build" -Dprefix="$old_prefix" -Dlibdir="$old_libdir" >/dev/null
  rm -rf "$scratch"
}
trap restore EXIT

# The block: the first ```sh fence after the marker line, up to its end.
awk '/readme-test: install/ {m = 1; next} m && /^```sh/ {b = 1; next} b && /^```/ {exit} b {print}' \
  "$root/README.md" > "$scratch/block.sh"
grep -q "meson install" "$scratch/block.sh" || { echo "pkgconfig_check: no install block in README.md"; exit 1; }

ln -s "$root/examples" "$scratch/examples"
ln -s "$build" "$scratch/build"
(cd "$scratch" && HOME="$scratch/home" PKG_CONFIG_PATH= bash -euo pipefail block.sh > out.txt)
grep -q "per-event mean" "$scratch/out.txt" || { cat "$scratch/out.txt"; exit 1; }
# the program found its library through the rpath, not LD_LIBRARY_PATH
readelf -d "$scratch/readme_example" | grep -q "$scratch/home/.local/gpuml/lib"
echo "pkgconfig_check: the README's install + pkg-config + rpath block works"
