"""The optimizer and learning-rate schedule of a method (:class:`OptimizerSetup`, mixed into
:class:`~frossl_lit.methods.base.SSLMethod`): parameter groups, the batch-size scaling rule, the schedule's length,
and resuming with another schedule (``resume.override_schedule``)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from frossl_lit.optim.param_groups import split_weight_decay


class OptimizerSetup:
    """Reads from the module: ``optimizer_factory``, ``scheduler_factory``, ``predictor``, ``predictor_static_lr``,
    ``no_decay_lr_scale``, ``decay_bias_and_norm``, ``lr_reference_batch`` and ``batch_size`` (the per-device
    batch the data loaders yield; ``train.build`` passes ``data.batch_size``); sets ``total_steps``."""

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
        if self.lr_reference_batch:  # the linear scaling rule over the global batch
            if not self.batch_size:
                raise ValueError("lr_reference_batch scales the lr by the global batch: pass the method batch_size")
            trainer = self.trainer
            global_batch = self.batch_size * trainer.world_size * trainer.accumulate_grad_batches
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
