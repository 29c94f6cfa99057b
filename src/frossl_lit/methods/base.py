"""SSLMethod: views → backbone → projector (→ predictor) → loss. A method is :meth:`SSLMethod.loss` (a pure loss
function of the :class:`Branches` the step computed) and its ``views_supported``; the step's other parts
(:meth:`~SSLMethod.embed_views`, :meth:`~SSLMethod.embed_targets`, :meth:`~SSLMethod.log_loss`,
:meth:`~SSLMethod.after_optimizer_step`) can be overridden too. The step's contracts (:class:`Branches`,
:class:`StepOutput`) are in :mod:`frossl_lit.methods.step`, the optimizer and schedule in
:mod:`frossl_lit.methods.optimization`. Methods with a momentum target network build on
:class:`frossl_lit.methods.momentum.MomentumMethod`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from frossl_lit.methods.optimization import OptimizerSetup
from frossl_lit.methods.step import Branches, EvalOutput, StepOutput, target_view_count
from frossl_lit.models.backbones import Backbone, check_backbone
from frossl_lit.runtime.distributed import Collective
from frossl_lit.runtime.loop_position import restore_logged_step_counter

__all__ = ["Branches", "EvalOutput", "SSLMethod", "StepOutput", "target_view_count"]


class SSLMethod(OptimizerSetup, L.LightningModule):
    """The shared base of every method.

    Args:
        backbone: images (B, C, H, W) → features (B, ``backbone.out_dim``): the
            :class:`~frossl_lit.models.backbones.Backbone` contract.
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
        batch_size: the per-device batch the data loaders yield (``train.build`` passes ``data.batch_size``); the
            global batch of ``lr_reference_batch`` and of a queue's size check.
        no_decay_lr_scale: multiplies the learning rate of biases and normalisation parameters (1 in every
            recipe but the official Barlow Twins code's, 0.024).
        decay_bias_and_norm: biases and normalisation parameters get weight decay (and LARS adaptation) like the
            weights (solo-learn's SGD recipes, whose ``exclude_bias_n_norm_wd`` is off); default: excluded.
        compile: ``torch.compile`` the backbone and projector (``True``, or a dict of ``torch.compile`` options,
            e.g. ``{mode: max-autotune}``); the losses are left eager (they are a few matrix products).
        channels_last: the backbone's weights and its input views in channels-last memory format.

    ``training_step`` returns, besides the loss, a :class:`StepOutput` (the detached loss and parts, the first
    view's features and embeddings, the labels): the callbacks read it there (``StepOutput.of(outputs)``) and
    nothing else of the module's step (evaluation stays outside the method's maths). ``training_seconds`` is the run's training
    wall-clock over all its segments (it is checkpointed, so a resumed run keeps counting). ``total_steps`` is the
    number of optimizer steps the schedule spans (set when the optimizer is built; momentum schedules read it).
    """

    name = "ssl"
    # (min, max) total views (augment.num_views + augment.small_views) the loss takes; max None: no limit.
    # Checked on the config before the run starts (frossl_lit.config.checks).
    views_supported: tuple[int, int | None] = (2, None)
    # a method whose loss reads Branches.predictions: __init__ refuses method.predictor=null
    requires_predictor = False

    def __init__(
        self,
        backbone: Backbone,
        projector: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., Any] | None = None,
        predictor: Callable[..., nn.Module] | None = None,
        predictor_static_lr: bool = False,
        global_batch: bool = True,
        lr_reference_batch: int | None = None,
        batch_size: int | None = None,
        no_decay_lr_scale: float = 1.0,
        decay_bias_and_norm: bool = False,
        compile: bool | dict[str, Any] = False,
        channels_last: bool = False,
    ) -> None:
        if self.requires_predictor and predictor is None:
            from frossl_lit.runtime.errors import refuse

            refuse("method.predictor", None, f"is needed: {type(self).__name__} predicts one branch from the other",
                   f"drop the method.predictor=null override: conf/method/{self.name}.yaml sets one "
                   "(method.predictor.hidden_dims=[...] changes its width)")
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "projector", "predictor", "optimizer", "lr_scheduler"])
        self.lr_reference_batch, self.no_decay_lr_scale = lr_reference_batch, no_decay_lr_scale
        self.batch_size = batch_size
        self.decay_bias_and_norm, self.predictor_static_lr = decay_bias_and_norm, predictor_static_lr
        self.backbone = check_backbone(backbone)
        self.projector = projector(in_dim=backbone.out_dim)
        out_dim = self.projector.out_dim
        self.predictor = predictor(in_dim=out_dim, out_dim=out_dim) if predictor is not None else None
        self.total_steps: int | None = None
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.collective = Collective(global_batch=global_batch)
        self.compile_options = ({} if compile is True else dict(compile)) if compile else None
        self.channels_last = channels_last
        self._earlier_seconds = 0.0

    def configure_model(self) -> None:
        """Channels-last weights and in-place ``torch.compile`` of the backbone and projector (``model.*``).
        ``nn.Module.compile`` keeps the parameter names, so checkpoints load with or without it. Channels-last is
        skipped (the views stay contiguous) for a backbone without convolutional stages, a ViT: its one convolution,
        the patch embedding, is flattened into tokens at once (``models.backbones.benefits_from_channels_last``)."""
        from frossl_lit.models.backbones import benefits_from_channels_last

        self.channels_last = self.channels_last and benefits_from_channels_last(self.backbone)
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
        for part, value in parts.items():
            self.log(f"train/{self.name}/{part}", value.sum())
            if value.ndim == 1:
                for view, per_view in enumerate(value):
                    self.log(f"train/{self.name}/{part}_view{view}", per_view)

    def training_step(self, batch: tuple[list[torch.Tensor], torch.Tensor], batch_idx: int) -> dict[str, Any]:
        views, labels = batch
        branches = self.embed_views(views)
        total, parts = self.loss(branches)
        self.log_loss(total, parts)
        step = StepOutput(loss=total.detach(), parts={part: value.detach() for part, value in parts.items()},
                          features=branches.features[0].detach(), embeddings=branches.embeddings[0].detach(),
                          labels=labels, method=self.name,
                          large_features=[f.detach() for f in branches.features[:target_view_count(views)]])
        return step.for_lightning(total)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> EvalOutput:
        images, labels = batch
        return EvalOutput(features=self.backbone(images), labels=labels)

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
        if getattr(self, "_restored", False):  # the loggers' step counter after a mid-epoch checkpoint
            restore_logged_step_counter(self.trainer)
            self._restored = False
