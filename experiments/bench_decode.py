"""JPEG decoding for the ImageNet recipe, and the throughput of each data format, on this machine's CPU.

    python -m experiments.bench_decode [--images 2000] [--workers 2] [--cifar data/cifar10]

1. Builds (once, under data/bench_decode/) a labelled folder of ImageNet-size photos: ``--images`` JPEGs of 500×375
   at quality 90, windows cut from scikit-learn's two sample photographs (china.jpg, flower.jpg) at random scales
   (1.0–1.6×) and flips, in 10 class folders. ``--large`` more at 1000×750 show what the DCT reduction adds on
   bigger files.
2. Decoders, one process, one thread: milliseconds per image for the recipe's two views (random-resized crop to
   224, scale 0.08–1): Pillow full decode + crop/resize through torchvision v2 (what ``ImageFolder`` does),
   torchvision ``decode_jpeg`` + v2 crop on tensors (this project's loader before), Pillow ``draft`` (DCT
   reduction) + torch resize, and this project's crop-aware decode (``frossl_lit.data.decode``).
3. Loaders, ``--workers`` DataLoader workers on all cores, batches of 64, images/s of two-view batches:
   torchvision ``ImageFolder`` + v2 ``RandomResizedCrop`` ×2 (uint8, the same work as ours) against this
   project's folder loader (``data=folder`` with the ImageNet recipe) and the same folder as a LitData stream;
   then the whole ImageNet recipe (flip, jitter, grayscale, blur, solarize, normalise): per image in the
   workers (torchvision v2) against ours (crops in the workers, the rest batched in the main process).
4. Formats on CIFAR-10 (``--cifar``, the CIFAR recipe, views ready for the model): in memory, the same images as
   a folder of PNG files, and as a LitData stream.

Results are appended with the command to experiments/results/decode.md. ``--smoke``: 20 photos in 2 classes, none
large, no DataLoader workers, batches of 4 (16 on CIFAR), under outputs/smoke/bench_decode/.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from experiments import decode_pipelines, harness

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


# -- the photos --------------------------------------------------------------------------------------------------
def build_photos(folder: Path, count: int, width: int, height: int, classes: int = 10) -> Path:
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) == count and len(list(folder.iterdir())) == classes:
        return folder
    from PIL import Image
    from sklearn.datasets import load_sample_images

    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    sources = [Image.fromarray(image) for image in load_sample_images().images]
    for index in range(count):
        source = sources[index % len(sources)]
        factor = rng.uniform(1.0, 1.6) * max(width / source.width, height / source.height, 1.0)
        big = source.resize((int(source.width * factor) + 1, int(source.height * factor) + 1), Image.BICUBIC)
        left, top = rng.integers(0, big.width - width + 1), rng.integers(0, big.height - height + 1)
        photo = big.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
        target = folder / f"class_{index % classes}"
        target.mkdir(parents=True, exist_ok=True)
        photo.save(target / f"{index:05d}.jpg", quality=90)
    return folder


# -- 2. decoders, one image at a time ----------------------------------------------------------------------------
def time_decoders(paths: list[Path], repeats: int = 3) -> dict[str, float]:
    torch.set_num_threads(1)
    datas = [p.read_bytes() for p in paths]
    best: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, best of ``repeats``: the least disturbed pass of each
        for name, decode in decode_pipelines.decoders().items():
            random.seed(0)
            start = time.perf_counter()
            for data in datas:
                decode(data)
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - start) / len(datas) * 1e3)
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    return best


# -- 3. loaders --------------------------------------------------------------------------------------------------
def compose_datamodule(overrides: list[str]):
    """The DataModule ``python -m frossl_lit.train <overrides>`` would build (every override names data.root)."""
    from frossl_lit.config.compose import compose_train_config
    from frossl_lit.data import datamodule

    return datamodule(compose_train_config(overrides, tempfile.gettempdir()).data)


def images_per_second(loader, views=None, batches: int | None = None, warmup: int = 3, passes: int = 1) -> float:
    """Images/s: the median of ``passes`` passes over the loader, each after ``warmup`` batches (worker start-up
    and refills left out), at most ``batches`` timed batches each; ``views``: the main process's share (this
    project's batched augmentation), timed in."""
    rates = []
    for _ in range(passes):
        count, start = 0, None
        for index, (images, _) in enumerate(loader):
            if views is not None:
                views(images)
            if index + 1 == warmup:
                start = time.perf_counter()
            elif index + 1 > warmup:
                count += len(images[0]) if isinstance(images, (list, tuple)) else len(images)
            if batches and index + 1 >= warmup + batches:
                break
        rates.append(count / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


def loader_rows(folder: Path, stream: Path, workers: int, batch: int) -> list[tuple[str, float]]:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    rows = []
    common = [f"data.root={folder}", "data=folder", "augment=imagenet", f"data.batch_size={batch}", f"data.num_workers={workers}", "seed=0"]
    for full in (False, True):
        baseline = DataLoader(ImageFolder(str(folder), transform=decode_pipelines.TorchvisionViews(full)), batch_size=batch, shuffle=True, num_workers=workers,
                              persistent_workers=workers > 0, drop_last=True)
        ours = compose_datamodule(common)
        streamed = compose_datamodule([*common, "data.format=litdata", f"data.stream={stream}"])
        label = "whole recipe, views ready" if full else "crops only (uint8)"
        passes = 1 if full else 3
        rows.append((f"torchvision ImageFolder + v2, {label}", images_per_second(baseline, passes=passes)))
        rows.append((f"frossl_lit data=folder, {label}", images_per_second(ours.train_dataloader(), ours.make_views if full else None, passes=passes)))
        rows.append((f"frossl_lit LitData stream, {label}", images_per_second(streamed.train_dataloader(), streamed.make_views if full else None,
                                                                              passes=passes)))
    return rows


# -- 4. formats on CIFAR-10 ----------------------------------------------------------------------------------------
def format_rows(cifar: Path, workers: int, scratch: Path, batch: int) -> list[tuple[str, float]]:
    from PIL import Image

    common = ["data=cifar10", f"data.root={cifar}", "data.holdout_fraction=0.1", f"data.batch_size={batch}", f"data.num_workers={workers}", "seed=0"]
    memory = compose_datamodule(common)
    memory.setup()
    folder = scratch / "cifar10-png"
    if not folder.is_dir():
        for index, (image, label) in enumerate(zip(memory.train_set.images, memory.train_set.labels)):
            target = folder / f"class_{int(label)}"
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(target / f"{index:05d}.png")
    stream = scratch / "cifar10-stream"
    if not stream.is_dir():
        from frossl_lit.data.streams.writer import write_stream

        write_stream(memory, str(stream), progress=False)
    as_folder = compose_datamodule(["data=folder", f"data.root={folder}", "augment=cifar10", "data.val_fraction=0.1", f"data.batch_size={batch}",
                                    f"data.num_workers={workers}", "seed=0"])
    streamed = compose_datamodule([*common, "data.format=litdata", f"data.stream={stream}"])
    rows = []
    for name, module in (("in memory (uint8 tensors)", memory), ("folder of PNG files", as_folder), ("LitData stream", streamed)):
        rows.append((f"CIFAR-10 {name}", images_per_second(module.train_dataloader(), module.make_views, batches=40)))
    return rows


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/decode.md")
    cli.add_argument("--images", type=int, default=2000)
    cli.add_argument("--classes", type=int, default=10, help="class folders of the photos (10%% held out: at least one each)")
    cli.add_argument("--large", type=int, default=300, help="photos of 1000×750 for the decoder table (0: none)")
    cli.add_argument("--workers", type=int, default=2)
    cli.add_argument("--batch-size", type=int, default=64, help="the loaders' batch on the photos")
    cli.add_argument("--cifar", default=None, help="a cifar-10-batches-py copy for the format table")
    cli.add_argument("--cifar-batch-size", type=int, default=256, help="the loaders' batch on CIFAR-10")
    cli.add_argument("--scratch", default="data/bench_decode", help="where the photos and streams are built (kept)")
    smoke = {"images": 20, "classes": 2, "large": 0, "workers": 0, "batch_size": 4, "cifar_batch_size": 16, "scratch": f"{harness.SMOKE_DIR}/bench_decode"}
    args = harness.parse(cli, argv, smoke=smoke)
    scratch = harness.path(args.scratch)
    photos = build_photos(scratch / "photos", args.images, 500, 375, args.classes)
    paths = sorted(photos.rglob("*.jpg"))

    decode_rows = [(f"500×375, {name}", ms) for name, ms in time_decoders(paths[:300]).items()]
    if args.large:
        large = build_photos(scratch / "photos-1000", args.large, 1000, 750)
        decode_rows += [(f"1000×750, {name}", ms) for name, ms in time_decoders(sorted(large.rglob("*.jpg"))).items()]

    stream = scratch / f"photos-{args.images}-stream"
    if not stream.is_dir():
        from frossl_lit.data.streams.writer import write_stream

        write_stream(compose_datamodule(["data=folder", f"data.root={photos}", "augment=imagenet", "data.val_fraction=0.1"]), str(stream),
                     progress=False)
    rows = loader_rows(photos, stream, args.workers, args.batch_size)
    if args.cifar:
        rows += format_rows(harness.path(args.cifar), args.workers, scratch, args.cifar_batch_size)

    base = {size: ms for (name, ms) in decode_rows for size in ("500×375", "1000×750") if name.startswith(size) and "ImageFolder" in name}
    lines = ["| decoder (2 views of RRC 224, one thread) | ms / image | × Pillow + torchvision |", "|---|---|---|"]
    for name, ms in decode_rows:
        lines.append(f"| {name} | {ms:.2f} | {base[name.split(',')[0]] / ms:.2f} |")
    lines += ["", f"| loader ({args.workers} workers, batch {args.batch_size}, two views) | images / s | × torchvision |", "|---|---|---|"]
    reference = None
    for name, rate in rows:
        if name.startswith("torchvision"):
            reference = rate
        ratio = f"{rate / reference:.2f}" if reference and not name.startswith("CIFAR") else ""
        lines.append(f"| {name} | {rate:.0f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    details = (
        f"{args.images} photos of 500×375 (quality 90) cut from scikit-learn's sample photographs; {args.large} of 1000×750. "
        "Decoders: best of 3 interleaved passes over 300 photos. Loaders: one epoch over the photos after 3 warm-up "
        "batches (crops only: the median of 3 epochs); "
        "'views ready' includes this project's batched colour augmentation in the main process on the same CPU."
    )
    harness.record(args, "JPEG decoding and data formats", table, details)


if __name__ == "__main__":
    main()
