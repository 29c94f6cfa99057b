#!/usr/bin/env python
"""The FroSSL paper's views result at laptop scale: epochs (and seconds) to a kNN threshold on real CIFAR-10.

    python experiments/views_cifar10.py --root data/cifar10

Make the CIFAR-10 copy first (the 50k training images of ../shared, JPEG re-encoded):
    python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10

What runs (one after another, each with both cores): FroSSL with V = 2, 4 and 8 views (the default official
loss with ``method.balance_views=true``, λ = 1), VICReg and Barlow Twins with 2 views. Everything else is shared:
a stratified 10% of the 50k images held out for kNN, pretraining on a stratified 10k of the other 45k
(``data.train_fraction``), the strided small CNN 32-64-128-256 at 32 px, each method's default projector, AdamW
lr 2e-3 with 10% warm-up then cosine (``schedule=short``), batch 128, the same number of epochs, kNN top-1
(k = 20, T = 0.07, backbone features, 10k bank) before training and after every epoch. Seconds are training
wall-clock with the kNN passes left out (``val/knn_train_seconds``).

With ``--stamp`` the finished runs of an earlier invocation are reused and an interrupted one resumes from its
``last.ckpt`` (its kNN curve and training clock continue where they stopped).

Writes a table of epochs and seconds to reach kNN thresholds that every run reaches, the per-epoch curves, and a
PNG (kNN against epochs and against seconds) into experiments/results/, with this command.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _results import REPO, append_report

RUNS = {
    "frossl_v2": ["method=frossl", "augment.num_views=2"],
    "frossl_v4": ["method=frossl", "augment.num_views=4"],
    "frossl_v8": ["method=frossl", "augment.num_views=8"],
    "vicreg_v2": ["method=vicreg", "augment.num_views=2"],
    "barlow_twins_v2": ["method=barlow_twins", "augment.num_views=2"],
}


def knn_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(epoch, kNN top-1, training seconds) from the run's metrics.csv; epoch 0 is the initialisation."""
    with open(run_dir / "csv" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/knn_top1")]
    curve = [(0, float(rows[0]["val/knn_top1"]), 0.0)]
    for row in rows[1:]:
        if row.get("epoch") and row.get("val/knn_train_seconds"):
            curve.append((int(row["epoch"]) + 1, float(row["val/knn_top1"]), float(row["val/knn_train_seconds"])))
    return curve


def first_reaching(curve, threshold: float) -> tuple[int, float] | None:
    for epoch, top1, seconds in curve[1:]:
        if top1 >= threshold:
            return epoch, seconds
    return None


def plot(curves: dict[str, list], thresholds: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in curves.items():
        epochs, top1, seconds = zip(*curve)
        style = "-" if name.startswith("frossl") else "--"
        by_epoch.plot(epochs, top1, style, marker=".", label=name)
        by_time.plot([s / 60 for s in seconds], top1, style, marker=".", label=name)
    for axis, label in ((by_epoch, "epoch"), (by_time, "training minutes (2 CPU cores, kNN passes excluded)")):
        for threshold in thresholds:
            axis.axhline(threshold, color="grey", linewidth=0.6, linestyle=":")
        axis.set_xlabel(label)
        axis.set_ylabel("kNN top-1 (5k held out)")
        axis.grid(alpha=0.3)
    by_epoch.legend()
    figure.suptitle("CIFAR-10, small CNN, 10k pretraining images: kNN top-1 per epoch and per second")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/ (relative to the repo)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-fraction", type=float, default=10000 / 45000)
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default="experiments/results/views_cifar10.md")
    parser.add_argument("--png", default="experiments/results/views_cifar10_knn.png")
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument("--stamp", help="reuse the finished runs of an earlier invocation (outputs/views_cifar10/<stamp>_*)")
    args = parser.parse_args()

    stamp = args.stamp or time.strftime("%Y-%m-%d_%H-%M-%S")
    common = [
        "data=cifar10", f"data.root={args.root}", "data.holdout_fraction=0.1", f"data.train_fraction={args.train_fraction:.6g}",
        "data.batch_size=128", "backbone=small_cnn", "backbone.widths=[32,64,128,256]",
        "schedule=short", "schedule.optimizer.lr=2e-3", f"schedule.max_epochs={args.epochs}",
        "callbacks.knn.every_n_epochs=1", "trainer.enable_progress_bar=false", *args.extra,
    ]
    curves, summaries = {}, {}
    for name in args.runs:
        run_dir = Path("outputs") / "views_cifar10" / f"{stamp}_{name}"
        command = [sys.executable, "-m", "frossl_lit.train", *RUNS[name], *common, f"hydra.run.dir={run_dir}"]
        print(f"[{name}] {shlex.join(command[1:])}", flush=True)
        finished = (REPO / run_dir / "summary.json").is_file()
        last = REPO / run_dir / "checkpoints" / "last.ckpt"
        if not finished and last.is_file():  # an interrupted run picks up where it stopped (same curve, same clock)
            command.append(f"ckpt_path={last}")
            print(f"[{name}] resuming from {os.path.relpath(last, REPO)}", flush=True)
        result = subprocess.CompletedProcess(command, 0) if finished else subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode:  # report it and go on with the other runs
            print(f"[{name}] failed (left out of the table):\n{result.stderr[-4000:]}", flush=True)
            continue
        summaries[name] = json.loads((REPO / run_dir / "summary.json").read_text())
        curves[name] = knn_curve(REPO / run_dir)
        print(f"[{name}] kNN per epoch: {' '.join(f'{t:.3f}' for _, t, _ in curves[name])}", flush=True)

    # thresholds every run reaches: a quarter, half, three quarters and all of the way from the initial figure
    # to the best figure the weakest run reaches (rounded down to whole percents)
    reachable = min(max(t for _, t, _ in curve[1:]) for curve in curves.values())
    start = max(curve[0][1] for curve in curves.values())
    thresholds = sorted({int((start + f * (reachable - start)) * 100) / 100 for f in (0.25, 0.5, 0.75, 1.0)})
    thresholds = [t for t in thresholds if t > start]  # empty when some run never rose above the start: the
    # per-epoch table below still shows what happened (train longer with --epochs)

    header = "| run | views | kNN init | " + " | ".join(f"epochs to {t:.2f}" for t in thresholds)
    header += " | " + " | ".join(f"seconds to {t:.2f}" for t in thresholds) + f" | kNN after {args.epochs} epochs | seconds per epoch |"
    lines = [header, "|" + "---|" * (5 + 2 * len(thresholds))]
    for name, curve in curves.items():
        reached = [first_reaching(curve, t) for t in thresholds]
        epochs = " | ".join(str(r[0]) if r else "not reached" for r in reached)
        seconds = " | ".join(f"{r[1]:.0f}" if r else "—" for r in reached)
        per_epoch = curve[-1][2] / curve[-1][0]
        lines.append(f"| {name} | {RUNS[name][1].split('=')[1]} | {curve[0][1]:.4f} | {epochs} | {seconds} | {curve[-1][1]:.4f} | {per_epoch:.0f} |")
    table = "\n".join(lines)
    per_epoch_lines = ["| run | " + " | ".join(str(e) for e, _, _ in next(iter(curves.values()))) + " |"]
    per_epoch_lines.append("|" + "---|" * (1 + len(next(iter(curves.values())))))
    for name, curve in curves.items():
        per_epoch_lines.append(f"| {name} | " + " | ".join(f"{t:.3f}" for _, t, _ in curve) + " |")
    print(table)
    print("\n".join(per_epoch_lines))

    png = REPO / args.png
    plot(curves, thresholds, png)
    curves_json = png.with_name(png.stem + "_curves.json")  # (epoch, kNN top-1, training seconds) per run
    curves_json.write_text(json.dumps({"command": sys.argv, "common": common, "curves": curves}, indent=1) + "\n")
    details = (
        f"Common overrides: `{shlex.join(common)}`\n\nPNG: `{args.png}`; curves: "
        f"`{os.path.relpath(curves_json, REPO)}`\n\nkNN top-1 per epoch (epoch 0 = initialisation):\n\n"
        + "\n".join(per_epoch_lines)
    )
    out = append_report(args.out, f"{args.epochs} epochs, {len(curves)} runs", table, details)
    print(f"appended to {out}; figure {png}")


if __name__ == "__main__":
    main()
