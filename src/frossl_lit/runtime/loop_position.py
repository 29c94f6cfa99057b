"""Where Lightning's training loop stands in the current epoch: the one module that reads or writes its private loop
state (``trainer.fit_loop.epoch_loop``), so that a change in Lightning is fixed here alone
(``tests/runtime/test_loop_position.py`` pins these functions against the real loop).

Lightning's epoch loop counts, per epoch, the batches it took from its data fetcher (``ready``: counted after the
batch was moved to the device and ``on_after_batch_transfer`` ran, before ``on_train_batch_start``) and those whose
training step finished (``processed``: counted before ``on_train_batch_end``). Its fetcher reads one batch ahead of
both, so a loader's own count of the batches it yielded is one too many for a resume.
"""

from __future__ import annotations

from typing import Any


def batches_fetched(trainer: Any) -> int:
    """The number of this epoch's training batches the loop has taken up so far: ``i`` while the ``i``-th batch
    (from 0) goes through ``on_after_batch_transfer``, ``i + 1`` from its ``on_train_batch_start`` on."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def batches_consumed(trainer: Any) -> int | None:
    """The number of this epoch's training batches whose training step finished (``i + 1`` from the ``i``-th
    batch's ``on_train_batch_end`` on, ``i`` at its ``on_train_batch_start``): where a run resumed from a checkpoint
    written now continues. ``None`` when the trainer is not fitting (no trainer, or validate / test / predict)."""
    state = getattr(trainer, "state", None)
    if state is None or state.fn != "fit":
        return None
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def restore_logged_step_counter(trainer: Any) -> None:
    """Set the step counter the loggers use to the number of optimizer steps done; call once, at the first
    ``on_train_batch_start`` of a run restored from a checkpoint.

    Lightning assumes a checkpoint was written at the end of a batch and adds one to that counter
    (``_batches_that_stepped``) on restore; :class:`~frossl_lit.callbacks.step_checkpoint.StepCheckpoint` writes at
    the start of the next batch. The counter is the number of optimizer steps done, i.e. ``global_step``, however
    the checkpoint was written."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
