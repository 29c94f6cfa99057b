"""SSLMethod: views → backbone → projector (→ predictor) → loss. A method is :meth:`SSLMethod.loss` (a pure loss
function of the :class:`Branches` the step computed) and its ``views_supported``; the step's other parts
(:meth:`~SSLMethod.embed_views`, :meth:`~SSLMethod.embed_targets`, :meth:`~SSLMethod.log_loss`,
:meth:`~SSLMethod.after_optimizer_step`) can be overridden too. Methods with a momentum target network build on
:class:`frossl_lit.methods.momentum.MomentumMethod`."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from frossl_lit.optim.param_groups import split_weight_decay
from frossl_lit.runtime.distributed import Collective


@dataclass
class Branches:
    """What :meth:`SSLMethod.embed_views` gives the loss, one tensor per view.

    - ``features``: the online backbone's features (the probe, kNN and export read this network).
    - ``embeddings``: the online projector's outputs.
    - ``predictions``: the online predictor's outputs, for methods with a ``predictor`` (BYOL, SimSiam), else None.
    - ``targets``: the target network's projections of the target views (no gradient), for methods with a target
      network (BYOL, MoCo), else None. The target views are the first views, those of the first view's size
      (the large crops; :func:`target_view_count`).
    """

    features: list[torch.Tensor]
    embeddings: list[torch.Tensor]
    predictions: list[torch.Tensor] | None = None
    targets: list[torch.Tensor] | None = None


def target_view_count(views: Sequence[torch.Tensor]) -> int:
    """How many leading views have the first view's spatial size: the large crops a teacher or target sees (the
    rule solo-learn applies to multi-crop: crops of the first recipe's size are large)."""
    size = views[0].shape[-2:]
    count = 0
    while count < len(views) and views[count].shape[-2:] == size:
        count += 1
    return count


