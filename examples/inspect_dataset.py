#!/usr/bin/env python3
"""Inspect a gpuml dataset file with h5py (no gpuml needed).

    python3 examples/inspect_dataset.py hgcal.h5
    python3 examples/inspect_dataset.py jets.h5 --baseline

Prints the layout (DESIGN.md section 7: /row_splits [B+1] i64, per-row
fields /<name> [N, ...], per-event fields /event/<name> [B, ...], "columns"
attributes), checks it the way gpuml's reader does, and summarises the
contents. --baseline (jets files) measures how well simple jet-level
observables separate the two classes: a cut on the jet mass, and a logistic
regression on mass, N-subjettiness ratios, multiplicity and pt dispersion.
"""
import argparse
import sys

import h5py
import numpy as np


def check_layout(f):
    rs = f["row_splits"][()]
    assert rs.dtype == np.int64 and rs.ndim == 1 and len(rs) >= 1, "row_splits must be [B+1] int64"
    assert rs[0] == 0 and np.all(np.diff(rs) >= 0), "row_splits must start at 0 and not decrease"
    b, n = len(rs) - 1, int(rs[-1])
    fields = {}
    for name, obj in f.items():
        if name == "row_splits":
            continue
        if name == "event":
            for ename, eobj in obj.items():
                assert isinstance(eobj, h5py.Dataset) and eobj.shape[0] == b, f"event/{ename}: expected {b} rows"
                fields["event/" + ename] = eobj
            continue
        assert isinstance(obj, h5py.Dataset) and obj.shape[0] == n, f"{name}: expected {n} rows"
        fields[name] = obj
    return rs, fields


def describe(path):
    with h5py.File(path, "r") as f:
        rs, fields = check_layout(f)
        sizes = np.diff(rs)
        print(f"{path}: {len(rs) - 1} events, {rs[-1]} rows "
              f"(per event min {sizes.min() if len(sizes) else 0}, mean {sizes.mean() if len(sizes) else 0:.1f}, "
              f"max {sizes.max() if len(sizes) else 0})")
        for k, v in f.attrs.items():
            print(f"  attribute {k} = {v!r}")
        for name, d in fields.items():
            cols = d.attrs.get("columns")
            filt = "fletcher32" if d.fletcher32 else "no checksum"
            print(f"  {name:18s} {str(d.dtype):8s} {str(d.shape):16s} {filt:12s}"
                  + (f" columns {[str(c) for c in cols]}" if cols is not None else ""))
        if "truth_id" in fields:
            tid = fields["truth_id"][()]
            print(f"  noise hits: {np.mean(tid < 0):.1%}; showers per event: "
                  f"{fields['event/n_showers'][()].mean():.2f}")
        if "event/label" in fields:
            lab = fields["event/label"][()]
            print(f"  labels: {np.bincount(lab).tolist()}")


def jet_observables(path):
    """Per jet: mass, tau1, tau2/tau1, tau3/tau2, multiplicity, pt dispersion."""
    with h5py.File(path, "r") as f:
        rs = f["row_splits"][()]
        feat = f["features"][()]
        labels = f["event/label"][()]
    pt = np.exp(feat[:, 0].astype(np.float64))
    deta, dphi = feat[:, 5].astype(np.float64), feat[:, 6].astype(np.float64)
    out = np.zeros((len(rs) - 1, 6))
    for j in range(len(rs) - 1):
        s = slice(rs[j], rs[j + 1])
        p, e, ph = pt[s], deta[s], dphi[s]
        m2 = np.sum(np.triu(np.outer(p, p) * 2 * (np.cosh(e[:, None] - e[None, :]) - np.cos(ph[:, None] - ph[None, :])), 1))
        taus = []
        for k in (1, 2, 3):
            # pt-weighted k-means from the k hardest particles: good enough axes
            ax = np.stack([e, ph], 1)[np.argsort(-p)[:k]].copy()
            for _ in range(5):
                d2 = (e[:, None] - ax[None, :, 0]) ** 2 + (ph[:, None] - ax[None, :, 1]) ** 2
                a = np.argmin(d2, 1)
                for c in range(k):
                    w = p[a == c]
                    if w.sum() > 0:
                        ax[c] = [np.sum(w * e[a == c]) / w.sum(), np.sum(w * ph[a == c]) / w.sum()]
            d2 = (e[:, None] - ax[None, :, 0]) ** 2 + (ph[:, None] - ax[None, :, 1]) ** 2
            taus.append(np.sum(p * np.sqrt(d2.min(1))) / np.sum(p))
        z = p / p.sum()
        out[j] = [np.sqrt(max(m2, 0)), taus[0], taus[1] / max(taus[0], 1e-9), taus[2] / max(taus[1], 1e-9),
                  len(p), np.sqrt(np.sum(z * z))]
    return out, labels


def baseline(path):
    x, y = jet_observables(path)
    n = len(y)
    ntr = int(0.7 * n)
    mass = x[:, 0]
    # Best single threshold on the mass, chosen on the training part.
    cuts = np.quantile(mass[:ntr], np.linspace(0.01, 0.99, 197))
    acc = [np.mean((mass[:ntr] > c) == y[:ntr]) for c in cuts]
    c = cuts[int(np.argmax(acc))]
    print(f"  mass cut at {c:.1f} GeV: test accuracy {np.mean((mass[ntr:] > c) == y[ntr:]):.3f}")
    # Logistic regression on standardised observables (and their squares).
    feats = np.concatenate([x, x[:, :4] ** 2], 1)
    mu, sd = feats[:ntr].mean(0), feats[:ntr].std(0) + 1e-9
    z = (feats - mu) / sd
    z = np.concatenate([z, np.ones((n, 1))], 1)
    w = np.zeros(z.shape[1])
    for _ in range(3000):
        pr = 1 / (1 + np.exp(-z[:ntr] @ w))
        w -= 0.5 * z[:ntr].T @ (pr - y[:ntr]) / ntr
    pr = 1 / (1 + np.exp(-z[ntr:] @ w))
    print(f"  logistic regression on mass, tau1, tau21, tau32, multiplicity, pt dispersion: "
          f"test accuracy {np.mean((pr > 0.5) == y[ntr:]):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--baseline", action="store_true", help="jets: accuracy of simple jet-level discriminants")
    a = ap.parse_args()
    for p in a.files:
        describe(p)
        if a.baseline:
            with h5py.File(p, "r") as f:
                is_jets = "event/label" in f and "features" in f
            if is_jets:
                baseline(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
