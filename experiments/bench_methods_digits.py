"""Seconds per training epoch of every method on the embedded digits with its defaults, side by side, and how much
of a step its loss alone takes.

    python -m experiments.bench_methods_digits [--epochs 4] [--rounds 2] [--methods frossl mmcr …]

Every method of ``conf/method/*.yaml`` trains as ``python -m frossl_lit.train method=<m> trainer.max_epochs=<epochs>``
(digits, the default data: small CNN 32-64-128, batch 256, 5 steps an epoch, the method's own projector and loss;
every default callback; the progress bar off). ``--rounds`` rounds, the methods in order in even rounds and in reverse
in odd ones, so that a drift of the machine's speed hits every method alike; runs are sequential (each has every core).

What is measured, per run: the summary's ``step_seconds`` (``ThroughputMonitor``: the median over the epochs of
seconds per training step, the first epoch left out as warm-up; one epoch's steps are one window: data, augmentation,
forward, loss, backward, optimizer, the probe's step and every per-step callback; no kNN, validation, label-free
evaluation or checkpoint). "train s/epoch" is it × the steps of an epoch; "epoch s without kNN" is the mean
wall-clock from one epoch's end to the next less the kNN passes (``val/knn_train_seconds``: probe validation,
label-free figures and checkpoints included). Figures are the mean over the rounds; the ratio is to FroSSL's mean.

The loss alone: forward + backward of the method's loss at its shapes (N = the batch, D = its projector's output;
SwAV's and DINO's prototypes, MoCo's queue and W-MSE's sub-batches as configured; float32, 2 views;
``experiments.bench_losses``'s clock, the median of 3 passes over the methods), and its share of a training step
(measured in this process, the step in the run's: "the rest" of a step, step − loss, is an estimate).

``--smoke``: FroSSL and SimCLR, 2 epochs, one round, the smallest model.
"""

from __future__ import annotations

import os
import statistics
import sys

import torch
from omegaconf import OmegaConf

from experiments import bench_losses, harness
from frossl_lit.losses import wmse_loss

CONF = harness.REPO / "src" / "frossl_lit" / "conf"
METHOD_DIR = CONF / "method"
LOSS_NAMES = {
    "frossl": "FroSSL", "vicreg": "VICReg", "barlow_twins": "Barlow Twins", "mmcr": "MMCR", "simclr": "SimCLR",
    "mocov2": "MoCo v2+", "byol": "BYOL", "simsiam": "SimSiam", "swav": "SwAV", "dino": "DINO", "wmse": "W-MSE",
    "corinfomax": "CorInfoMax",
}
SLOW = 2.0  # a method this many times FroSSL's seconds per epoch or more says why in its config, or gets faster
LOSS_PASSES = 3  # the losses alone are timed in this many interleaved passes (their median)
NOTE = 1.4  # from this many times FroSSL's, the table's notes say which part of the step dominates


def all_methods() -> list[str]:
    """Every ``conf/method/*.yaml``, FroSSL first."""
    names = sorted(path.stem for path in METHOD_DIR.glob("*.yaml"))
    return ["frossl", *(name for name in names if name != "frossl")]


def loss_case(method: str, batch: int, out_dim: int | None):
    """(the method's loss as training calls it on a list of views, D): ``out_dim`` replaces the projector's width."""
    config = OmegaConf.load(METHOD_DIR / f"{method}.yaml")
    dim = out_dim or int(config.projector.out_dim)
    name = LOSS_NAMES[method]
    if method in ("swav", "dino"):
        bench_losses.SIZES["prototypes"] = int(config.num_prototypes)
    if method == "mocov2":
        bench_losses.SIZES["queue"] = int(config.queue_size)
    if method == "wmse":  # sub-batches of whitening_size, not bench_losses' one sub-batch of the whole batch
        permutations = torch.randperm(batch, generator=torch.Generator().manual_seed(1))[None]
        size, eps = min(int(config.whitening_size), batch), float(config.whitening_eps)
        return (lambda views: wmse_loss(views, permutations, size, eps)), dim
    return bench_losses.LOSSES[name].build(batch, dim), dim


def epoch_seconds_without_knn(run_dir) -> float | None:
    """The mean of the differences of ``val/knn_train_seconds`` between consecutive epochs, the first left out."""
    clock = [row["val/knn_train_seconds"] for row in harness.metrics(run_dir) if "val/knn_train_seconds" in row]
    steps = [b - a for a, b in zip(clock, clock[1:])]
    return statistics.fmean(steps) if steps else None


def _cell(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:,.{digits}f}{suffix}"


