#!/usr/bin/env python3
"""h5py <-> gpuml interoperability: files h5py writes (plain, chunked,
gzip-compressed) are read by gpuml's dataset reader and loader, and files
gpuml writes are read by h5py with the expected dtypes, values, checksums
and attributes. Skipped (exit 77) when h5py is not importable.

    test_h5py.py CHECKER_BINARY
"""
import hashlib
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py not available: skipping")
    sys.exit(77)


def values(rs):
    n = int(rs[-1])
    r = np.arange(n)
    feat = (3 * r[:, None] + np.arange(3)[None, :]).astype(np.float32)
    flag = (r % 2).astype(bool)
    half = (r % 0x7C00).astype(np.uint16).view(np.float16)
    label = 10 * np.arange(len(rs) - 1, dtype=np.int64)
    return feat, flag, half, label


def write_h5py(path, rs, **kw):
    feat, flag, half, label = values(rs)
    with h5py.File(path, "w") as f:
        f.create_dataset("row_splits", data=rs)
        d = f.create_dataset("features", data=feat, **kw)
        d.attrs["columns"] = ["x", "y", "énergie"]
        f.create_dataset("flag", data=flag, **kw)
        f.create_dataset("half", data=half, **kw)
        f.create_dataset("event/label", data=label)


def check_checksum_block(path):
    """gpuml's whole-file checksum (libgpuml/io/filesum.h), recomputed with
    Python's hashlib: magic, layout 1, BLAKE2b-256, the size of the HDF5
    part, and the digest of the file with the digest field zeroed."""
    raw = bytearray(open(path, "rb").read())
    assert raw[:8] == b"GPUMLSUM", raw[:8]
    assert int.from_bytes(raw[8:12], "little") == 1 and int.from_bytes(raw[12:16], "little") == 1
    assert int.from_bytes(raw[16:24], "little") == len(raw) - 512
    stored = bytes(raw[24:56])
    raw[24:56] = bytes(32)
    assert hashlib.blake2b(bytes(raw), digest_size=32).digest() == stored
    assert raw[56:512] == bytes(456) and raw[512:520] == b"\x89HDF\r\n\x1a\n"


def check_c_files(tmp):
    for name in ("c_dataset.h5", "c_model.h5"):
        check_checksum_block(os.path.join(tmp, name))
    with h5py.File(os.path.join(tmp, "c_dataset.h5"), "r") as f:
        rs = f["row_splits"][()]
        assert rs.dtype == np.int64 and rs[0] == 0 and len(rs) == 38
        feat, flag, half, label = values(rs)
        assert f["features"].dtype == np.float32 and np.array_equal(f["features"][()], feat)
        assert f["flag"].dtype == bool and np.array_equal(f["flag"][()], flag)
        assert f["half"].dtype == np.float16 and np.array_equal(f["half"][()].view(np.uint16), half.view(np.uint16))
        assert np.array_equal(f["event/label"][()], label)
        assert all(f[k].fletcher32 for k in ("features", "flag", "half", "event/label", "row_splits"))
        assert [str(c) for c in f["features"].attrs["columns"]] == ["x", "y", "énergie"]
        assert f.attrs["format"] == "gpuml-dataset" and int(f.attrs["format_version"]) == 1
    with h5py.File(os.path.join(tmp, "c_model.h5"), "r") as f:
        w = f["weights/conv1/weight"]
        assert w.dtype == np.float32 and w.fletcher32
        assert np.array_equal(w[()], np.arange(1, 7, dtype=np.float32).reshape(2, 3))
        assert f.attrs["format"] == "gpuml-model" and isinstance(f.attrs["format"], str)
        assert f.attrs["format_version"] == 1
        assert f["weights"].attrs["lr"] == 0.125
        assert list(w.attrs["shape"]) == [2, 3]
        assert [str(s) for s in f.attrs["layers"]] == ["conv1", "head"]


def main():
    checker = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="gpuml_h5py_") as tmp:
        rng = np.random.default_rng(1)
        rs = np.concatenate([[0], np.cumsum(rng.integers(0, 12, 60))]).astype(np.int64)
        for name, kw in [("plain", {}), ("chunked", {"chunks": True, "fletcher32": True}),
                         ("gzip", {"compression": "gzip", "shuffle": True})]:
            path = os.path.join(tmp, f"py_{name}.h5")
            write_h5py(path, rs, **kw)
            subprocess.run([checker, "read", path], check=True)
        subprocess.run([checker, "write", tmp], check=True)
        check_c_files(tmp)
    print("test_h5py: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
