"""What every runner of the peer benchmark shares: the one setting, the data split, the model, the step clock,
the run record and the kNN score of saved backbones.

The setting (one for all frameworks): real CIFAR-10, the stratified 45k/5k split of ``data.holdout_fraction=0.1``
(``frossl_lit.data.cifar.CIFARDataModule.load``, seed 0), this project's small CNN (``backbone=small_cnn``, widths
32-64-128, strided) and projector (Linear-BN-ReLU 1024, 1024, Linear 1024), batch 256 (last partial batch
dropped), 2 views of the solo-learn CIFAR recipe, AdamW lr 2e-3 / weight decay 1e-4 (none on biases and
BatchNorm), per-step linear warm-up for 10% of training then cosine to 1% (``schedule=short``), 2 CPU threads.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import time
from pathlib import Path

import numpy as np
import torch

BATCH, VIEWS, LR, WEIGHT_DECAY, WARMUP_FRACTION, FINAL_FRACTION = 256, 2, 2e-3, 1e-4, 0.1, 0.01
WIDTHS, PROJECTOR = (32, 64, 128), (1024, 1024, 1024)  # backbone stages; projector hidden, hidden, out
SIZE, SCALE, FLIP, JITTER_PROB, JITTER, GRAY = 32, (0.08, 1.0), 0.5, 0.8, (0.4, 0.4, 0.2, 0.1), 0.2
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
THREADS, HOLDOUT, WINDOW = 2, 0.1, 20  # torch threads; held-out fraction; steps per throughput window
KNN_K, KNN_T = 20, 0.07


def threads() -> None:
    """2 intra-op threads, 1 inter-op thread, in the main process (DataLoader workers take one each)."""
    torch.set_num_threads(THREADS)


def split(root: str | Path, fraction: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train uint8 (N, 3, 32, 32), train labels, held-out images, held-out labels)``: this project's own
    stratified split (``data.holdout_fraction=0.1``, split seed 0), so every framework trains and is scored alike;
    ``fraction < 1``: its stratified subset of the training images (``data.train_fraction``)."""
    from frossl_lit.data.cifar import CIFARDataModule

    data = CIFARDataModule(augment=None, root=str(root), holdout_fraction=HOLDOUT, train_fraction=fraction)
    return tuple(t.numpy() for t in data.load())


def backbone() -> torch.nn.Module:
    from frossl_lit.models import SmallCNN

    return SmallCNN(widths=WIDTHS)


def projector(in_dim: int) -> torch.nn.Module:
    from frossl_lit.models import Projector

    return Projector(in_dim, hidden_dims=PROJECTOR[:-1], out_dim=PROJECTOR[-1])


def steps_per_epoch(images: int) -> int:
    return images // BATCH


def fake_cifar(root: str | Path, images: int = 1200, seed: int = 0) -> Path:
    """A tiny CIFAR-10 in the pickle layout (random pixels, balanced labels) for ``--smoke``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = images // 5
    for index in range(1, 6):
        entry = {"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(per)]}
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(entry))
    return Path(root)


class StepClock:
    """Host timestamps of a training loop (CPU: every op is synchronous). Throughput as frossl_lit's
    ``ThroughputMonitor`` measures it: windows of ``WINDOW`` steps from the epoch's start (data waits included),
    the first window of the run left out as warm-up, images / seconds over the rest. ``part(name, seconds)``
    records where one step's time went (medians over the steps after the first)."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, int]] = []
        self.parts: dict[str, list[float]] = {}
        self.epoch_ends: list[float] = []
        self._start = self._images = self._steps = 0
        self.total_steps = 0

    def epoch_start(self) -> None:
        self._start, self._images, self._steps = time.perf_counter(), 0, 0

    def step_end(self, images: int) -> None:
        self._images += images
        self._steps += 1
        self.total_steps += 1
        if self.total_steps % WINDOW == 0:
            self.close()

    def close(self) -> None:
        if self._steps:
            self.windows.append((time.perf_counter() - self._start, self._images))
        self._start, self._images, self._steps = time.perf_counter(), 0, 0

    def part(self, name: str, seconds: float) -> None:
        if self.total_steps >= 1:  # the first step (allocations, worker start-up) left out
            self.parts.setdefault(name, []).append(seconds)

    def epoch_end(self) -> None:
        self.close()
        self.epoch_ends.append(time.time())

    def summary(self) -> dict:
        steady = self.windows[1:] or self.windows
        seconds = sum(s for s, _ in steady)
        return {"images_per_second": round(sum(i for _, i in steady) / seconds, 1) if seconds else None,
                "steps": self.total_steps, "epoch_end_times": self.epoch_ends,
                "profile_ms": {k: round(1000 * statistics.median(v), 2) for k, v in self.parts.items()}}


def save_backbone(model: torch.nn.Module, out: str | Path, epoch: int) -> None:
    """The backbone's state dict after ``epoch`` (1-based) as ``<out>/backbone_epoch<NNN>.pt``."""
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(out) / f"backbone_epoch{epoch:03d}.pt")


def write_result(out: str | Path, clock: StepClock, **extra) -> None:
    Path(out, "result.json").write_text(json.dumps({**clock.summary(), "pid": os.getpid(), **extra}, indent=1))


@torch.no_grad()
def features(model: torch.nn.Module, images: np.ndarray, batch: int = 1000) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    model.eval()
    out = [model((torch.from_numpy(images[i:i + batch]).float().div_(255) - mean) / std) for i in range(0, len(images), batch)]
    return torch.cat(out)


def knn_top1(state: dict | None, data: tuple[np.ndarray, ...]) -> float:
    """kNN top-1 (this project's ``knn_predict``: cosine, k=20, T=0.07) of the 5k held-out images against the 45k
    training images, un-augmented, with a small CNN holding ``state`` (None: at initialisation, seed 0)."""
    from frossl_lit.evaluation.knn_classifier import knn_predict

    torch.manual_seed(0)
    model = backbone()
    if state is not None:
        model.load_state_dict(state)
    train_x, train_y, val_x, val_y = data
    scores = knn_predict(features(model, val_x), features(model, train_x), torch.from_numpy(train_y), 10, KNN_K, KNN_T)
    return float((scores.argmax(1) == torch.from_numpy(val_y)).float().mean())
