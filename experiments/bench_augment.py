"""Two-view augmentation throughput on CIFAR-size uint8 images: batched (frossl_lit.ViewAugment) vs per-image PIL.

    python -m experiments.bench_augment --root data/cifar10 [--device cuda]

The per-image pipeline is the torchvision PIL recipe solo-learn and the official FroSSL code run in DataLoader
workers (RandomResizedCrop 32 (0.08, 1), ColorJitter 0.4/0.4/0.2/0.1 p 0.8, RandomGrayscale 0.2, horizontal
flip, ToTensor, Normalize), applied twice per image, in 2 DataLoader workers. The batched pipeline is the same
recipe (conf/augment/cifar10.yaml) on whole uint8 batches with 2 intra-op threads (or on the GPU). Figures are
source images per second (each yields 2 views); both sides include the uint8 → float conversion and
normalisation. Results are appended with the command to experiments/results/augment_throughput.md. ``--smoke``:
256 images in batches of 64, no DataLoader workers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from experiments import harness
from frossl_lit.data import ViewAugment, ViewRecipe

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def load_images(root: str | None, count: int) -> np.ndarray:
    """(N, 32, 32, 3) uint8: real CIFAR-10 when ``root`` holds it, random pixels otherwise."""
    batch = Path(root or "", "cifar-10-batches-py", "data_batch_1")
    if root and batch.is_file():
        import pickle

        with open(batch, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")["data"]
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(np.resize(images, (count, 32, 32, 3)))
    return np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


class PILTwoViews(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        from torchvision import transforms as T

        self.images = images
        self.transform = T.Compose([
            T.RandomResizedCrop(32, scale=(0.08, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.images[index])
        return self.transform(image), self.transform(image)


def bench_pil(images: np.ndarray, batch_size: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(PILTwoViews(images), batch_size=batch_size, num_workers=workers, shuffle=True)
    iterator = iter(loader)
    next(iterator)  # start-up of the workers is not counted
    started, seen = time.perf_counter(), 0
    for first, _ in iterator:
        seen += len(first)
    return seen / (time.perf_counter() - started)


def bench_batched(images: np.ndarray, batch_size: int, device: str, threads: int) -> float:
    torch.set_num_threads(threads)
    augment = ViewAugment([ViewRecipe(size=32)], MEAN, STD, num_views=2)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    batches = data.split(batch_size)
    augment.views(batches[0])  # warm-up (kernels, generator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in batches:
        views = augment.views(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    del views
    return len(images) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/augment_throughput.md")
    cli.add_argument("--root", default=None, help="folder holding cifar-10-batches-py/ (else random pixels)")
    cli.add_argument("--images", type=int, default=20480)
    cli.add_argument("--batch-size", type=int, default=512)
    cli.add_argument("--workers", type=int, default=2)
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--device", default="cpu")
    args = harness.parse(cli, argv, smoke={"images": 256, "batch_size": 64, "workers": 0})

    images = load_images(args.root, args.images)
    rows = [
        (f"per-image PIL, {args.workers} DataLoader workers", bench_pil(images, args.batch_size, args.workers)),
        (f"batched ViewAugment, {args.threads} threads, {args.device}", bench_batched(images, args.batch_size, args.device, args.threads)),
    ]
    if args.device != "cpu":
        rows.append((f"batched ViewAugment, {args.threads} threads, cpu", bench_batched(images, args.batch_size, "cpu", args.threads)))
    baseline = rows[0][1]
    table = "\n".join(
        ["| pipeline (2 views per image) | images/s | vs PIL |", "|---|---|---|"]
        + [f"| {name} | {rate:,.0f} | {rate / baseline:.1f}× |" for name, rate in rows]
    )
    print(table)
    harness.record(args, f"torch {torch.__version__}, {args.images} images ({'CIFAR-10' if args.root else 'random'}), "
                         f"batch {args.batch_size}", table)


if __name__ == "__main__":
    main()
