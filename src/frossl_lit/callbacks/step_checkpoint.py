"""``last.ckpt`` every N training steps, beside the end-of-epoch one: a run killed mid-epoch loses at most N steps."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class StepCheckpoint(L.Callback):
    """Writes ``<dirpath>/last.ckpt`` after every ``every_n_steps``-th optimizer step (``None``: never).

    It saves as the next batch starts, once the finished step's metrics have reached the loggers (a checkpoint
    flushes them, see ``SSLMethod.on_save_checkpoint``), so a resumed run's metrics.csv misses no step. Resuming
    continues mid-epoch exactly: the DataModule restarts the epoch's order at the next batch and the augmentation
    stream is a function of (seed, rank, epoch, batch) (see :mod:`frossl_lit.data.base`).
    """

    def __init__(self, dirpath: str, every_n_steps: int | None = None, filename: str = "last.ckpt") -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"callbacks.checkpoint_steps.every_n_steps={every_n_steps} must be >= 1 (or null)")
        self.path, self.every_n_steps = Path(dirpath) / filename, every_n_steps
        self._saved_step = -1

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._saved_step:
            trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes
            self._saved_step = step