def table(rows: list[dict]) -> str:
    header = ("| method | train s/epoch | steps/s | × FroSSL | epoch s without kNN | loss alone (ms) | loss / step "
              "| D | s/epoch per round |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | {_cell(row['epoch_s'])} | {_cell(row['steps_per_s'])} | {_cell(row['ratio'], 2, '×')} "
            f"| {_cell(row['wall_s'])} | {_cell(row['loss_ms'], 1)} | {_cell(row['loss_share'] * 100, 0, '%')} "
            f"| {row['dim']} | {', '.join(f'{s:.2f}' for s in row['rounds'])} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> str:
    """For each method at least ``NOTE`` × FroSSL per epoch: the loss or the rest of the step, in ms per step, and
    whether it reaches ``SLOW`` ×."""
    frossl = next(row for row in rows if row["method"] == "frossl")
    rest_frossl = frossl["step_ms"] - frossl["loss_ms"]
    notes = []
    for row in rows:
        if row["ratio"] is None or row["ratio"] < NOTE:
            continue
        rest = row["step_ms"] - row["loss_ms"]
        part = "its loss" if row["loss_share"] >= 0.5 else "the rest of the step (networks, optimizer, data)"
        notes.append(f"- {row['method']}: {row['ratio']:.2f}× FroSSL per epoch; a step {row['step_ms']:.0f} ms, of which "
                     f"the loss {row['loss_ms']:.0f} ms and the rest {rest:.0f} ms (FroSSL: {frossl['loss_ms']:.0f} and "
                     f"{rest_frossl:.0f} ms): {part} dominates.")
    slow = [row["method"] for row in rows if row["ratio"] is not None and row["ratio"] >= SLOW]
    notes.append(f"- at least {SLOW:g}× FroSSL: {', '.join(slow)}." if slow else
                 f"- no method reaches {SLOW:g}× FroSSL's seconds per epoch.")
    return "\n".join(notes)


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/methods_digits_speed.md", training=True, runs=True)
    cli.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is left out as warm-up)")
    cli.add_argument("--rounds", type=int, default=2, help="runs per method, interleaved (even rounds in order, odd reversed)")
    cli.add_argument("--methods", nargs="*", default=all_methods(), choices=all_methods(), metavar="NAME",
                     help=f"the methods (default every conf/method/*.yaml: {', '.join(all_methods())}); frossl always")
    args = harness.parse(cli, argv, smoke={"methods": ["frossl", "simclr"], "epochs": 2, "rounds": 1},
                         smoke_extra=harness.SMOKE_TRAIN)
    if args.epochs < 2:
        sys.exit("--epochs must be at least 2 (the first epoch is left out)")
    methods = ["frossl", *(m for m in args.methods if m != "frossl")]
    common = [f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false", *args.extra]

    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for round_ in range(args.rounds):
        for method in methods if round_ % 2 == 0 else methods[::-1]:
            run_dir = f"{args.runs_dir}/{args.stamp}_{method}_r{round_}"
            summary = harness.train(f"{method} r{round_}", [f"method={method}", *common], run_dir)
            if summary is None or not summary.get("step_seconds"):
                sys.exit(f"[{method}] failed")
            steps = summary["global_step"] / summary["epochs"]
            runs[method].append({**summary, "epoch_s": summary["step_seconds"] * steps,
                                 "wall_s": epoch_seconds_without_knn(run_dir)})
            print(f"[{method} r{round_}] {summary['step_seconds'] * steps:.2f} s/epoch ({steps:g} steps)", flush=True)

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    batch = 32 if args.smoke else int(OmegaConf.load(CONF / "data" / "digits.yaml").batch_size)
    cases = {method: loss_case(method, batch, 16 if args.smoke else None) for method in methods}
    loss_times: dict[str, list[float]] = {method: [] for method in methods}
    for _ in range(LOSS_PASSES):  # interleaved passes over the methods, the median of each method's passes
        for method, (loss, dim) in cases.items():
            loss_times[method].append(bench_losses.measure(loss, batch, dim, 2)[0])
    rows = []
    for method in methods:
        dim, loss_s = cases[method][1], statistics.median(loss_times[method])
        done = runs[method]
        step_s = statistics.fmean(r["step_seconds"] for r in done)
        walls = [r["wall_s"] for r in done if r["wall_s"] is not None]
        rows.append({"method": method, "rounds": [r["epoch_s"] for r in done], "dim": dim,
                     "epoch_s": statistics.fmean(r["epoch_s"] for r in done), "steps_per_s": 1 / step_s,
                     "step_ms": step_s * 1000, "loss_ms": loss_s * 1000, "loss_share": loss_s / step_s,
                     "wall_s": statistics.fmean(walls) if walls else None})
        print(f"[{method}] loss alone {loss_s * 1000:.1f} ms at N={batch} D={dim}", flush=True)
    for row in rows:
        row["ratio"] = row["epoch_s"] / rows[0]["epoch_s"]

    body = table(rows)
    print(body)
    print(verdicts(rows))
    details = (f"Each method {args.epochs} epochs × {args.rounds} round(s), interleaved; overrides of every run: "
               f"`{' '.join(common)}`; torch {torch.__version__}, {torch.get_num_threads()} threads. \"train s/epoch\": the "
               f"training steps alone (median step × steps an epoch, the first epoch left out); \"epoch s without kNN\": "
               f"epoch to epoch less the kNN passes; \"loss alone\": its forward + backward at N={batch}, 2 views, D as shown.")
    harness.record(args, "seconds per epoch of every method on digits", body,
                   f"{details}\n\nAt least {NOTE:g}× FroSSL per epoch:\n\n{verdicts(rows)}")


if __name__ == "__main__":
    main()
