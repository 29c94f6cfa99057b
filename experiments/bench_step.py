"""Where a training step's time goes, against the model alone: CPU step profile of the real training loop.

    python -m experiments.bench_step --root data/cifar10 [--steps 30] [--backbones small_cnn resnet18 vit_tiny]

For each backbone (the small CNN 32-64-128-256 of the CIFAR small-CNN preset, experiment/base/cifar10_small_cnn.yaml,
ResNet-18, CIFAR stem, and ViT-Tiny with 4-px patches, backbone=vit_tiny_cifar, all at 32 px; channels-last is a
no-op for the ViT, so its channels-last variants measure the others alone) and each variant (eager,
channels-last, torch.compile, bf16 autocast + channels-last) it trains FroSSL on real CIFAR-10 with the default
config and every default callback (online probe, spectrum, throughput, divergence guard, LR monitor, checkpoints;
kNN and validation are left out of the steps and measured separately), and splits each step into: waiting for data
(and Lightning's bookkeeping between steps), augmentation, forward, loss, backward, optimizer step and each
callback. Beside it the model alone: the same already-augmented batch, forward + loss + backward + AdamW step in a
bare loop. The ratio full step / model alone is the overhead of the loop around the model (goal ≤ 1.15).

Then the share of an epoch's wall-clock spent in evaluation with the CIFAR defaults (kNN bank of
``callbacks.knn.bank_size`` images + the held-out queries, the probe's validation pass), from the measured
throughputs: (kNN pass + validation pass) / (training epoch + kNN pass + validation pass) (goal ≤ 10%).
``--smoke``: the small CNN alone, eager, 2 steps after 1 of warm-up, the smallest model.

Make the CIFAR-10 copy first: python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch

from experiments import harness
from frossl_lit.config.compose import compose_train_config
from frossl_lit.methods import Branches
from frossl_lit.train import build

PARTS = ("data + loop", "augmentation", "forward", "loss", "backward", "optimizer step")
VARIANTS = {"eager": [], "channels-last": ["model.channels_last=true"], "compiled": ["model.compile=true"],
            # bf16 autocast (the losses stay fp32): pays on CPUs with AVX512-BF16 or AMX, as on a GPU
            "bf16 + channels-last": ["trainer.precision=bf16-mixed", "model.channels_last=true"]}
BACKBONES = {"small_cnn": ["experiment=base/cifar10_small_cnn", "data.batch_size=256"],
             "resnet18": ["data=cifar10", "data.holdout_fraction=0.1", "backbone=resnet18", "backbone.cifar_stem=true",
                          "data.batch_size=64", "trainer.enable_progress_bar=false"],  # ResNet-18: ~30 images/s here
             "vit_tiny": ["data=cifar10", "data.holdout_fraction=0.1", "backbone=vit_tiny_cifar", "data.batch_size=64",
                          "trainer.enable_progress_bar=false"]}


class StepClock(L.Callback):
    """Timestamps around the parts of each step (CPU: every op is synchronous, host clocks are exact)."""

    def __init__(self, model, datamodule, warmup: int) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.warmup, self._mark, self._step = warmup, {}, 0
        views, loss = model.embed_views, model.loss
        make_views = datamodule.make_views

        def timed(name, function):
            def run(*args, **kwargs):
                started = time.perf_counter()
                out = function(*args, **kwargs)
                self._mark[name] = time.perf_counter() - started
                return out
            return run

        model.embed_views, model.loss = timed("forward", views), timed("loss", loss)
        datamodule.make_views = timed("augmentation", make_views)

    def wrap_callbacks(self, trainer) -> None:
        for callback in trainer.callbacks:
            if callback is self or type(callback).on_train_batch_end is L.Callback.on_train_batch_end:
                continue
            hook, name = callback.on_train_batch_end, type(callback).__name__

            def run(*args, _hook=hook, _name=name, **kwargs):
                started = time.perf_counter()
                _hook(*args, **kwargs)
                self._mark[f"callback: {_name}"] = time.perf_counter() - started
            callback.on_train_batch_end = run

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if "end" in self._mark:
            self._mark["data + loop"] = now - self._mark.pop("end") - self._mark.get("augmentation", 0.0)
        self._mark["start"] = now

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._mark["backward_start"] = time.perf_counter()

    def on_after_backward(self, trainer, pl_module) -> None:
        self._mark["backward"] = time.perf_counter() - self._mark.pop("backward_start")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._mark["optimizer_start"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the first callback to run: the optimizer (and the divergence guard before it) has stepped
        self._mark["optimizer step"] = time.perf_counter() - self._mark.pop("optimizer_start")

    def close_step(self) -> None:
        """Called by the last callback: the step ends here (from the previous step's end: data, augmentation,
        the step itself and the callbacks)."""
        now = time.perf_counter()
        self._step += 1
        if self._step > self.warmup and "data + loop" in self._mark:
            self._mark["step"] = self._mark["data + loop"] + self._mark.get("augmentation", 0.0) + now - self._mark["start"]
            for name, value in self._mark.items():
                if name != "start":
                    self.times[name].append(value)
        self._mark = {"end": now}


class StepEnd(L.Callback):
    """Last callback: closes the step (everything after it, until the next batch, is 'data + loop')."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.clock.close_step()


