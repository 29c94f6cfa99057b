"""Online linear probe: a linear head on detached backbone features, trained every step with its own optimizer."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from frossl_lit.evaluation import linear_head, model_features, top_k_metrics
from frossl_lit.evaluation.linear_head import check_head
from frossl_lit.methods.step import StepOutput
from frossl_lit.runtime.errors import number, refuse, require

PRETRAINING = "pretraining"
WHERE = "callbacks.probe."


class OnlineLinearProbe(L.Callback):
    """Trains a linear head on detached backbone features at every training step, and reports ``val/probe_top1`` /
    ``val/probe_top5`` on the labelled validation split each epoch, in eval mode.

    The defaults (this framework's probe): ``head=bn_linear`` (:func:`~frossl_lit.evaluation.linear_head`,
    ``BatchNorm1d(affine=False) → Linear``: the affine-free batch norm, the MAE linear-probe protocol, makes the
    probe insensitive to the scale of the features, which differs widely between methods and over training) on the
    first view's features (``views=first``), with its own optimizer (``optimizer``: a partial taking the head's
    parameters; default SGD lr 0.1 momentum 0.9, constant).

    solo-learn's online classifier (vturrisi/solo-learn@9187ea3 solo/methods/base.py:208-210, 313-330, 505-523;
    solo/args/pretrain.py:151-157; the official FroSSL code is the same) is
    ``head=linear, views=large, optimizer=pretraining, lr=<classifier_lr>``:

    - ``head=linear``: a plain ``nn.Linear``;
    - ``views=large``: the cross-entropy of every large crop's features (the leading views of the first view's
      size, :func:`~frossl_lit.methods.step.target_view_count`), averaged over those views (solo-learn's
      ``sum(outs["loss"]) / num_large_crops``); reads ``StepOutput.large_features``;
    - ``optimizer=pretraining``: the run's own optimizer factory (``pl_module.optimizer_factory``, e.g. timm's
      ``Lars`` with the run's momentum, eta and clipping) over two groups, the weight and the bias, both without
      weight decay (solo-learn's classifier group has ``weight_decay: 0``); the weight is still LARS-adapted (solo's
      LARS skips only 1-D parameters, ``exclude_bias_n_norm``: timm's ``Lars`` gets ``always_adapt=True`` for it)
      and the bias is not. Both at ``lr`` × global batch / ``pl_module.lr_reference_batch`` (the method's batch
      rule: batch × devices × accumulation; solo-learn scales ``classifier_lr`` by batch × devices / 256), under
      the run's own schedule (``pl_module.scheduler_factory``: the warm-up start and final lr are absolute, as
      solo-learn's ``LinearWarmupCosineAnnealingLR`` sets them for every group), stepped once per optimizer step
      of the run (wound to ``trainer.global_step`` after each probe step).

    Differences from solo-learn that remain: the head steps after the backbone's step, on the features the step
    computed (solo-learn steps both in one optimizer step: the same features, the same lr); its logits are computed
    in float32 outside the step's autocast; under gradient accumulation it steps every batch (solo-learn
    accumulates it with the backbone).

    Under DDP the features and labels of all ranks are gathered and every rank takes the same step from the same
    seeded initialisation, so the probe is identical on every rank. Its weights, optimizer and schedule are
    checkpointed with the run. When training ends at a step no validation has seen (a ``max_time`` or ``max_steps``
    stop mid-epoch), it evaluates once more so ``last_top1`` / ``last_top5`` describe the final weights.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | str | None = None,
        seed: int = 0,
        head: str = "bn_linear",
        views: str = "first",
        lr: float | None = None,
    ) -> None:
        if isinstance(optimizer, str) and optimizer != PRETRAINING:
            refuse(f"{WHERE}optimizer", optimizer, "must be an optimizer partial or the word pretraining",
                   f"e.g. {WHERE}optimizer=pretraining {WHERE}lr=0.1 (the run's optimizer, as solo-learn)")
        self.pretraining = optimizer == PRETRAINING
        if self.pretraining:
            require(f"{WHERE}lr", lr, lambda v: number(v) and v > 0, "must be > 0 with optimizer=pretraining (the "
                    "classifier's lr at the method's reference batch)", f"e.g. {WHERE}lr=0.1")
        elif lr is not None:
            refuse(f"{WHERE}lr", lr, "applies to optimizer=pretraining only",
                   f"set the optimizer's own lr ({WHERE}optimizer.lr) or {WHERE}optimizer=pretraining")
        require(f"{WHERE}views", views, lambda v: v in ("first", "large"), "must be first or large",
                f"e.g. {WHERE}views=large (every large crop, as solo-learn)")
        check_head(head, f"{WHERE}head")  # a bad head: one line, before any training
        self.optimizer_factory = None if self.pretraining else (
            optimizer or (lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9)))
        self.seed, self.head_kind, self.views, self.lr = seed, head, views, lr
        self.head: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
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
            self.head = linear_head(pl_module.backbone.out_dim, num_classes, self.head_kind, f"{WHERE}head")
        self.metrics = top_k_metrics(num_classes, prefix="val/probe_")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.head is None:
            return
        self.head.to(pl_module.device)
        self.metrics.to(pl_module.device)
        if self.pretraining:
            self.optimizer, self.scheduler = self._pretraining_optimizer(trainer, pl_module)
        else:
            self.optimizer = self.optimizer_factory(self.head.parameters())
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = StepOutput.of(outputs)
        if self.head is None or step is None:
            return
        views, labels = self._views(step), step.labels
        if trainer.world_size > 1:  # (W, V, B, D) → (V, W·B, D): every rank's samples, view by view
            views = pl_module.all_gather(views).transpose(0, 1).flatten(1, 2)
            labels = pl_module.all_gather(labels).flatten(0, 1)
        self.head.train()
        with torch.enable_grad():
            labelled = (labels >= 0).float()  # unlabelled samples (label -1, e.g. STL-10's unlabeled split) teach nothing
            count = labelled.sum().clamp_min(1.0)
            dtype = self.head[-1].weight.dtype  # float32 (a float64 head in the tests)
            loss = sum((F.cross_entropy(self.head(features.to(dtype)), labels.clamp_min(0), reduction="none") * labelled).sum()
                       for features in views) / (count * len(views))  # the mean over the views of each view's mean
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LambdaLR's ordering check: the optimizer stepped just above
                while self.scheduler.last_epoch < trainer.global_step:  # once per optimizer step of the run
                    self.scheduler.step()
        pl_module.log("train/probe_loss", loss.detach())

    def _views(self, step: StepOutput) -> torch.Tensor:
        """The features the probe learns from, (V, B, D): the first view's, or every large view's."""
        if self.views == "first":
            return step.features[None]
        large = getattr(step, "large_features", None)
        if large is None:
            raise RuntimeError(f"{WHERE}views=large: this method's StepOutput carries no large_features")
        return torch.stack(list(large))

    def _pretraining_optimizer(self, trainer, pl_module):
        """The run's optimizer factory over the head's weight and bias (no weight decay; the weight adapted, the
        bias not, under LARS), at ``lr`` scaled by the method's batch rule, and the run's schedule over it."""
        linear: nn.Linear = self.head[-1]
        scale = 1.0
        if getattr(pl_module, "lr_reference_batch", None):
            global_batch = pl_module.batch_size * trainer.world_size * trainer.accumulate_grad_batches
            scale = global_batch / pl_module.lr_reference_batch
        lr = self.lr * scale
        optimizer = pl_module.optimizer_factory([
            {"params": [linear.weight], "lr": lr, "weight_decay": 0.0},
            {"params": [linear.bias], "lr": lr, "weight_decay": 0.0, "lars_exclude": True},
        ])
        if "always_adapt" in optimizer.defaults:  # timm's Lars adapts a group without weight decay only so
            optimizer.param_groups[0]["always_adapt"] = True
            optimizer.param_groups[1]["always_adapt"] = False
        if pl_module.scheduler_factory is None:
            return optimizer, None
        total_steps, steps_per_epoch = pl_module._schedule_length()  # the run's own schedule length
        return optimizer, pl_module.scheduler_factory(optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch)

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
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
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
        if self.scheduler is not None and state_dict.get("scheduler") is not None:
            self.scheduler.load_state_dict(state_dict["scheduler"])
        self._pending_state = None
