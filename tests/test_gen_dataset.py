#!/usr/bin/env python3
"""Smoke test of examples/gen_dataset: tiny hgcal and jets sets are valid
gpuml datasets (checked by gpuml's reader and loader) and, when h5py is
available, physically sensible (checked here) and deterministic per seed.

    test_gen_dataset.py GEN_DATASET H5PY_CHECK
"""
import os
import subprocess
import sys
import tempfile


def run(*args):
    subprocess.run([str(a) for a in args], check=True)


def main():
    gen, checker = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="gpuml_gen_") as tmp:
        hg, hg2, jets = (os.path.join(tmp, n) for n in ("hgcal.h5", "hgcal2.h5", "jets.h5"))
        run(gen, "hgcal", "--events", 30, "--seed", 5, "--min-hits", 20, "--max-hits", 80, "--out", hg)
        run(gen, "hgcal", "--events", 30, "--seed", 5, "--min-hits", 20, "--max-hits", 80, "--out", hg2)
        run(gen, "jets", "--events", 200, "--seed", 5, "--out", jets)
        for p in (hg, jets):
            run(checker, "validate", p)
        try:
            import h5py
            import numpy as np
        except ImportError:
            print("h5py not available: physics checks skipped")
            return 0
        with h5py.File(hg, "r") as f, h5py.File(hg2, "r") as g:
            rs = f["row_splits"][()]
            sizes = np.diff(rs)
            assert sizes.min() >= 20 and sizes.max() <= 80 + 64, sizes
            x = f["features"][()]
            assert [str(c) for c in f["features"].attrs["columns"]] == ["x", "y", "z", "energy", "layer"]
            assert np.all(np.abs(x[:, :2]) < 150) and np.all((x[:, 2] > 320) & (x[:, 2] < 370))
            assert np.all(x[:, 3] > 0) and np.all((x[:, 4] >= 0) & (x[:, 4] < 50))
            tid, te, tp = f["truth_id"][()], f["truth_energy"][()], f["truth_pos"][()]
            noise = tid < 0
            assert np.all(te[noise] == 0) and np.all(te[~noise] >= 2) and np.all(te[~noise] <= 200)
            assert np.all(tp[~noise, 2] == 320)
            ns = f["event/n_showers"][()]
            for e in range(len(ns)):
                ids = tid[rs[e]:rs[e + 1]]
                assert ids.max() < ns[e] and len(set(ids[ids >= 0])) == ns[e]
            for k in ("features", "truth_id", "truth_energy", "truth_pos", "event/n_showers"):
                assert np.array_equal(f[k][()], g[k][()]), k  # same seed, same file
        with h5py.File(jets, "r") as f:
            rs = f["row_splits"][()]
            sizes = np.diff(rs)
            assert sizes.min() >= 20 and sizes.max() <= 80
            lab = f["event/label"][()]
            assert set(lab.tolist()) == {0, 1}
            feat = f["features"][()]
            assert feat.shape[1] == 7 and np.all(np.isfinite(feat))
            for e in range(len(lab)):  # momentum fractions sum to one
                assert abs(np.exp(feat[rs[e]:rs[e + 1], 2]).sum() - 1) < 1e-4
        print("test_gen_dataset: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
