"""One-shot check of the GPU settings on one CUDA GPU (under 8 minutes), recorded beside the CPU figures.

    python -m experiments.gpu_check [--root data/cifar10]

On real CIFAR-10 (made from ../shared/data/cifar10-train-jpg.tar.gz with ../shared/tools/cifar10_from_jpg.py when
``--root`` holds no copy yet), FroSSL with a ResNet-18 (CIFAR stem), batch 256, through the real training loop
(``frossl_lit.train.build``, every default callback but kNN and validation):

1. images/s, eager fp32 (``trainer.precision=32-true``) against ``trainer=gpu``'s bf16-mixed + channels-last +
   torch.compile; the peak device memory (``torch.cuda.max_memory_allocated``) of each;
2. host syncs per steady-state step (0 expected): ``torch.cuda.set_sync_debug_mode("warn")`` warns at every
   operation that waits for the device; logging and the every-N callbacks are moved out of the measured steps;
3. the step profile split (data, augmentation on the device, forward, loss, backward, optimizer step, each
   callback): ``experiments.bench_step.StepClock`` with a clock that synchronises the device before each reading,
   so each part is its own device time (this run is slower than 1., which has no syncs);
4. the dtypes under bf16 autocast: embeddings bf16, each loss term and the total fp32 (``float32_maths``);
5. 200 steps of FroSSL in bf16-mixed + channels-last against fp32, same seed, same batches and augmentations: the
   training loss over the last 10 steps must agree within 1e-2 (relative to the fp32 loss where it exceeds 1).

Without a CUDA GPU it says so and exits with status 2. ``--smoke``: the same code on the CPU in seconds (the small
CNN, tiny batches, no compile, bf16 autocast on the CPU; figures meaningless, syncs not countable).
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections import Counter
from pathlib import Path

import lightning as L
import torch

from experiments import bench_step, harness
from frossl_lit.config.compose import compose_train_config
from frossl_lit.methods import Branches
from frossl_lit.train import build

ARCHIVE, TOOL = "../shared/data/cifar10-train-jpg.tar.gz", "../shared/tools/cifar10_from_jpg.py"
RESNET = ["data=cifar10", "data.holdout_fraction=0.1", "backbone=resnet18", "backbone.cifar_stem=true",
          "callbacks.knn=null"]
QUIET = ["trainer.log_every_n_steps=100000", "callbacks.spectrum.every_n_steps=100000",
         "callbacks.throughput.every_n_steps=100000", "callbacks.divergence.check_every_n_steps=100000",
         "callbacks.checkpoint_steps=null", "callbacks.checkpoint_last=null", "callbacks.plots=null",
         "trainer.enable_progress_bar=false", "callbacks.checkpoint_best=null", "+trainer.limit_val_batches=0"]
FP32 = ["trainer.precision=32-true", "model.channels_last=false", "model.compile=false"]
FAST = ["trainer.precision=bf16-mixed", "model.channels_last=true", "model.compile=true"]
PARTS = ("data + loop", "augmentation", "forward", "loss", "backward", "optimizer step")


class Recorder(L.Callback):
    """Per step after ``warmup``: the training loss (kept on the device, read once at the end) and the
    synchronising operations CUDA's sync debug mode warned about (from one step's end to the next's)."""

    def __init__(self, warmup: int, count_syncs: bool) -> None:
        self.warmup, self.count_syncs, self.losses, self.syncs, self.steps = warmup, count_syncs, [], [], 0
        self._catch = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """The last callback: closes a step's window and opens the next one (its loading, transfer and
        augmentation on the device come before the next on_train_batch_start, so the window runs end to end)."""
        self.losses.append(outputs["loss"].detach())
        if self._catch is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(None, None, None)
            # the operations themselves ("called a synchronizing CUDA operation"), where they were called; not the
            # mode's own "prototype feature" notice, which a substring "synchroniz" also matched
            self.syncs += [f"{Path(w.filename).name}:{w.lineno}" for w in self._caught
                           if "synchronizing CUDA operation" in str(w.message)]
            self._catch, self.steps = None, self.steps + 1
        if self.count_syncs and self.warmup <= trainer.global_step < trainer.max_steps:
            self._catch = warnings.catch_warnings(record=True)
            self._caught = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_end(self, trainer, pl_module) -> None:
        if self._catch is not None:  # the loop ended without another step (not counted)
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(None, None, None)
            self._catch = None


