"""Training throughput (images/s over the global batch) and device memory, every N steps."""

from __future__ import annotations

import time

import lightning as L
import torch


class ThroughputMonitor(L.Callback):
    """Logs ``train/images_per_second`` (source images, all ranks) averaged over the last ``every_n_steps`` steps,
    and on CUDA ``train/max_memory_gib`` (peak allocated on this device). Host-side timing only: no device sync."""

    def __init__(self, every_n_steps: int = 20) -> None:
        self.every_n_steps = every_n_steps
        self._started: float | None = None
        self._images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if outputs is None or self._started is None:
            return
        self._images += len(outputs["labels"]) * trainer.world_size
        if trainer.global_step % self.every_n_steps:
            return
        elapsed = time.perf_counter() - self._started
        if elapsed > 0:
            pl_module.log("train/images_per_second", self._images / elapsed)
        if pl_module.device.type == "cuda":
            pl_module.log("train/max_memory_gib", torch.cuda.max_memory_allocated(pl_module.device) / 2**30)
        self._started, self._images = time.perf_counter(), 0
