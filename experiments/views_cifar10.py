"""The FroSSL paper's views result at laptop scale: epochs (and seconds) to a kNN threshold on real CIFAR-10.

    python -m experiments.views_cifar10 --root data/cifar10

Make the CIFAR-10 copy first (the 50k training images of ../shared, JPEG re-encoded):
    python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10

What runs (one after another, each with both cores): FroSSL with V = 2, 4 and 8 views (the default official
loss with ``method.balance_views=true``, λ = 1), VICReg and Barlow Twins with 2 views. Everything else is shared
(the CIFAR small-CNN preset, experiment/base/cifar10_small_cnn.yaml, and this script's overrides): a stratified
10% of the 50k images held out for kNN, pretraining on a stratified 10k of the other 45k (``data.train_fraction``),
the strided small CNN 32-64-128-256 at 32 px, each method's default projector, AdamW lr 2e-3 with 10% warm-up
then cosine (``schedule=short``), batch 128, the same number of epochs, kNN top-1 (k = 20, T = 0.07, backbone
features, 10k bank) before training and after every epoch. Seconds are training wall-clock with the kNN passes
left out (``val/knn_train_seconds``).

With ``--stamp`` the finished runs of an earlier invocation are reused and an interrupted one resumes from its
``last.ckpt`` (its kNN curve and training clock continue where they stopped).

Writes a table of epochs and seconds to reach kNN thresholds that every run reaches, the per-epoch curves, and a
PNG (kNN against epochs and against seconds; ``--png``, else beside ``--out`` as ``<out>_knn.png``) into
experiments/results/, with this command. ``--smoke``: FroSSL V=2 alone, one epoch of the smallest model.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from experiments import harness

RUNS = {
    "frossl_v2": ["method=frossl", "augment.num_views=2"],
    "frossl_v4": ["method=frossl", "augment.num_views=4"],
    "frossl_v8": ["method=frossl", "augment.num_views=8"],
    "vicreg_v2": ["method=vicreg", "augment.num_views=2"],
    "barlow_twins_v2": ["method=barlow_twins", "augment.num_views=2"],
}


def first_reaching(curve, threshold: float) -> tuple[int, float] | None:
    for epoch, top1, seconds in curve[1:]:
        if top1 >= threshold:
            return epoch, seconds
    return None


def plot(curves: dict[str, list], thresholds: list[float], path: Path) -> None:
    plt = harness.pyplot()
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


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/views_cifar10.md", training=True, runs=True)
    cli.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/ (relative to the repo)")
    cli.add_argument("--epochs", type=int, default=15)
    cli.add_argument("--train-fraction", type=float, default=10000 / 45000)
    cli.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    cli.add_argument("--png", help="the figure (default: <out>_knn.png beside --out)")
    args = harness.parse(cli, argv, smoke={"runs": ["frossl_v2"], "epochs": 1}, smoke_extra=harness.SMOKE_TRAIN)

    common = [
        "experiment=base/cifar10_small_cnn", f"data.root={args.root}", f"data.train_fraction={args.train_fraction:.6g}",
        "data.batch_size=128", f"schedule.max_epochs={args.epochs}", "callbacks.knn.every_n_epochs=1", *args.extra,
    ]
    curves = {}
    for name in args.runs:
        run_dir = f"{args.runs_dir}/{args.stamp}_{name}"
        if harness.train(name, [*RUNS[name], *common], run_dir) is None:  # reported; the other runs go on
            continue
        curves[name] = harness.knn_curve(run_dir)
        print(f"[{name}] kNN per epoch: {' '.join(f'{t:.3f}' for _, t, _ in curves[name])}", flush=True)

    # thresholds every run reaches: a quarter, half, three quarters and all of the way from the initial figure
    # to the best figure the weakest run reaches (rounded down to whole percents)
    reachable = min(max(t for _, t, _ in curve[1:]) for curve in curves.values())
    start = max(curve[0][1] for curve in curves.values())
    thresholds = sorted({int((start + f * (reachable - start)) * 100) / 100 for f in (0.25, 0.5, 0.75, 1.0)})
    thresholds = [t for t in thresholds if t > start]  # empty when some run never rose above the start: the
    # per-epoch table below still shows what happened (train longer with --epochs)

    header = ["run", "views", "kNN init", *(f"epochs to {t:.2f}" for t in thresholds),
              *(f"seconds to {t:.2f}" for t in thresholds), f"kNN after {args.epochs} epochs", "seconds per epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, curve in curves.items():
        reached = [first_reaching(curve, t) for t in thresholds]
        cells = [name, RUNS[name][1].split("=")[1], f"{curve[0][1]:.4f}", *(str(r[0]) if r else "not reached" for r in reached),
                 *(f"{r[1]:.0f}" if r else "—" for r in reached), f"{curve[-1][1]:.4f}", f"{curve[-1][2] / curve[-1][0]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    per_epoch_lines = ["| run | " + " | ".join(str(e) for e, _, _ in next(iter(curves.values()))) + " |"]
    per_epoch_lines.append("|" + "---|" * (1 + len(next(iter(curves.values())))))
    for name, curve in curves.items():
        per_epoch_lines.append(f"| {name} | " + " | ".join(f"{t:.3f}" for _, t, _ in curve) + " |")
    print(table)
    print("\n".join(per_epoch_lines))

    png = harness.path(args.png or args.out.removesuffix(".md") + "_knn.png", output=True)
    plot(curves, thresholds, png)
    curves_json = png.with_name(png.stem + "_curves.json")  # (epoch, kNN top-1, training seconds) per run
    curves_json.write_text(json.dumps({"command": args.command, "common": common, "curves": curves}, indent=1) + "\n")
    details = (
        f"Common overrides: `{shlex.join(common)}`\n\nPNG: `{os.path.relpath(png, harness.REPO)}`; curves: "
        f"`{os.path.relpath(curves_json, harness.REPO)}`\n\nkNN top-1 per epoch (epoch 0 = initialisation):\n\n"
        + "\n".join(per_epoch_lines)
    )
    harness.record(args, f"{args.epochs} epochs, {len(curves)} runs", table, details)


if __name__ == "__main__":
    main()
