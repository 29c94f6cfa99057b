"""Weighted kNN evaluation during training (the classifier itself: :func:`frossl_lit.evaluation.knn_predict`)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from frossl_lit.callbacks.schedule import ScheduledEvaluation
from frossl_lit.evaluation import knn_predict, model_features, top_k_metrics
from frossl_lit.runtime.distributed import gather_rows
from frossl_lit.runtime.errors import UserError, number, positive_int, require


class KNNEvaluation(ScheduledEvaluation):
    """kNN top-1 (and top-5) of validation images against the training images, both un-augmented, in eval mode.

    Runs once before the first training step (``at_start``; the value is kept as ``initial_top1`` and logged as
    ``val/knn_top1`` at step 0), at the end of every ``every_n_epochs``-th validation, and once more when
    training ends at a step it has not evaluated (a ``max_time`` or ``max_steps`` stop mid-epoch), so
    ``last_top1`` always describes the final weights. Under DDP each rank
    embeds its shard; the bank is gathered and the correct counts are summed, so the figure is exact.

    The bank is the un-augmented training set, or with ``bank_size`` a stratified subset of that many images
    (the same one every time; the summary reports ``knn_bank_size``): on CIFAR-10 a 10k bank costs a fifth of
    the full 45k–50k one per pass.
    """

    def __init__(
        self, k: int = 20, temperature: float = 0.07, every_n_epochs: int = 1, at_start: bool = True, bank_size: int | None = None
    ) -> None:
        require("callbacks.knn.k", k, positive_int, "must be a positive number of neighbours", "e.g. callbacks.knn.k=20")
        require("callbacks.knn.temperature", temperature, lambda v: number(v) and v > 0, "must be > 0",
                "e.g. callbacks.knn.temperature=0.07")
        require("callbacks.knn.every_n_epochs", every_n_epochs, positive_int, "must be >= 1",
                "e.g. callbacks.knn.every_n_epochs=1 (or callbacks.knn=null)")
        require("callbacks.knn.bank_size", bank_size, lambda v: v is None or positive_int(v),
                "must be a positive number of images or null (all of them)", "e.g. callbacks.knn.bank_size=10000")
        require("callbacks.knn.k", k, lambda v: bank_size is None or v <= bank_size,
                f"is more than callbacks.knn.bank_size={bank_size}, the images in the kNN bank", "e.g. callbacks.knn.k=20")
        self.k, self.temperature, self.every_n_epochs, self.at_start = k, temperature, every_n_epochs, at_start
        self.bank_size = bank_size
        self.bank_used: int | None = None  # images in the bank, as used
        self.initial_top1: float | None = None
        self.last_top1: float | None = None
        self.last_step: int | None = None
        self._clock_start: float | None = None  # training wall-clock, kNN passes excluded (this segment)
        self._eval_seconds = 0.0
        self._earlier_train_seconds = 0.0  # the same clock over the segments before a resume
        self.eval_seconds = 0.0  # every kNN pass of the run, the one at the start included (checkpointed)

    @property
    def state_key(self) -> str:
        return "KNNEvaluation"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_bank(trainer)
        if self.at_start and self.initial_top1 is None:  # resumed runs keep their initial figure
            result = self.evaluate(trainer, pl_module)
            if result is not None:
                self.initial_top1 = result["val/knn_top1"]
                for logger in trainer.loggers:
                    logger.log_metrics({"val/knn_top1": self.initial_top1}, step=trainer.global_step)
        self._clock_start, self._eval_seconds = time.perf_counter(), 0.0

    def _check_bank(self, trainer: L.Trainer) -> None:
        """``k`` neighbours need a bank of at least ``k`` images; its size is known once the data is set up, so a
        run fails here, before its first kNN pass (which would otherwise come after a whole epoch)."""
        loader = trainer.datamodule.bank_dataloader(self.bank_size) if trainer.datamodule is not None else None
        size = len(loader.dataset) if loader is not None else None
        if size is not None and self.k > size:
            raise UserError(f"callbacks.knn.k={self.k} is more than the {size} images in the kNN bank (the training images"
                            f"{'' if self.bank_size is None else f', at most callbacks.knn.bank_size={self.bank_size}'}); "
                            f"choose at most {size}, e.g. callbacks.knn.k={min(20, size)}")

    def record(self, result: dict[str, float], trainer: L.Trainer) -> None:
        self.last_top1, self.last_step = result["val/knn_top1"], trainer.global_step

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        """kNN top-1/top-5, ``val/knn_train_seconds`` (wall-clock since training started, less the kNN passes) and
        ``val/knn_eval_seconds`` (the kNN passes so far, the one before training included)."""
        started = time.perf_counter()
        result = self._evaluate(trainer, pl_module)
        elapsed = time.perf_counter() - started
        self._eval_seconds += elapsed
        self.eval_seconds += elapsed
        if result is not None and self._clock_start is not None:
            result["val/knn_train_seconds"] = self.train_seconds()
            result["val/knn_eval_seconds"] = self.eval_seconds
        return result

    def train_seconds(self) -> float:
        """Training wall-clock since the run started, kNN passes left out, over every resumed segment."""
        if self._clock_start is None:
            return self._earlier_train_seconds
        return self._earlier_train_seconds + time.perf_counter() - self._clock_start - self._eval_seconds

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        datamodule = trainer.datamodule
        bank_loader = datamodule.bank_dataloader(self.bank_size) if datamodule is not None else None
        if bank_loader is None:
            return None  # unlabelled data: nothing to evaluate
        self.bank_used = len(bank_loader.dataset)
        bank, bank_labels = model_features(trainer, pl_module, bank_loader, f"kNN bank ({self.bank_used} images)")
        queries, query_labels = model_features(trainer, pl_module, datamodule.val_dataloader(), "kNN queries")
        bank, bank_labels = gather_rows(bank), gather_rows(bank_labels)
        scores = knn_predict(queries, bank, bank_labels, datamodule.num_classes, self.k, self.temperature)
        metrics = top_k_metrics(datamodule.num_classes, prefix="val/knn_").to(pl_module.device)
        metrics.update(scores, query_labels)  # compute() sums every rank's counts: exact under DDP
        return {name: float(value) for name, value in metrics.compute().items()}

    def summary(self) -> dict[str, Any]:
        """The figures this callback publishes in the run's summary."""
        return {"knn_top1": self.last_top1, "knn_top1_init": self.initial_top1, "knn_bank_size": self.bank_used,
                "knn_eval_seconds": round(self.eval_seconds, 2)}

    def state_dict(self) -> dict[str, Any]:
        return {"initial_top1": self.initial_top1, "last_top1": self.last_top1, "last_step": self.last_step,
                "train_seconds": self.train_seconds(), "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_top1 = state_dict.get("initial_top1")
        self.last_top1 = state_dict.get("last_top1")
        self.last_step = state_dict.get("last_step")
        self._earlier_train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.eval_seconds = float(state_dict.get("eval_seconds", 0.0))
