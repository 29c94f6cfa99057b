"""The peer benchmark's results section (``experiments/results/peers.md``), its JSON and its kNN figure."""

from __future__ import annotations

import json
import math

from experiments import harness
from experiments.peers import common as c


def _threshold(curves: dict[str, list[dict]]) -> float:
    """The highest kNN top-1 (rounded down to 0.005) that every run reaches after some epoch ≥ 1."""
    reached = min(max(p["knn_top1"] for p in curve[1:]) for curve in curves.values() if len(curve) > 1)
    return math.floor(reached * 200) / 200


def write(args, table: dict, best: dict, curves: dict, train_images: int, val_images: int) -> None:
    args.out = harness.results_file(args, "peers.md")
    base = args.out[:-3]
    harness.path(f"{base}_results.json", output=True).write_text(
        json.dumps({"table": table, "best_workers": best, "curves": curves}, indent=1))
    speed = ["| framework (loss) | DataLoader workers | images/s (steady) | s/epoch (from images/s) | peak memory MiB | run s |",
             "|---|---|---|---|---|---|"]
    for name, rows in table.items():
        for workers, row in sorted(rows.items()):
            mark = " **best**" if workers == best[name] else ""
            speed.append(f"| {name} | {workers}{mark} | {row['images_per_second']:.1f} | {row['epoch_seconds']:.1f} | "
                         f"{row['peak_mib']} | {row['seconds']:.0f} |")
    epochs = max(len(curve) for curve in curves.values())
    knn = ["| framework (workers) | " + " | ".join(f"epoch {e}" for e in range(epochs)) + " | s at each epoch's end | curve-run images/s | peak MiB |",
           "|---|" + "---|" * (epochs + 3)]
    for name, curve in curves.items():
        run = table[name][best[name]]["curve_run"]
        ends = ", ".join(f"{p['seconds']:.0f}" for p in curve[1:])
        knn.append(f"| {name} ({best[name]}) | " + " | ".join(f"{p['knn_top1']:.3f}" for p in curve) +
                   f" | {ends} | {run['images_per_second']:.1f} | {run['peak_mib']} |")
    threshold = _threshold(curves)
    reach = [f"| framework | first epoch with kNN ≥ {threshold:.3f} | wall-clock s (launch to that epoch's saved backbone) |",
             "|---|---|---|"]
    for name, curve in curves.items():
        hit = next((p for p in curve[1:] if p["knn_top1"] >= threshold), None)
        reach.append(f"| {name} | {hit['epoch'] if hit else '—'} | {hit['seconds'] if hit else '—'} |")
    ratios = ["| pair | frossl_lit images/s | peer images/s | frossl_lit / peer | kNN per epoch, frossl_lit | kNN per epoch, peer |",
              "|---|---|---|---|---|---|"]
    for ours, peer in _pairs(table):
        a, b = (table[n][best[n]]["images_per_second"] for n in (ours, peer))
        curve = lambda n: ", ".join(f"{p['knn_top1']:.3f}" for p in curves[n][1:])
        ratios.append(f"| {ours} vs {peer} | {a:.1f} | {b:.1f} | **{a / b:.2f}×** | {curve(ours)} | {curve(peer)} |")
    profile = ["| framework (workers) | where one step's time goes (median ms) |", "|---|---|"]
    for name in table:
        parts = table[name][best[name]].get("profile_ms", {})
        profile.append(f"| {name} ({best[name]}) | " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + " |")
    _figure(curves, f"{base}_knn.png")
    details = (
        f"Setting (experiments/peers/common.py): CIFAR-10 rebuilt from the JPEG archive, the stratified {train_images}/"
        f"{val_images} split of `data.holdout_fraction=0.1`; small CNN {'-'.join(map(str, c.WIDTHS))} (strided) + projector "
        f"{'-'.join(map(str, c.PROJECTOR))}; batch {c.BATCH}, {c.VIEWS} views of the solo-learn CIFAR recipe at {c.SIZE} px; "
        f"AdamW lr {c.LR:g} wd {c.WEIGHT_DECAY:g} (none on biases/norms), warm-up {c.WARMUP_FRACTION:.0%} + cosine to "
        f"{c.FINAL_FRACTION:.0%}, fp32 eager, {c.THREADS} torch threads. Throughput: {args.steps} steps per run, "
        f"images/s over {c.WINDOW}-step windows after the first (data waits included; frossl_lit's own "
        f"`ThroughputMonitor`, the same windows in the peers' runners); s/epoch = {c.steps_per_epoch(train_images)} "
        f"steps × {c.BATCH} / images/s. Curves: {args.epochs} epochs at each framework's best worker count"
        f"{f' on a stratified {args.fraction:.0%} of the training images' if args.fraction < 1 else ''}, each saved "
        f"backbone scored by one kNN (k={c.KNN_K}, T={c.KNN_T}, {val_images} held-out queries against all "
        f"{train_images} training images, un-augmented). Peak memory: the largest sum of PSS over the training process "
        f"and its DataLoader workers. Profiles: frossl_lit through experiments.bench_step's clock on its real loop "
        f"(augmentation is batched in the main process, after the loader), the peers by timers in their loops (their "
        f"augmentation runs per image inside the loader: in 'data wait' at 0 workers, in the workers otherwise).")
    body = "\n\n".join(["\n".join(speed), "Against each peer, at each one's best worker count:", "\n".join(ratios),
                        "kNN top-1 on the held-out images after each epoch:", "\n".join(knn),
                        "\n".join(reach), "One step, at the best worker count:", "\n".join(profile),
                        f"![kNN top-1 against wall-clock]({base.rsplit('/', 1)[-1]}_knn.png)"])
    harness.record(args, "peer frameworks, same job (issue 26)", body, details, replace=False)


def _pairs(table: dict) -> list[tuple[str, str]]:
    from experiments.peers.bench import PAIRS

    return [(a, b) for a, b in PAIRS if a in table and b in table]


def _figure(curves: dict, path: str) -> None:
    plt = harness.pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        axis.plot([p["seconds"] for p in curve], [p["knn_top1"] for p in curve], marker="o", label=name)
    axis.set_xlabel("wall-clock seconds from launch (epoch 0: the initial network)")
    axis.set_ylabel("kNN top-1, held-out 5k")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(harness.path(path, output=True), dpi=110)
    plt.close(figure)
