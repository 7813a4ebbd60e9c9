#!/usr/bin/env python3
"""Turn a training driver's JSON-lines metrics into loss / accuracy curves.

    python3 examples/plot_metrics.py gravnet_metrics.jsonl -o gravnet_curves.png
    python3 examples/plot_metrics.py particlenet_metrics.jsonl -o pn_curves.png
    python3 examples/plot_metrics.py gravnet_metrics.jsonl --physics final_metrics.json -o curves.png

Needs matplotlib (pip install matplotlib). Training steps are plotted as
lines, evaluation records (lines with an "eval" key) as points at the step
they follow. With --physics (train_gravnet's final JSON line, which holds
"physics"), two more panels beside the curves: shower efficiency and energy
response (mean, with the resolution as error bars) in bins of true energy,
for the trained model, the same model untrained and the CLUE baseline.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_physics(axes, physics):
    """Efficiency and response per true-energy bin, one line per clustering."""
    styles = {"trained": ("C0", "o"), "untrained": ("C7", "s"), "clue": ("C3", "^")}
    for name, (color, marker) in styles.items():
        res = physics.get(name)
        if not res or not res.get("bins"):
            continue
        bins = res["bins"]
        centres = [(b["lo"] * b["hi"]) ** 0.5 for b in bins]  # geometric: the bins are logarithmic
        label = f"{name} (eff {res['efficiency']:.3f}, res {res['resolution']:.3f})"
        axes[0].plot(centres, [b["efficiency"] for b in bins], marker=marker, color=color, label=label)
        shown = [(c, b) for c, b in zip(centres, bins) if b["response"] > 0]
        axes[1].errorbar([c for c, _ in shown], [b["response"] for _, b in shown],
                         yerr=[b["resolution"] * b["response"] for _, b in shown], marker=marker, color=color,
                         capsize=3, label=name)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("true shower energy [GeV]")
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"shower efficiency (E >= {physics.get('min_energy', 0):g} GeV overall)")
    axes[0].set_ylim(0, 1.05)
    axes[1].set_ylabel("response E_cluster / E_true (bars: resolution)")
    axes[1].axhline(1.0, color="k", lw=0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("-o", "--output", default="curves.png")
    ap.add_argument("--physics", help="final JSON of train_gravnet (with a 'physics' object)")
    args = ap.parse_args()
    physics = None
    if args.physics:
        with open(args.physics) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{") and '"physics"' in line:
                    physics = json.loads(line)["physics"]
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
    fig, grid = plt.subplots(2 if physics else 1, 2, figsize=(11, 8 if physics else 4), squeeze=False)
    axes = grid[0]
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
    if physics:
        plot_physics(grid[1], physics)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