def full_loop(backbone: str, variant: str, root: str, steps: int, warmup: int, extra: list[str]) -> tuple[dict, int, object, object]:
    run_dir = Path(tempfile.mkdtemp())
    cfg = compose_train_config([
        *BACKBONES[backbone], f"data.root={root}", *VARIANTS[variant], "callbacks.knn=null", f"trainer.max_steps={steps + warmup}",
        "+trainer.limit_val_batches=0", "callbacks.checkpoint_best=null", *extra,
    ], run_dir)
    datamodule, model, _, trainer = build(cfg)
    clock = StepClock(model, datamodule, warmup)
    clock.wrap_callbacks(trainer)
    trainer.callbacks.insert(0, clock)
    trainer.callbacks.append(StepEnd(clock))
    trainer.fit(model, datamodule=datamodule)
    return {name: statistics.median(values) for name, values in clock.times.items()}, cfg.data.batch_size, model, datamodule


def model_alone(model, datamodule, steps: int, warmup: int, bf16: bool = False) -> float:
    """Median seconds of forward + loss + backward + AdamW step on one already-augmented batch (under bf16
    autocast when the variant trains in bf16-mixed, as Lightning's precision plugin does)."""
    images, _ = next(iter(datamodule.train_dataloader()))
    datamodule.augment.reseed(0)
    views = [v.contiguous(memory_format=torch.channels_last) if model.channels_last else v for v in datamodule.augment.views(images)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for index in range(steps + warmup):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features = [model.backbone(v) for v in views]
            total, _ = model.loss(Branches(features, [model.projector(f) for f in features]))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def evaluation_share(model, datamodule, step_seconds: float, bank_size: int) -> tuple[float, float, float]:
    """(training epoch s, kNN pass s, probe validation s) with the defaults, from measured throughputs."""
    from frossl_lit.evaluation import extract_features

    transform, device = datamodule.augment.eval_transform, torch.device("cpu")
    started = time.perf_counter()
    extract_features(model.backbone, datamodule.bank_dataloader(bank_size), transform, device)
    queries = datamodule.val_dataloader()
    extract_features(model.backbone, queries, transform, device)
    knn = time.perf_counter() - started
    started = time.perf_counter()
    extract_features(model.backbone, queries, transform, device)  # the validation pass the probe scores
    validation = time.perf_counter() - started
    epoch = len(datamodule.train_dataloader()) * step_seconds
    return epoch, knn, validation


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/step_profile.md", training=True)
    cli.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/")
    cli.add_argument("--steps", type=int, default=30)
    cli.add_argument("--warmup", type=int, default=5)
    cli.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    cli.add_argument("--variants", nargs="*", default=list(VARIANTS))
    smoke = {"steps": 2, "warmup": 1, "backbones": ["small_cnn"], "variants": ["eager"]}
    args = harness.parse(cli, argv, smoke=smoke, smoke_extra=harness.SMOKE_TRAIN)
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))

    rows, shares = [], []
    for backbone in args.backbones:
        for variant in args.variants:
            steps = args.steps if backbone == "small_cnn" else max(3, args.steps // 10)
            warmup = (args.warmup if backbone == "small_cnn" else 2) + (2 if variant == "compiled" else 0)
            parts, batch, model, datamodule = full_loop(backbone, variant, harness.path(args.root), steps, warmup, args.extra)
            alone = model_alone(model, datamodule, steps, warmup, bf16="bf16" in variant)
            rows.append((backbone, variant, batch, parts, alone))
            print(f"{backbone} {variant}: step {parts['step'] * 1000:.0f} ms, model alone {alone * 1000:.0f} ms", flush=True)
            if variant == "eager":
                shares.append((backbone, *evaluation_share(model, datamodule, parts["step"], 10_000)))
    callbacks = sorted({name for *_, parts, _ in rows for name in parts if name.startswith("callback: ")})
    header = ["backbone", "variant", *PARTS, *(c.split(": ")[1] for c in callbacks), "full step", "model alone", "full / alone", "images/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backbone, variant, batch, parts, alone in rows:
        cells = [f"{parts.get(name, 0) * 1000:.1f}" for name in (*PARTS, *callbacks)]
        lines.append(f"| {backbone} | {variant} | " + " | ".join(cells)
                     + f" | {parts['step'] * 1000:.1f} | {alone * 1000:.1f} | {parts['step'] / alone:.2f} | {batch / parts['step']:.0f} |")
    table = "Milliseconds per step (median), 2 views, 32 px, batch 256 (small CNN) or 64 (ResNet-18, ViT-Tiny):\n\n" + "\n".join(lines)
    eval_lines = ["| backbone | training epoch (s) | kNN pass (s) | probe validation (s) | evaluation share |", "|---|---|---|---|---|"]
    for backbone, epoch, knn, validation in shares:
        eval_lines.append(f"| {backbone} | {epoch:.0f} | {knn:.1f} | {validation:.1f} | {(knn + validation) / (epoch + knn + validation):.1%} |")
    table += ("\n\nEvaluation per epoch with the CIFAR defaults (45k training images, kNN bank 10k stratified, 5k held-out "
              "queries; the probe scores one pass over the held-out images):\n\n" + "\n".join(eval_lines))
    print(table)
    harness.record(args, f"step profile, torch {torch.__version__}, CPU", table)


if __name__ == "__main__":
    main()