def fit(overrides: list[str], steps: int, warmup: int, count_syncs: bool = False, synced_profile: bool = False,
        keep: bool = False) -> dict:
    """Train ``steps`` steps of a fresh run; its step profile (medians after ``warmup``), losses, syncs, peak
    (``keep``: its model and datamodule too; else nothing of it stays on the device for the next run's peak)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    cfg = compose_train_config([*overrides, f"trainer.max_steps={steps}"], Path(tempfile.mkdtemp()))
    L.seed_everything(cfg.seed, workers=True)  # as train() does: the same initial weights in every run
    datamodule, model, _, trainer = build(cfg)
    clock, recorder = bench_step.StepClock(model, datamodule, warmup), Recorder(warmup, count_syncs)
    clock.wrap_callbacks(trainer)
    trainer.callbacks.insert(0, clock)
    trainer.callbacks += [bench_step.StepEnd(clock), recorder]
    cuda = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if synced_profile and cuda:  # every timestamp of StepClock waits for the device first
        bench_step.time = types.SimpleNamespace(perf_counter=lambda: (torch.cuda.synchronize(), time.perf_counter())[1])
    try:
        with harness.PeakMemory() as host:
            trainer.fit(model, datamodule=datamodule)
    finally:
        bench_step.time = time
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else (host.mib or 0) / 1024
    parts = {name: statistics.median(values) for name, values in clock.times.items()}
    return {"parts": parts, "batch": cfg.data.batch_size, "losses": torch.stack(recorder.losses).float().cpu(),
            "syncs": recorder.syncs, "sync_steps": recorder.steps, "peak_gib": peak,
            **({"model": model, "datamodule": datamodule} if keep else {})}


def loss_dtypes(model, datamodule, device: str) -> str:
    """The dtypes of one step's embeddings, loss terms and total under bf16 autocast."""
    model.to(device).train()
    images, _ = next(iter(datamodule.train_dataloader()))
    views = datamodule.augment.views(images.to(device))  # batched on the images' device
    views = [v.contiguous(memory_format=torch.channels_last) for v in views] if model.channels_last else views
    with torch.autocast(device, dtype=torch.bfloat16):
        features = [model.backbone(v) for v in views]
        projections = [model.projector(f) for f in features]
        total, terms = model.loss(Branches(features, projections))
    names = ", ".join(f"{k} {v.dtype}" for k, v in terms.items() if torch.is_tensor(v))
    return f"embeddings {projections[0].dtype}; total {total.dtype}; terms: {names}"


def cifar_root(root: str, smoke: bool) -> Path | None:
    """``root`` holding cifar-10-batches-py/, converted from the JPEG archive when missing; None when impossible."""
    target = harness.path(root)
    if (target / "cifar-10-batches-py").is_dir():
        return target
    archive, tool = harness.path(ARCHIVE), harness.path(TOOL)
    if smoke or not archive.is_file() or not tool.is_file():
        print(f"gpu_check: no CIFAR-10 in {target}/cifar-10-batches-py and no {archive} with {tool} to make it; "
              f"make it with: python {TOOL} {ARCHIVE} {root}", file=sys.stderr)
        return None
    print(f"gpu_check: converting {archive} into {target} …", flush=True)
    subprocess.run([sys.executable, str(tool), str(archive), str(target)], check=True)
    return target