class SSLMethod(L.LightningModule):
    """The shared base of every method.

    Args:
        backbone: images → features, with an ``out_dim`` attribute.
        projector: ``projector(in_dim=backbone.out_dim)`` builds the projector (a Hydra ``_partial_``).
        predictor: ``predictor(in_dim=projector.out_dim, out_dim=projector.out_dim)`` builds a predictor head on
            the online branch (BYOL, SimSiam), or ``None``.
        predictor_static_lr: the predictor trains at the peak learning rate throughout, outside the schedule
            (SimSiam's "fix lr of the predictor"; solo-learn's ``static_lr``).
        optimizer: ``optimizer(param_groups)`` builds the optimizer (a Hydra ``_partial_``).
        lr_scheduler: ``lr_scheduler(optimizer, total_steps=…, steps_per_epoch=…)`` builds a per-step schedule,
            or ``None``.
        global_batch: losses exact over the global batch under DDP; ``False`` reproduces per-GPU losses.
        lr_reference_batch: when set, every learning rate is multiplied by global batch / this (the linear
            scaling rule of the LARS recipes: lr × batch / 256).
        no_decay_lr_scale: multiplies the learning rate of biases and normalisation parameters (1 in every
            recipe but the official Barlow Twins code's, 0.024).
        decay_bias_and_norm: biases and normalisation parameters get weight decay (and LARS adaptation) like the
            weights (solo-learn's SGD recipes, whose ``exclude_bias_n_norm_wd`` is off); default: excluded.
        compile: ``torch.compile`` the backbone and projector (``True``, or a dict of ``torch.compile`` options,
            e.g. ``{mode: max-autotune}``); the losses are left eager (they are a few matrix products).
        channels_last: the backbone's weights and its input views in channels-last memory format.

    ``training_step`` returns, besides the loss, its detached parts, the detached backbone features and embeddings
    of the first view and the labels: the online probe, the spectrum diagnostics and the divergence guard read them
    from there (evaluation stays outside the method's maths). ``training_seconds`` is the run's training
    wall-clock over all its segments (it is checkpointed, so a resumed run keeps counting). ``total_steps`` is the
    number of optimizer steps the schedule spans (set when the optimizer is built; momentum schedules read it).
    """

    name = "ssl"
    # (min, max) total views (augment.num_views + augment.small_views) the loss takes; max None: no limit.
    # Checked on the config before the run starts (frossl_lit.config.checks).
    views_supported: tuple[int, int | None] = (2, None)
    # a method whose loss reads Branches.predictions (checked on the config: method.predictor must not be null)
    requires_predictor = False

    def __init__(
        self,
        backbone: nn.Module,
        projector: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., Any] | None = None,
        predictor: Callable[..., nn.Module] | None = None,
        predictor_static_lr: bool = False,
        global_batch: bool = True,
        lr_reference_batch: int | None = None,
        no_decay_lr_scale: float = 1.0,
        decay_bias_and_norm: bool = False,
        compile: bool | dict[str, Any] = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "projector", "predictor", "optimizer", "lr_scheduler"])
        self.lr_reference_batch, self.no_decay_lr_scale = lr_reference_batch, no_decay_lr_scale
        self.decay_bias_and_norm, self.predictor_static_lr = decay_bias_and_norm, predictor_static_lr
        self.backbone = backbone
        self.projector = projector(in_dim=backbone.out_dim)
        out_dim = self.projector.out_dim
        self.predictor = predictor(in_dim=out_dim, out_dim=out_dim) if predictor is not None else None
        self.total_steps: int | None = None
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.collective = Collective(global_batch=global_batch)
        self.latest_loss: torch.Tensor | None = None
        self.logged_loss: float | None = None  # the loss at the last logging step, for the progress bar
        self.compile_options = ({} if compile is True else dict(compile)) if compile else None
        self.channels_last = channels_last
        self._earlier_seconds = 0.0

    def configure_model(self) -> None:
        """Channels-last weights and in-place ``torch.compile`` of the backbone and projector (``model.*``).
        ``nn.Module.compile`` keeps the parameter names, so checkpoints load with or without it."""
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.compile_options is not None and not getattr(self, "_compiled", False):
            self.backbone.compile(**self.compile_options)
            self.projector.compile(**self.compile_options)
            self._compiled = True

    # -- the step, in overridable parts: views → branches → loss → logs → (after the optimizer step) state ------
    def embed_views(self, views: Sequence[torch.Tensor]) -> Branches:
        """The :class:`Branches` of the views: online features and embeddings, the predictor's outputs when the
        method has one, and :meth:`embed_targets`. Keep the first view's features first: the probe reads them."""
        if self.channels_last:
            views = [view.contiguous(memory_format=torch.channels_last) for view in views]
        features = [self.backbone(view) for view in views]
        embeddings = [self.projector(feature) for feature in features]
        predictions = [self.predictor(z) for z in embeddings] if self.predictor is not None else None
        return Branches(features, embeddings, predictions, self.embed_targets(views))

    def embed_targets(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
        """The target branch's projections of the target views (no gradient); None here: no target network."""
        return None

    def loss(self, branches: Branches) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, parts)`` of the method's loss: a pure function (``frossl_lit.losses``) of the branches."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Update the method's own state once the weights have stepped (a target network's moving average, a
        queue): called after every optimizer step, before any checkpoint of the next step is written."""

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def log_loss(self, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        """Log the loss and its parts (a part with one value per view also per view). Logging a tensor costs no
        host synchronisation; the loggers read the values every ``trainer.log_every_n_steps`` steps."""
        self.log("train/loss", total)  # no prog_bar: Lightning would read it on the host after every step
        if self._logging_step():  # the progress bar shows the loss of the last logging step (one host read)
            self.logged_loss = float(total.detach())
        for part, value in parts.items():
            self.log(f"train/{self.name}/{part}", value.sum())
            if value.ndim == 1:
                for view, per_view in enumerate(value):
                    self.log(f"train/{self.name}/{part}_view{view}", per_view)

    def _logging_step(self) -> bool:
        """Whether the loggers write after this step (every ``trainer.log_every_n_steps``-th)."""
        trainer = self._trainer  # None outside a Trainer: nothing logs
        n = trainer.log_every_n_steps if trainer is not None else 0
        return bool(n) and (trainer.global_step + 1) % n == 0

    def training_step(self, batch: tuple[list[torch.Tensor], torch.Tensor], batch_idx: int) -> dict[str, Any]:
        views, labels = batch
        branches = self.embed_views(views)
        total, parts = self.loss(branches)
        self.latest_loss = total.detach()  # read by the divergence guard before the optimizer step
        self.log_loss(total, parts)
        return {
            "loss": total,
            "parts": {part: value.detach() for part, value in parts.items()},
            "features": branches.features[0].detach(),
            "embeddings": branches.embeddings[0].detach(),
            "labels": labels,
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        return {"features": self.backbone(images), "labels": labels}

    def on_fit_start(self) -> None:
        self._segment_started = time.monotonic()

    @property
    def training_seconds(self) -> float:
        """Wall-clock of fit over every segment of the run (earlier ones from the checkpoint)."""
        started = getattr(self, "_segment_started", None)
        return self._earlier_seconds + (time.monotonic() - started if started is not None else 0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the loggers' run ids (e.g. the W&B run id), so that a resumed run logs to the same runs, and the
        training wall-clock so far."""
        checkpoint["logger_versions"] = {type(logger).__name__: str(logger.version) for logger in self.loggers}
        checkpoint["training_seconds"] = self.training_seconds
        for logger in self.loggers:  # what was logged up to this checkpoint is on disk when it is
            logger.save()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._earlier_seconds = float(checkpoint.get("training_seconds", 0.0))
        self._restored = True

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if getattr(self, "_restored", False):
            # Lightning assumes a checkpoint was written at the end of a batch and adds one to the step counter
            # that its loggers use; StepCheckpoint writes at the start of the next one. The counter is the
            # number of optimizer steps done, i.e. global_step, however the checkpoint was written.
            self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.trainer.global_step
            self._restored = False

    def param_groups(self) -> list[dict]:
        """The optimizer's parameter groups: weights, then biases and norm parameters (no weight decay, no LARS
        adaptation, unless ``decay_bias_and_norm``); a static-lr predictor's groups carry ``static_lr=True``, which
        the schedules read (its lr stays at the peak). Frozen parameters (a target network) are in none."""
        static = self.predictor if self.predictor is not None and self.predictor_static_lr else None
        split = lambda module, exclude=None: split_weight_decay(
            module, self.no_decay_lr_scale, exclude=exclude, decay_all=self.decay_bias_and_norm)
        groups = split(self, exclude=static)
        if static is not None:
            groups += [{**group, "static_lr": True} for group in split(static)]
        return groups

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer over :meth:`param_groups`, every group's lr scaled by the batch rule and its ``lr_scale``."""
        optimizer = self.optimizer_factory(self.param_groups())
        batch_scale = 1.0
        if self.lr_reference_batch:
            trainer = self.trainer
            global_batch = trainer.datamodule.batch_size * trainer.world_size * trainer.accumulate_grad_batches
            batch_scale = global_batch / self.lr_reference_batch
        for group in optimizer.param_groups:
            group["lr"] *= batch_scale * group.pop("lr_scale", 1.0)
        return optimizer

    def _schedule_length(self) -> tuple[int, int]:
        """``(total_steps, steps_per_epoch)`` the schedule spans: max_epochs whole epochs (max_steps / max_time stop
        a run early, they do not compress its schedule; estimated_stepping_batches also sets up the train loader
        for the batch count)."""
        estimated = int(self.trainer.estimated_stepping_batches)
        batches = self.trainer.num_training_batches
        steps_per_epoch = max(1, int(batches) // self.trainer.accumulate_grad_batches) if math.isfinite(batches) else estimated
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else None
        return (steps_per_epoch * epochs if epochs else estimated), steps_per_epoch

    def configure_optimizers(self) -> Any:
        optimizer = self._build_optimizer()
        self.total_steps, steps_per_epoch = self._schedule_length()
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=self.total_steps, steps_per_epoch=steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def reset_schedule(self) -> None:
        """Apply this run's optimizer settings and schedule to a restored optimizer (``resume.override_schedule``).

        The rule: the run continues *as if it had been configured this way from the start*, at the step it has
        reached. Every parameter group takes the fresh optimizer's hyperparameters (lr, weight decay, momenta; the
        accumulated state, e.g. Adam's moments, is kept), ``total_steps`` follows the new length, and a fresh
        scheduler is wound forward to ``global_step`` (one scheduler step per optimizer step)."""
        optimizer = self.stepped_optimizer()
        fresh = self._build_optimizer()
        if len(fresh.param_groups) != len(optimizer.param_groups):
            raise RuntimeError("the restored optimizer has another parameter-group layout than this run's")
        for restored, new in zip(optimizer.param_groups, fresh.param_groups):
            restored.update({key: value for key, value in new.items() if key != "params"})
            restored.pop("initial_lr", None)
        self.total_steps, steps_per_epoch = self._schedule_length()
        configs = self.trainer.lr_scheduler_configs
        if self.scheduler_factory is None or not configs:
            return
        scheduler = self.scheduler_factory(optimizer, total_steps=self.total_steps, steps_per_epoch=steps_per_epoch)
        with warnings.catch_warnings():  # "step() before optimizer.step()": nothing is trained here
            warnings.simplefilter("ignore")
            for _ in range(self.trainer.global_step):  # any scheduler: wind it forward as the run would have
                scheduler.step()
        configs[0].scheduler = scheduler

    def stepped_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer the Trainer steps (unwrapped from Lightning's wrapper)."""
        optimizer = self.optimizers(use_pl_optimizer=False)
        return optimizer[0] if isinstance(optimizer, list) else optimizer
