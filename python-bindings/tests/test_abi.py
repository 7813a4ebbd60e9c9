"""The ctypes declarations against the C headers: struct layouts and
constants (compiled with the C compiler), and every declared function's
parameter count and status return (parsed from the headers)."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpuml import _lib, _tensor, engine, ops, train

INCLUDE = Path(__file__).resolve().parents[2] / "include"

CONSTANTS = {
    "GPUML_MAX_DIMS": _lib.MAX_DIMS,
    "GPUML_KNN_MAX_K": ops.KNN_MAX_K,
    "GPUML_TRAIN_MAX_INPUTS": _lib.TRAIN_MAX_INPUTS,
    "GPUML_F32": _tensor.F32, "GPUML_F16": _tensor.F16, "GPUML_BF16": _tensor.BF16, "GPUML_F64": _tensor.F64,
    "GPUML_I32": _tensor.I32, "GPUML_I64": _tensor.I64, "GPUML_U8": _tensor.U8, "GPUML_BOOL": _tensor.BOOL,
    "GPUML_OPTIM_SGD": train._KINDS["sgd"], "GPUML_OPTIM_ADAM": train._KINDS["adam"],
    "GPUML_OPTIM_ADAMW": train._KINDS["adamw"],
    "GPUML_SCHED_CONSTANT": train._SCHEDULES["constant"], "GPUML_SCHED_STEP": train._SCHEDULES["step"],
    "GPUML_SCHED_COSINE": train._SCHEDULES["cosine"],
    "GPUML_KNN_AUTO": ops._KNN_ALGOS["auto"], "GPUML_KNN_BRUTE": ops._KNN_ALGOS["brute"],
    "GPUML_KNN_GRID": ops._KNN_ALGOS["grid"],
    "GPUML_REDUCE_SUM": ops._REDUCE["sum"], "GPUML_REDUCE_MEAN": ops._REDUCE["mean"],
    "GPUML_REDUCE_MAX": ops._REDUCE["max"], "GPUML_REDUCE_MIN": ops._REDUCE["min"],
}
CONSTANTS.update({"GPUML_ENGINE_CANCEL": engine._CANCEL, "GPUML_ENGINE_DRAIN": engine._DRAIN,
                  "GPUML_ENGINE_ALL_DEVICES": engine._ALL_DEVICES})
CONSTANTS.update({f"GPUML_UNARY_{n.upper()}": i for i, n in enumerate(ops._UNARY)})
CONSTANTS.update({f"GPUML_LOSS_{n.upper()}": v for n, v in train.LOSSES.items() if n not in ("bce",)})
CONSTANTS["GPUML_LOSS_BCE_LOGITS"] = train.LOSSES["bce"]
CONSTANTS.update({f"GPUML_BINARY_{n.upper()}": i for i, n in enumerate(ops._BINARY)})


def headers():
    return sorted(p for p in INCLUDE.glob("gpuml/*.h"))


def test_structs_and_constants_match_the_headers(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc or not INCLUDE.is_dir():
        pytest.skip("needs a C compiler and the repository's include/")
    incs = "".join(f'#include "gpuml/{p.name}"\n' for p in headers() if p.name != "gpuml.h")
    lines = []
    for cname, cls in _lib.STRUCTS.items():
        lines.append(f'printf("{cname} size %zu\\n", sizeof({cname}));')
        for f, _ in cls._fields_:
            lines.append(f'printf("{cname}.{f} %zu\\n", offsetof({cname}, {f}));')
    for name in CONSTANTS:
        lines.append(f'printf("{name} %lld\\n", (long long)({name}));')
    src = tmp_path / "abi.c"
    src.write_text(f"#include <stddef.h>\n#include <stdio.h>\n{incs}int main(void) {{\n" + "\n".join(lines) +
                   "\nreturn 0;\n}\n")
    exe = tmp_path / "abi"
    subprocess.run([cc, "-std=c11", f"-I{INCLUDE}", str(src), "-o", str(exe)], check=True)
    got = dict(line.rsplit(" ", 1) for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                               check=True).stdout.splitlines())
    for cname, cls in _lib.STRUCTS.items():
        assert int(got[f"{cname} size"]) == __import__("ctypes").sizeof(cls), cname
        for f, _ in cls._fields_:
            assert int(got[f"{cname}.{f}"]) == getattr(cls, f).offset, f"{cname}.{f}"
    for name, value in CONSTANTS.items():
        assert int(got[name]) == value, name


def _prototypes():
    text = "\n".join(p.read_text() for p in headers())
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    protos = {}
    for m in re.finditer(r"GPUML_API\s+([^;{]*?)\b(gpuml_\w+)\s*\(([^;]*?)\)\s*(?:__attribute__[^;]*)?;", text,
                         re.S):
        ret, name, params = m.group(1), m.group(2), m.group(3).strip()
        n = 0 if params in ("", "void") else params.count(",") + 1
        protos[name] = (ret.strip(), n)
    return protos


def test_declared_functions_match_the_headers():
    protos = _prototypes()
    assert len(protos) > 100
    for name, (res, args) in _lib._PROTOS.items():
        assert name in protos, f"{name} is not in include/gpuml"
        ret, n = protos[name]
        assert len(args) == n, f"{name}: {len(args)} argtypes, the header has {n} parameters"
        assert (res == _lib.ST) == (ret == "gpuml_status" and name not in _lib.STATUS_VALUES), f"{name}: {ret}"


def test_the_library_exports_every_declared_function():
    assert _lib.lib.missing == []
