"""Online linear probe: a linear head on detached backbone features, trained every step with its own optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from frossl_lit.evaluation import linear_head, model_features, top_k_metrics
from frossl_lit.methods.step import StepOutput


class OnlineLinearProbe(L.Callback):
    """Trains :func:`~frossl_lit.evaluation.linear_head` (``BatchNorm1d(affine=False) → Linear``) on the first
    view's detached features at every training step, and reports ``val/probe_top1`` / ``val/probe_top5`` on the
    labelled validation split each epoch, in eval mode.

    The affine-free batch norm (the MAE linear-probe protocol) makes the probe insensitive to the scale of the
    features, which differs widely between methods and over training. Under DDP the features and labels of all
    ranks are gathered and every rank takes the same step from the same seeded initialisation, so the probe is
    identical on every rank. Its weights and optimizer state are checkpointed with the run. When training ends
    at a step no validation has seen (a ``max_time`` or ``max_steps`` stop mid-epoch), it evaluates once more so
    ``last_top1`` / ``last_top5`` describe the final weights.
    """

    def __init__(self, optimizer: Callable[..., torch.optim.Optimizer] | None = None, seed: int = 0) -> None:
        self.optimizer_factory = optimizer or (lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9))
        self.seed = seed
        self.head: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None
        self.metrics: MetricCollection | None = None
        self.last_top1: float | None = None
        self.last_top5: float | None = None
        self.last_step: int | None = None

    @property
    def state_key(self) -> str:
        return "OnlineLinearProbe"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        num_classes = getattr(trainer.datamodule, "num_classes", 0)
        if self.head is not None or not num_classes:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.head = linear_head(pl_module.backbone.out_dim, num_classes)
        self.metrics = top_k_metrics(num_classes, prefix="val/probe_")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.head is None:
            return
        self.head.to(pl_module.device)
        self.metrics.to(pl_module.device)
        self.optimizer = self.optimizer_factory(self.head.parameters())
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = StepOutput.of(outputs)
        if self.head is None or step is None:
            return
        features, labels = step.features, step.labels
        if trainer.world_size > 1:
            features = pl_module.all_gather(features).flatten(0, 1)
            labels = pl_module.all_gather(labels).flatten(0, 1)
        self.head.train()
        with torch.enable_grad():
            logits = self.head(features.float())
            labelled = (labels >= 0).float()  # unlabelled samples (label -1, e.g. STL-10's unlabeled split) teach nothing
            losses = F.cross_entropy(logits, labels.clamp_min(0), reduction="none")
            loss = (losses * labelled).sum() / labelled.sum().clamp_min(1.0)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        pl_module.log("train/probe_loss", loss.detach())

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.head is None or trainer.sanity_checking:
            return
        self.head.eval()
        with torch.no_grad():
            logits = self.head(outputs.features.float())
        self.metrics.update(logits, outputs.labels)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.head is None or trainer.sanity_checking:
            return
        for name, value in self._compute(trainer).items():
            pl_module.log(name, value, sync_dist=False)

    def _compute(self, trainer) -> dict[str, torch.Tensor]:
        results = self.metrics.compute()  # summed over ranks under DDP
        self.metrics.reset()
        self.last_top1 = float(results["val/probe_top1"])
        self.last_top5 = float(results["val/probe_top5"]) if "val/probe_top5" in results else None
        self.last_step = trainer.global_step
        return results

    def on_train_end(self, trainer, pl_module) -> None:
        if self.head is None or self.last_step == trainer.global_step or not trainer.datamodule.has_labels:
            return
        features, labels = model_features(trainer, pl_module, trainer.datamodule.val_dataloader(), "probe validation")
        self.head.eval()
        with torch.no_grad():
            self.metrics.update(self.head(features), labels)
        results = self._compute(trainer)
        for logger in trainer.loggers:
            logger.log_metrics({k: float(v) for k, v in results.items()}, step=trainer.global_step)

    def summary(self) -> dict[str, Any]:
        """The figures this callback publishes in the run's summary."""
        return {"probe_top1": self.last_top1, "probe_top5": self.last_top5}

    def state_dict(self) -> dict[str, Any]:
        if self.head is None:
            return {}
        return {
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "last": (self.last_top1, self.last_top5, self.last_step),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.head is None or self.optimizer is None:  # restored before on_fit_start built them: apply there
            self._pending_state = state_dict
            return
        self.head.load_state_dict(state_dict["head"])
        self.last_top1, self.last_top5, self.last_step = state_dict.get("last", (None, None, None))
        if state_dict.get("optimizer") is not None:
            self.optimizer.load_state_dict(state_dict["optimizer"])
        self._pending_state = None
