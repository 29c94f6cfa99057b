"""The progress bar: Lightning's TQDM bar, with the loss of the last logging step."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar


class LossProgressBar(TQDMProgressBar):
    """Shows ``loss`` as the module read it at the last logging step (``SSLMethod.logged_loss``, a Python float):
    a value logged with ``prog_bar=True`` would be read on the host after every step, one device synchronisation
    per step on a GPU. ``train.build`` adds it when ``trainer.enable_progress_bar`` is true."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "logged_loss", None)
        if loss is not None:
            metrics["loss"] = f"{loss:.4g}"
        return metrics
