"""Build step of the gpuml Python package: build libgpuml with meson from the
repository this directory belongs to, and bundle the shared library.

`pip install ./python-bindings` runs this through setuptools' PEP 517
backend. build_py first copies the Python sources, then configures and
builds the C library (meson + ninja, target `gpuml` only) in
python-bindings/build/meson (kept, so a rebuild is incremental) and copies
libgpuml.so into the package as gpuml/_native/libgpuml.so, where gpuml._lib
finds it. The package talks to the library through ctypes, so the wheel
holds no Python extension: it is tagged py3-none-<platform>.

Environment:
  GPUML_SOURCE_DIR   the gpuml repository (default: the parent directory)
  GPUML_MESON_ARGS   extra `meson setup` options, e.g. "-Dgpu_archs=80" or
                     "-Dcuda=disabled" (default: the project's defaults,
                     CUDA on when nvcc is found)
System requirements: meson, ninja and the C dependencies (tools/setup.sh).
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel

HERE = Path(__file__).resolve().parent


def _source_dir() -> Path:
    src = Path(os.environ.get("GPUML_SOURCE_DIR", HERE.parent)).resolve()
    mb = src / "meson.build"
    if not (mb.is_file() and "project('gpuml'" in mb.read_text()):
        sys.exit(f"gpuml: {src} is not the gpuml repository. Build python-bindings from inside a clone "
                 "(pip install ./python-bindings), or set GPUML_SOURCE_DIR to one.")
    return src


def _run(cmd, env):
    print("gpuml build:", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, env=env)


def build_libgpuml() -> Path:
    """Configure and build libgpuml; returns the path of the shared library."""
    src = _source_dir()
    for tool in ("meson", "ninja"):
        if not shutil.which(tool):
            sys.exit(f"gpuml: '{tool}' not found; run tools/setup.sh (apt: meson ninja-build) first")
    env = dict(os.environ)
    # As tools/build.sh: the CUDA toolkit is usually not on PATH.
    for d in [Path("/usr/local/cuda/bin")] + sorted(Path("/usr/local").glob("cuda-*/bin")):
        if (d / "nvcc").exists():
            env["PATH"] = env.get("PATH", "") + os.pathsep + str(d)
            break
    bdir = HERE / "build" / "meson"
    args = shlex.split(os.environ.get("GPUML_MESON_ARGS", ""))
    if (bdir / "build.ninja").exists():
        _run(["meson", "setup", "--reconfigure", bdir, src, "-Dbuildtype=release"] + args, env)
    else:
        _run(["meson", "setup", bdir, src, "-Dbuildtype=release"] + args, env)
    _run(["meson", "compile", "-C", bdir, "gpuml"], env)
    lib = (bdir / "libgpuml" / "libgpuml.so").resolve()
    if not lib.is_file():
        sys.exit(f"gpuml: the build did not produce {lib}")
    return lib


class build_py(_build_py):
    def run(self):
        super().run()
        lib = build_libgpuml()
        # editable installs import from the source tree, wheels from build_lib
        root = HERE if getattr(self, "editable_mode", False) else Path(self.build_lib)
        dst = root / "gpuml" / "_native"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dst / "libgpuml.so")


class bdist_wheel(_bdist_wheel):
    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False  # it carries a shared library

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat  # ctypes: no dependency on the Python ABI


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": build_py, "bdist_wheel": bdist_wheel}, distclass=BinaryDistribution)
