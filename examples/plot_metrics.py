#!/usr/bin/env python3
"""Turn a training driver's JSON-lines metrics into loss / accuracy curves.

    python3 examples/plot_metrics.py gravnet_metrics.jsonl -o gravnet_curves.png
    python3 examples/plot_metrics.py particlenet_metrics.jsonl -o pn_curves.png

Needs matplotlib (pip install matplotlib). Training steps are plotted as
lines, evaluation records (lines with an "eval" key) as points at the step
they follow.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("-o", "--output", default="curves.png")
    args = ap.parse_args()
    steps, evals = [], []
    with open(args.metrics) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if "eval" in rec:
                rec["step"] = steps[-1]["step"] if steps else 0
                evals.append(rec)
            else:
                steps.append(rec)
    keys = [k for k in ("loss", "L_V", "L_beta", "L_noise", "accuracy") if steps and k in steps[0]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k in keys:
        if k == "accuracy":
            continue
        axes[0].plot([r["step"] for r in steps], [r[k] for r in steps], label=k, lw=1)
    for r in evals:
        if "loss" in r:
            axes[0].scatter([r["step"]], [r["loss"]], marker="o", color="k", zorder=3, label="held-out loss")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    if "accuracy" in keys:
        axes[1].plot([r["step"] for r in steps], [r["accuracy"] for r in steps], label="train accuracy", lw=1)
        for r in evals:
            if "accuracy" in r:
                axes[1].scatter([r["step"]], [r["accuracy"]], marker="o", color="k", label="held-out accuracy")
        axes[1].set_ylabel("accuracy")
    else:
        axes[1].plot([r["step"] for r in steps], [r["events_per_s"] for r in steps], lw=1)
        axes[1].set_ylabel("events / s")
    axes[1].set_xlabel("step")
    axes[1].legend() if axes[1].get_legend_handles_labels()[0] else None
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
