"""FroSSL (V=2, V=4), VICReg and Barlow Twins on real CIFAR-10 for the same CPU wall-clock budget each.

    python -m experiments.bench_methods_cifar10 --root data/cifar10 --minutes 7

Builds nothing itself: make the CIFAR-10 copy first (45k train / 5k held out, stratified, from the 50k train split):
    python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10

Each method trains the same small CNN (the CIFAR small-CNN preset, experiment/base/cifar10_small_cnn.yaml: strided,
widths 32-64-128-256) with its own default projector and loss, AdamW at a constant learning rate (no schedule, so
a time limit cuts no schedule short), batch 256, until ``trainer.max_time``; kNN top-1 (k=20, T=0.07, backbone
features) is measured before the first step and after the last. Runs are sequential so that each has both cores.
The table goes to stdout and to the results file with the exact command. ``--smoke``: FroSSL V=2 alone, one epoch
of the smallest model (e.g. on the tiny CIFAR of tests/experiments).
"""

from __future__ import annotations

import shlex
import sys

from experiments import harness

RUNS = {
    "frossl_v2": ["method=frossl", "augment.num_views=2"],
    "frossl_v4": ["method=frossl", "augment.num_views=4"],
    # the loss scales each view's invariance by V·D·λ, so its total grows as V² against the regulariser's V:
    # λ = 0.5 at V = 4 keeps V·λ (the balance of the V = 2, λ = 1 run)
    "frossl_v4_lambda0.5": ["method=frossl", "augment.num_views=4", "method.invariance_weight=0.5"],
    "vicreg": ["method=vicreg"],
    "barlow_twins": ["method=barlow_twins"],
}


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/methods_cifar10.md", training=True, runs=True)
    cli.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/")
    cli.add_argument("--minutes", type=float, default=7.0, help="training budget per method")
    cli.add_argument("--runs", nargs="*", default=["frossl_v2", "frossl_v4", "vicreg", "barlow_twins"], choices=list(RUNS))
    args = harness.parse(cli, argv, smoke={"runs": ["frossl_v2"]}, smoke_extra=[*harness.SMOKE_TRAIN, "trainer.max_epochs=1"])

    seconds = int(args.minutes * 60)
    budget = f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"
    common = [
        "experiment=base/cifar10_small_cnn", f"data.root={args.root}", "schedule.lr_scheduler=null",
        "schedule.optimizer.lr=1e-3", "trainer.max_epochs=50", f"trainer.max_time={budget}",
        "callbacks.knn.every_n_epochs=1000", *args.extra,
    ]
    rows = []
    for name in args.runs:
        summary = harness.train(name, [*RUNS[name], *common], f"{args.runs_dir}/{args.stamp}_{name}")
        if summary is None:
            sys.exit(f"[{name}] failed")
        rows.append({**summary, "name": name})
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
    harness.record(args, f"{args.minutes:g} min per method", table, f"Common overrides: `{shlex.join(common)}`")


if __name__ == "__main__":
    main()
