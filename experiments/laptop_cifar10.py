#!/usr/bin/env python
"""The laptop preset on real CIFAR-10: kNN top-1 against wall-clock seconds, FroSSL beside VICReg and Barlow Twins.

    python experiments/laptop_cifar10.py --root data/cifar10 [--methods frossl vicreg barlow_twins]

Each method runs ``python -m frossl_lit.train experiment=M_cifar10_laptop data.root=ROOT`` (the same laptop setting,
experiment/base/cifar10_laptop.yaml, with FroSSL's tuned λ or VICReg's / Barlow Twins' own weights) alone on
the machine (one after another) and the script records, from the run's metrics.csv, kNN top-1 on the 10% held-out
split after every epoch against the seconds since the run started (training + every kNN pass, the one before the
first step included), and the whole command's wall-clock (startup, data loading and the final summary included).
Writes a table, the curves (JSON; a method run again replaces its own curve) and a PNG into experiments/results/.

Make the CIFAR-10 copy first: python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _results import REPO, append_report

sys.path.insert(0, str(REPO / "src"))
from frossl_lit.config.resolvers import cpu_has_native_bf16  # noqa: E402

TARGET = 0.65


def curve(run_dir: Path) -> list[tuple[float, float]]:
    """(seconds since training started, kNN top-1): the value before the first step at 0 s."""
    with open(run_dir / "csv" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/knn_top1")]
    points = [(0.0, float(rows[0]["val/knn_top1"]))]
    for row in rows[1:]:
        if row.get("val/knn_train_seconds"):
            points.append((float(row["val/knn_train_seconds"]) + float(row["val/knn_eval_seconds"]), float(row["val/knn_top1"])))
    return points


def plot(curves: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        seconds, top1 = zip(*points)
        axis.plot([s / 60 for s in seconds], top1, marker=".", label=name)
    axis.axhline(TARGET, color="grey", linewidth=0.6, linestyle=":")
    axis.axvline(10, color="grey", linewidth=0.6, linestyle=":")
    axis.set_xlabel("minutes since training started (2 CPU cores, kNN passes included)")
    axis.set_ylabel("kNN top-1, 10% held out")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/")
    parser.add_argument("--methods", nargs="*", default=["frossl", "vicreg", "barlow_twins"])
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument("--out-dir", default="outputs/laptop_cifar10")
    args = parser.parse_args()

    bank = "?"
    curves, lines = {}, ["| method | kNN before | kNN at the end | epochs | wall-clock of the command (s) | first reaches 0.65 at (s) |", "|---|---|---|---|---|---|"]
    for method in args.methods:
        run_dir = REPO / args.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{method}"
        command = [sys.executable, "-m", "frossl_lit.train", f"experiment={method}_cifar10_laptop", f"data.root={args.root}",
                   f"hydra.run.dir={run_dir}", *args.extra]
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        wall = time.perf_counter() - started
        summary = json.loads((run_dir / "summary.json").read_text())
        bank = summary.get("knn_bank_size", bank)
        curves[method] = points = curve(run_dir)
        reached = next((f"{s:.0f}" for s, top1 in points if top1 >= TARGET), "never")
        lines.append(f"| {method} | {points[0][1]:.3f} | {summary['knn_top1']:.3f} | {summary['epochs']} | {wall:.0f} | {reached} |")
        print(lines[-1], flush=True)
    results = REPO / "experiments" / "results"
    stored = results / "laptop_cifar10_curves.json"
    curves = {**(json.loads(stored.read_text()) if stored.is_file() else {}), **curves}  # other methods' curves stay
    stored.write_text(json.dumps(curves, indent=1) + "\n")
    plot(curves, results / "laptop_cifar10.png")
    details = ("Curves (seconds since training started, kNN top-1): `experiments/results/laptop_cifar10_curves.json`; "
               "plot: `experiments/results/laptop_cifar10.png`. kNN: k = 20, T = 0.07, backbone features, a bank of "
               f"{bank} of the 45k training images, the 5k held-out images as queries. This CPU "
               + ("has native bf16: bf16-mixed, eager, 8 epochs." if cpu_has_native_bf16() else
                  "has no native bf16: fp32, torch.compile, 5 epochs."))
    append_report("experiments/results/laptop_cifar10.md", "laptop presets (experiment=<method>_cifar10_laptop)", "\n".join(lines), details)


if __name__ == "__main__":
    main()
