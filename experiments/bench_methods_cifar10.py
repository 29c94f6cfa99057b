#!/usr/bin/env python
"""FroSSL (V=2, V=4), VICReg and Barlow Twins on real CIFAR-10 for the same CPU wall-clock budget each.

    python experiments/bench_methods_cifar10.py --root data/cifar10 --minutes 7

Builds nothing itself: make the CIFAR-10 copy first (45k train / 5k held out, stratified, from the 50k train split):
    python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10

Each method trains the same small CNN (strided, widths 32-64-128-256) with its own default projector and loss,
AdamW at a constant learning rate (no schedule, so a time limit cuts no schedule short), batch 256, until
``trainer.max_time``; kNN top-1 (k=20, T=0.07, backbone features) is measured before the first step and after the
last. Runs are sequential so that each has both cores. The table goes to stdout and to the results file with
the exact command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time

from _results import REPO, append_report

RUNS = {
    "frossl_v2": ["method=frossl", "augment.num_views=2"],
    "frossl_v4": ["method=frossl", "augment.num_views=4"],
    # the loss scales each view's invariance by V·D·λ, so its total grows as V² against the regulariser's V:
    # λ = 0.5 at V = 4 keeps V·λ (the balance of the V = 2, λ = 1 run)
    "frossl_v4_lambda0.5": ["method=frossl", "augment.num_views=4", "method.invariance_weight=0.5"],
    "vicreg": ["method=vicreg"],
    "barlow_twins": ["method=barlow_twins"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/")
    parser.add_argument("--minutes", type=float, default=7.0, help="training budget per method")
    parser.add_argument("--runs", nargs="*", default=["frossl_v2", "frossl_v4", "vicreg", "barlow_twins"], choices=list(RUNS))
    parser.add_argument("--out", default="experiments/results/methods_cifar10.md")
    parser.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides for every run")
    args = parser.parse_args()

    seconds = int(args.minutes * 60)
    budget = f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    common = [
        "data=cifar10", f"data.root={args.root}", "data.holdout_fraction=0.1",
        "backbone=small_cnn", "backbone.widths=[32,64,128,256]",
        "schedule=short", "schedule.lr_scheduler=null", "schedule.optimizer.lr=1e-3", "trainer.max_epochs=50",
        f"trainer.max_time={budget}", "callbacks.knn.every_n_epochs=1000", "trainer.enable_progress_bar=false",
        *args.extra,
    ]
    rows = []
    for name in args.runs:
        run_dir = REPO / "outputs" / "bench_methods" / f"{stamp}_{name}"
        command = [sys.executable, "-m", "frossl_lit.train", *RUNS[name], *common, f"hydra.run.dir={run_dir}"]
        print(f"[{name}] {shlex.join(command[1:])}", flush=True)
        started = time.time()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"[{name}] failed:\n{result.stderr[-4000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        summary.update(name=name, total_seconds=round(time.time() - started, 1))
        rows.append(summary)
        print(f"[{name}] knn {summary['knn_top1_init']:.4f} -> {summary['knn_top1']:.4f}, steps {summary['global_step']}", flush=True)

    header = "| run | views | steps | epochs | kNN top-1 init | kNN top-1 final | gain (points) | probe top-1 |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        views = 4 if "_v4" in row["name"] else 2
        gain = 100 * (row["knn_top1"] - row["knn_top1_init"])
        probe = f"{row['probe_top1']:.4f}" if row["probe_top1"] is not None else "n/a"
        lines.append(
            f"| {row['name']} | {views} | {row['global_step']} | {row['global_step'] * 256 / 45000:.2f} | "
            f"{row['knn_top1_init']:.4f} | {row['knn_top1']:.4f} | {gain:+.1f} | {probe} |"
        )
    table = "\n".join(lines)
    print(table)
    out = append_report(args.out, f"{args.minutes:g} min per method", table, f"Common overrides: `{shlex.join(common)}`")
    print(f"appended to {out}")

if __name__ == "__main__":
    main()
