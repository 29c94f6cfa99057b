"""When the evaluation callbacks (kNN, label-free figures) measure during training: one schedule for both."""

from __future__ import annotations

import lightning as L


class ScheduledEvaluation(L.Callback):
    """Evaluates at the end of every ``every_n_epochs``-th validation and of the last epoch, and once more when
    training ends at a step it has not evaluated (a ``max_time`` or ``max_steps`` stop mid-epoch), so the last
    figures always describe the final weights. Subclasses set ``every_n_epochs`` and ``last_step`` (the step of
    the last evaluation), implement :meth:`evaluate` and keep what they need in :meth:`record`; the evaluation
    before the first step (``at_start``) is each subclass's own ``on_train_start``."""

    every_n_epochs: int = 1
    last_step: int | None = None

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        """The figures of the current weights, keyed as logged (``None``: nothing to evaluate on)."""
        raise NotImplementedError

    def record(self, result: dict[str, float], trainer: L.Trainer) -> None:
        """Keep an evaluation's figures (called after every scheduled evaluation)."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        last_epoch = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        result = self.evaluate(trainer, pl_module)
        if result is not None:
            self.record(result, trainer)
            for name, value in result.items():
                pl_module.log(name, value, sync_dist=False)  # every rank holds the same figure

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.last_step == trainer.global_step or trainer.global_step == 0:
            return
        result = self.evaluate(trainer, pl_module)
        if result is not None:
            self.record(result, trainer)
            for logger in trainer.loggers:
                logger.log_metrics(result, step=trainer.global_step)