def profile_table(rows: list[tuple[str, dict]]) -> str:
    callbacks = sorted({n for _, r in rows for n in r["parts"] if n.startswith("callback: ")})
    header = ["variant", *PARTS, *(c.split(": ")[1] for c in callbacks), "step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows:
        cells = [f"{r['parts'].get(n, 0) * 1000:.2f}" for n in (*PARTS, *callbacks, "step")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/gpu_check.md")
    cli.add_argument("--root", default="data/cifar10", help="folder holding (or to hold) cifar-10-batches-py/")
    cli.add_argument("--steps", type=int, default=60, help="measured steps of each throughput run")
    cli.add_argument("--warmup", type=int, default=15, help="steps before measuring (compilation happens there)")
    cli.add_argument("--match-steps", type=int, default=200, help="steps of the bf16 vs fp32 loss comparison")
    cli.add_argument("--batch", type=int, default=256)
    args = harness.parse(cli, argv, smoke={"steps": 2, "warmup": 1, "match_steps": 4, "batch": 32})
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check needs a CUDA GPU (torch.cuda.is_available() is False); on a CPU run it with --smoke")
        sys.exit(2)
    root = cifar_root(args.root, args.smoke)
    if root is None and not args.smoke:
        sys.exit(2)
    device = "cpu" if args.smoke else "cuda"
    data = RESNET + [f"data.root={root}"] if root else ["data=digits"]
    if args.smoke:  # the small CNN, tiny batches, no compile: the same code in seconds
        data = [*(d for d in data if not d.startswith("backbone")), *harness.SMOKE_TRAIN, "callbacks.knn=null"]
    base = [*data, f"data.batch_size={args.batch}", f"trainer.accelerator={'cpu' if args.smoke else 'gpu'}",
            "trainer.devices=1", *QUIET]
    fast = [o for o in FAST if not (args.smoke and o.startswith("model.compile"))]
    warmup = args.warmup
    started = time.perf_counter()

    eager = fit([*base, *FP32], args.steps + warmup, warmup, count_syncs=not args.smoke)
    quick = fit([*base, *fast], args.steps + warmup, warmup, count_syncs=not args.smoke, keep=True)
    dtypes = loss_dtypes(quick.pop("model"), quick.pop("datamodule"), device)
    profiles = [("eager fp32", fit([*base, *FP32], args.steps + warmup, warmup, synced_profile=True)),
                ("bf16 + channels-last" + ("" if args.smoke else " + compile"),
                 fit([*base, *fast], args.steps + warmup, warmup, synced_profile=True))]
    no_compile = [o for o in fast if not o.startswith("model.compile")]
    reference = fit([*base, *FP32], args.match_steps, 0)["losses"]
    mixed = fit([*base, *no_compile], args.match_steps, 0)["losses"]
    tail = min(10, len(reference))
    ref_tail, mixed_tail = reference[-tail:].mean().item(), mixed[-tail:].mean().item()
    difference = abs(ref_tail - mixed_tail)
    tolerance = 1e-2 * max(1.0, abs(ref_tail))
    seconds = time.perf_counter() - started

    lines = ["| variant | images/s | peak memory (GiB) | host syncs per steady step |", "|---|---|---|---|"]
    for name, r in (("eager fp32", eager), (profiles[1][0], quick)):
        syncs = "n/a (CPU)" if args.smoke else f"{len(r['syncs']) / max(1, r['sync_steps']):.2f}"
        lines.append(f"| {name} | {r['batch'] / r['parts']['step']:.0f} | {r['peak_gib']:.2f} | {syncs} |")
    sites = Counter(s for r in (eager, quick) for s in r["syncs"])
    where = ", ".join(f"`{site}` ×{n}" for site, n in sites.most_common(8))
    verdict = "matches" if difference <= tolerance else "DOES NOT match"
    table = "\n\n".join([
        "\n".join(lines),
        "Step profile, milliseconds (median; device synchronised at each part's boundary, so the parts add up to a "
        "slower step than the unsynchronised one above):\n\n" + profile_table(profiles),
        f"Under bf16 autocast: {dtypes}.",
        f"FroSSL, {args.match_steps} steps, same seed and batches: training loss (mean of the last {tail} steps) fp32 "
        f"{ref_tail:.5f}, bf16-mixed + channels-last {mixed_tail:.5f}, |difference| {difference:.2e} "
        f"(tolerance {tolerance:.2e}): {verdict}; largest per-step difference "
        f"{(reference - mixed).abs().max().item():.2e}.",
        f"Whole check: {seconds:.0f} s." + (f" Where the syncs were called (both variants, all steady steps): {where}."
                                            if where else ""),
    ])
    print(table)
    gpu = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name(0)
    details = (f"{'small CNN (smoke)' if args.smoke else 'ResNet-18 (CIFAR stem)'}, FroSSL, batch {args.batch}, "
               f"{'tiny data' if args.smoke else 'CIFAR-10'}; {args.steps} steps after {warmup} of warm-up; "
               f"torch {torch.__version__}, CUDA {torch.version.cuda}, on {gpu}.")
    harness.record(args, f"GPU check, {gpu}", table, details)


if __name__ == "__main__":
    main()
