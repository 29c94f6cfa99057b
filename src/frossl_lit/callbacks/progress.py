"""The progress bar: Lightning's TQDM bar, with the loss of the last logging step."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar

from frossl_lit.methods.step import StepOutput


class LossProgressBar(TQDMProgressBar):
    """Shows ``loss`` as read at the last logging step (every ``trainer.log_every_n_steps``-th, one host read
    there) from the step's :class:`~frossl_lit.methods.step.StepOutput`: a value logged with ``prog_bar=True``
    would be read on the host after every step, one device synchronisation per step on a GPU.
    ``train.build`` adds it when ``trainer.enable_progress_bar`` is true."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.logged_loss: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = StepOutput.of(outputs)
        every = trainer.log_every_n_steps
        if step is not None and every and trainer.global_step % every == 0:  # the step just done was a logging one
            self.logged_loss = float(step.loss)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        if self.logged_loss is not None:
            metrics["loss"] = f"{self.logged_loss:.4g}"
        return metrics
