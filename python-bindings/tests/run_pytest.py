"""Run the bindings' tests under `meson test` (python-bindings/meson.build).

Exit code 77 (meson's "skipped") when numpy or pytest is missing, or for a
ThreadSanitizer build. For an AddressSanitizer build the ASan runtime must
be loaded before anything else, so the runner re-executes Python with it in
LD_PRELOAD (leak checking off: the interpreter itself keeps memory to exit).
"""
import os
import subprocess
import sys
from pathlib import Path

SKIP = 77


def main():
    try:
        import numpy
        import pytest
        del numpy  # only checked for
    except ImportError as e:
        print(f"python tests skipped: {e} (pip install numpy pytest h5py)")
        return SKIP
    sanitize = os.environ.get("GPUML_SANITIZE", "none")
    if "thread" in sanitize:
        print("python tests skipped under ThreadSanitizer")
        return SKIP
    if "address" in sanitize and "libasan" not in os.environ.get("LD_PRELOAD", ""):
        cc = os.environ.get("CC", "cc")
        asan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(asan):
            print("python tests skipped: cannot locate libasan.so to preload for this ASan build")
            return SKIP
        env = dict(os.environ, LD_PRELOAD=asan,
                   ASAN_OPTIONS="detect_leaks=0:protect_shadow_gap=0:abort_on_error=1")
        return subprocess.run([sys.executable] + sys.argv, env=env).returncode
    here = Path(__file__).resolve().parent
    return pytest.main([str(here), "-p", "no:cacheprovider"] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
