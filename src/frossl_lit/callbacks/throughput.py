"""Training throughput (images/s over the global batch), steady-state seconds per step and peak memory."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any

import lightning as L
import torch

from frossl_lit.methods.step import StepOutput


def peak_host_memory_gib() -> float:
    """This process's peak resident set size (``getrusage``'s ``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


class ThroughputMonitor(L.Callback):
    """Logs ``train/images_per_second`` (source images, all ranks) averaged over the last ``every_n_steps`` steps,
    and on CUDA ``train/max_memory_gib`` (peak allocated on this device). Host-side timing only: no device sync.

    Publishes in the run summary ``step_seconds`` (the median over those windows of seconds per training step,
    the first window of the run left out as warm-up — compilation, first allocations — whenever there are
    others), ``images_per_second`` (the same windows) and ``peak_memory_gib`` with ``peak_memory_kind``:
    ``cuda_max_allocated`` on a GPU, ``host_rss`` (the process's peak resident set, data in memory included)
    on a CPU. The windows survive a resume, so a resumed run reports the whole run's figures. Windows close at
    every ``every_n_steps``-th step, before every validation and at the end of every epoch (short epochs still
    count); validation time is never inside a window.
    """

    def __init__(self, every_n_steps: int = 20) -> None:
        self.every_n_steps = every_n_steps
        self._started: float | None = None
        self._images = self._steps = 0
        self.windows: list[tuple[float, int, int]] = []  # (seconds, steps, images) of each closed window

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started, self._images, self._steps = time.perf_counter(), 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = StepOutput.of(outputs)
        if step is None or self._started is None:
            return
        self._images += len(step.labels) * trainer.world_size
        self._steps += 1
        if trainer.global_step % self.every_n_steps:
            return
        elapsed = self._close_window()
        if elapsed:
            pl_module.log("train/images_per_second", self.windows[-1][2] / elapsed)
        if pl_module.device.type == "cuda":
            pl_module.log("train/max_memory_gib", torch.cuda.max_memory_allocated(pl_module.device) / 2**30)

    def on_validation_start(self, trainer, pl_module) -> None:
        """Validation (kNN, label-free figures) runs inside the training epoch: it is not a training step's time."""
        if not trainer.sanity_checking:
            self._close_window()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._started, self._images, self._steps = time.perf_counter(), 0, 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close_window()

    def _close_window(self) -> float:
        """Record the open window (if it holds a step); its seconds, or 0 when nothing was recorded."""
        elapsed = time.perf_counter() - self._started if self._started is not None else 0.0
        recorded = elapsed > 0 and self._steps > 0
        if recorded:
            self.windows.append((elapsed, self._steps, self._images))
        self._started, self._images, self._steps = time.perf_counter(), 0, 0
        return elapsed if recorded else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures this callback publishes in the run's summary."""
        steady = self.windows[1:] or self.windows
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {
            "step_seconds": round(statistics.median(s / n for s, n, _ in steady), 5) if steady else None,
            "images_per_second": round(sum(i for *_, i in steady) / sum(s for s, *_ in steady), 1) if steady else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30 if cuda else peak_host_memory_gib(), 3),
            "peak_memory_kind": "cuda_max_allocated" if cuda else "host_rss",
        }

    @property
    def state_key(self) -> str:
        return "ThroughputMonitor"

    def state_dict(self) -> dict:
        return {"windows": [list(w) for w in self.windows]}

    def load_state_dict(self, state: dict) -> None:
        self.windows = [tuple(w) for w in state.get("windows", [])]
