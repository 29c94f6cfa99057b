"""The laptop preset on real CIFAR-10: kNN top-1 against wall-clock seconds, FroSSL beside VICReg and Barlow Twins.

    python -m experiments.laptop_cifar10 --root data/cifar10 [--methods frossl vicreg barlow_twins]

Each method runs ``python -m frossl_lit.train experiment=M_cifar10_laptop data.root=ROOT`` (the same laptop setting,
experiment/base/cifar10_laptop.yaml, with each method's weights from the equal tuning below) alone on
the machine (one after another) and the script records, from the run's metrics.csv, kNN top-1 on the 10% held-out
split after every epoch against the seconds since the run started (training + every kNN pass, the one before the
first step included), and the whole command's wall-clock (startup, data loading and the final summary included).
Writes a table, the curves (JSON; a method run again replaces its own curve) and a PNG into experiments/results/
(beside ``--out``: ``<out>_curves.json``, ``<out>.png``). ``--smoke``: FroSSL alone, one epoch of the smallest
model in fp32, eager.

``--tune``: the equal tuning behind the presets' weights and lr. Every method gets the same seven trials, each a
budgeted run of ``--tune-seconds`` (the preset's setting, its own method): its invariance weight relative to the
rest of its loss at ×2, ×1, ×½, ×¼ and ×⅛ of the published value (FroSSL's λ, VICReg's λ with μ = 25 and ν = 1,
Barlow Twins' off-diagonal weight at ×½, ×1, ×2, ×4, ×8, which weighs its invariance term the same way) at the
preset's lr, then the best of those at half and twice the lr; a trial finished earlier in ``--runs-dir`` is
reused when its recorded config is the one it would compose now (else the script stops in one line:
``frossl_lit.config.compose.settings_changed``). The table of every trial and each method's best go to the results
file; the presets (conf/experiment/<method>_cifar10_laptop.yaml) carry the best by hand.

Make the CIFAR-10 copy first: python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments import harness
from frossl_lit.config.resolvers import cpu_has_native_bf16

TARGET = 0.70
# --tune: (the key of the weight, its published value, +1 when the key weighs the invariance term itself, -1 when
# it weighs the rest: Barlow Twins' λ scales redundancy reduction, so ×½ of it is ×2 on invariance)
WEIGHTS = {
    "frossl": ("method.invariance_weight", 1.0, 1),
    "vicreg": ("method.invariance_weight", 25.0, 1),
    "barlow_twins": ("method.off_diagonal_weight", 0.0051, -1),
}
FACTORS = (2.0, 1.0, 0.5, 0.25, 0.125)  # on the invariance term's weight, relative to the published value
LR = 2.0e-3                      # the preset's (schedule=short)
LR_FACTORS = (0.5, 2.0)
SMOKE = [*harness.SMOKE_TRAIN, "schedule.max_epochs=1", "model.compile=false", "model.channels_last=false", "trainer.precision=32-true",
         "callbacks.budget.seconds=null"]  # one epoch, not the preset's 570 s


def plot(curves: dict[str, list], path: Path) -> None:
    plt = harness.pyplot()
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
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/laptop_cifar10.md", training=True, runs=True)
    cli.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/")
    cli.add_argument("--methods", nargs="*", default=["frossl", "vicreg", "barlow_twins"])
    cli.add_argument("--tune", action="store_true", help="the equal tuning trials instead of the presets' runs")
    cli.add_argument("--tune-seconds", type=positive, default=180, help="--tune: each trial's wall-clock budget")
    args = harness.parse(cli, argv, smoke={"methods": ["frossl"]}, smoke_extra=SMOKE)
    if args.tune:
        if unknown := [m for m in args.methods if m not in WEIGHTS]:
            cli.error(f"--tune has trials for {', '.join(WEIGHTS)}, not {', '.join(unknown)}")
        tune(args)
        return

    bank = "?"
    curves, lines = {}, [f"| method | kNN before | kNN at the end | epochs | wall-clock of the command (s) | first reaches {TARGET:.2f} at (s) |", "|---|---|---|---|---|---|"]
    for method in args.methods:
        run_dir = f"{args.runs_dir}/{args.stamp}_{method}"
        summary = harness.train(method, [f"experiment={method}_cifar10_laptop", f"data.root={args.root}", *args.extra], run_dir)
        if summary is None:
            continue
        bank = summary.get("knn_bank_size", bank)
        # (seconds since training started, kNN top-1): training + every kNN pass, the one before the first step at 0 s
        curves[method] = points = [(s, top1) for _, top1, s in harness.knn_curve(run_dir, ("val/knn_train_seconds", "val/knn_eval_seconds"))]
        reached = next((f"{s:.0f}" for s, top1 in points if top1 >= TARGET), "never")
        lines.append(f"| {method} | {points[0][1]:.3f} | {summary['knn_top1']:.3f} | {summary['epochs']} | {summary.get('command_seconds', 0):.0f} | {reached} |")
        print(lines[-1], flush=True)
    stem = args.out.removesuffix(".md")
    stored = harness.path(f"{stem}_curves.json", output=True)
    curves = {**(json.loads(stored.read_text()) if stored.is_file() else {}), **curves}  # other methods' curves stay
    stored.write_text(json.dumps(curves, indent=1) + "\n")
    plot(curves, harness.path(f"{stem}.png"))
    details = (f"Curves (seconds since training started, kNN top-1): `{stem}_curves.json`; plot: `{stem}.png`. kNN: k = 20, "
               f"T = 0.07, backbone features, a bank of {bank} of the 45k training images, the 5k held-out images as "
               "queries. This CPU " + ("has native bf16: bf16-mixed, eager" if cpu_has_native_bf16() else
                                       "has no native bf16: fp32, torch.compile") + "; the schedule fitted to the "
               "preset's wall-clock budget (callbacks.budget.seconds).")
    harness.record(args, "laptop presets (experiment=<method>_cifar10_laptop)", "\n".join(lines), details)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def trials(method: str, best: float | None = None) -> list[tuple[str, list[str]]]:
    """The trials of ``method``: its weight at each of FACTORS (lr LR), or with ``best`` (the best factor) at each
    of LR_FACTORS × LR: (what differs, overrides)."""
    key, published, sign = WEIGHTS[method]
    if best is None:
        return [(f"invariance ×{factor:g}: {key.split('.')[-1]}={published * factor ** sign:g}",
                 [f"{key}={published * factor ** sign:g}"]) for factor in FACTORS]
    return [(f"invariance ×{best:g}, lr {LR * lr:g}", [f"{key}={published * best ** sign:g}", f"schedule.optimizer.lr={LR * lr:g}"])
            for lr in LR_FACTORS]


def tune(args) -> None:
    lines = ["| method | trial | what differs | kNN at the end | steps | epochs |", "|---|---|---|---|---|---|"]
    best_lines = []
    for method in args.methods:
        scores: dict[tuple[float, float], float] = {}
        for stage in (None, "lr"):
            if stage and not scores:
                break  # every weight trial failed (each printed why): no best weight to try other lrs at
            best = max(scores, key=scores.get)[0] if stage else None
            for index, (label, overrides) in enumerate(trials(method, best)):
                factor, lr = (best, LR * LR_FACTORS[index]) if stage else (FACTORS[index], LR)
                run_dir = f"{args.runs_dir}/tune_{method}_{factor:g}_{lr:g}"
                overrides = [f"experiment={method}_cifar10_laptop", f"data.root={args.root}", f"callbacks.budget.seconds={args.tune_seconds}",
                             "callbacks.knn.at_start=false", *overrides, *args.extra]
                summary = harness.train(method, overrides, run_dir)
                if summary is None:
                    continue
                scores[factor, lr] = summary["knn_top1"]
                lines.append(f"| {method} | {len(scores)} | {label} | {summary['knn_top1']:.3f} | "
                             f"{summary.get('budget_planned_steps', '?')} | {summary['epochs']} |")
                print(lines[-1], flush=True)
        if scores:
            (factor, lr), top1 = max(scores.items(), key=lambda item: item[1])
            key, published, sign = WEIGHTS[method]
            best_lines.append(f"- {method}: {key}={published * factor ** sign:g} (invariance ×{factor:g}), "
                              f"schedule.optimizer.lr={lr:g}: kNN {top1:.3f} ({len(scores)} trials)")
    details = (f"Each trial: `python -m frossl_lit.train experiment=<method>_cifar10_laptop data.root={args.root} "
               f"callbacks.budget.seconds={args.tune_seconds} callbacks.knn.at_start=false <what differs>`, one after "
               "another on this machine; kNN top-1 on the 5k held-out images at the end (all 45k training images as "
               "the bank). Best of each method:\n\n" + "\n".join(best_lines))
    harness.record(args, f"equal tuning trials, {args.tune_seconds} s each", "\n".join(lines), details)


if __name__ == "__main__":
    main()
