"""Divergence guard: a non-finite loss never reaches the weights, and the run stops (or skips the step) with one line."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from frossl_lit.methods.step import StepOutput
from frossl_lit.runtime.checkpointing import DivergedError

ACTIONS = ("stop", "skip")


class DivergenceGuard(L.Callback):
    """Watches every step's loss, its parts and its gradients for NaN and infinity.

    A step is bad when its loss, or (except under fp16, whose gradient scaler skips overflowing steps itself) one
    of its gradients, is not finite. The norm layers' running statistics, which the bad batch's forward pass
    already updated, are reset where it spoilt them.

    - ``action="stop"`` (default): every gradient of a bad step is zeroed on the device, without a host round
      trip, so the weights stay finite (what the optimizer does with a zero gradient, momentum and weight decay,
      still applies). The flags are read on the host every ``check_every_n_steps`` steps (default: the trainer's
      logging interval), at each epoch start (after the previous epoch's checkpoints) and at the end of training,
      and then :class:`~frossl_lit.runtime.checkpointing.DivergedError` names the first non-finite step and the loss
      terms that went non-finite; the entry point prints it as one line and exits 1.
    - ``action="skip"``: a bad step is skipped outright (its gradients are dropped, so the optimizer does not
      touch the weights), which costs one host round trip per step; ``train/skipped_steps`` is logged and the
      count is checkpointed and lands in the summary.

    The norm layers' running statistics are watched too: a batch whose activations overflow them (a learning rate
    far too high can do so while the loss is still finite) is a bad step like a non-finite loss, and its spoilt
    statistics are reset, so ``skip`` carries on and keeps checkpointing. Under ``16-mixed`` precision the gradient
    scaler keeps skipping steps whose *gradients* overflow, as usual; this guard acts on the loss, which the
    losses compute in float32.

    It reads the loss as Lightning hands it to ``on_before_backward`` (every micro-batch's, under gradient
    accumulation) and the loss's parts from the step's :class:`~frossl_lit.methods.step.StepOutput`.
    """

    def __init__(self, action: str = "stop", check_every_n_steps: int | None = None) -> None:
        if action not in ACTIONS:
            raise ValueError(f"callbacks.divergence.action={action!r} must be one of {', '.join(ACTIONS)}")
        self.action, self.check_every_n_steps = action, check_every_n_steps
        self.skipped_steps = 0
        self._flags: torch.Tensor | None = None  # per term: ever non-finite since the last check
        self._first_step: torch.Tensor | None = None  # per term: first step it was non-finite (-1: never)
        self._terms: list[str] = []
        self._bad_statistics: torch.Tensor | None = None  # this step's batch overflowed a norm layer's statistics
        self._bad_loss: torch.Tensor | None = None  # a micro-batch's loss since the last optimizer step was not finite

    @property
    def state_key(self) -> str:
        return "DivergenceGuard"

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped_steps = int(state.get("skipped_steps", 0))

    # -- every step ----------------------------------------------------------------------------------------------
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach())
        self._bad_loss = bad if self._bad_loss is None else self._bad_loss | bad

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        bad, self._bad_loss = self._bad_loss, None
        if bad is None:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and str(trainer.precision) not in ("16-mixed", "16"):  # fp16: the gradient scaler skips overflows
            bad = bad | ~torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        statistics = self._statistics(pl_module)
        self._bad_statistics = ~torch.isfinite(torch.stack(torch._foreach_norm(statistics))).all() if statistics else None
        if self._bad_statistics is not None:
            bad = bad | self._bad_statistics
        if self.action == "skip":
            if not bool(bad):  # one host round trip per step: the price of skipping a step exactly
                return
            for group in optimizer.param_groups:  # no gradient: the optimizer leaves these parameters alone
                for parameter in group["params"]:
                    parameter.grad = None
            self._repair_statistics(pl_module, bad)
            self.skipped_steps += 1
            return
        for grad in grads:  # stop: a zero gradient instead of the bad one, decided on the device
            grad.masked_fill_(bad, 0.0)
        self._repair_statistics(pl_module, bad)

    @staticmethod
    def _statistics(pl_module: L.LightningModule) -> list[torch.Tensor]:
        """The norm layers' running means and variances (floating-point buffers the optimizer never touches)."""
        return [buffer for module in pl_module.modules() if isinstance(module, torch.nn.modules.batchnorm._NormBase)
                for buffer in (module.running_mean, module.running_var) if buffer is not None]

    @staticmethod
    def _repair_statistics(pl_module: L.LightningModule, bad: torch.Tensor) -> None:
        """The bad batch's forward pass already updated the norm layers' running statistics: reset them where it
        spoilt them (to the initial mean 0 and variance 1, which the following batches re-estimate)."""
        for module in pl_module.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.running_var is not None:
                module.running_mean.masked_fill_(bad | ~torch.isfinite(module.running_mean), 0.0)
                module.running_var.masked_fill_(bad | ~torch.isfinite(module.running_var), 1.0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        step_output = StepOutput.of(outputs)
        if step_output is None:
            return
        terms = {"train/loss": step_output.loss}
        terms.update({f"train/{step_output.method}/{part}": value for part, value in step_output.parts.items()})
        bad = [~torch.isfinite(value).all() for value in terms.values()]
        if self._bad_statistics is not None:  # set before this step's optimizer step; the values are repaired
            terms["the norm layers' running statistics"] = self._bad_statistics
            bad.append(self._bad_statistics)
        bad = torch.stack(bad)
        if self._flags is None or self._flags.shape != bad.shape:
            self._terms = list(terms)
            self._flags = torch.zeros_like(bad)
            self._first_step = torch.full(bad.shape, -1, dtype=torch.long, device=bad.device)
        step = trainer.global_step  # the optimizer has stepped: this batch was step global_step - 1
        self._first_step = torch.where(bad & ~self._flags, step - 1, self._first_step)
        self._flags |= bad
        every = self.check_every_n_steps or trainer.log_every_n_steps or 1
        if step % every == 0:
            self.check(trainer)

    # -- on the host, every N steps ----------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Read the device flags (one synchronisation) and stop or report."""
        if self._flags is None or not bool(self._flags.any()):
            return
        first = self._first_step.tolist()
        bad_terms = [name for name, flag in zip(self._terms, self._flags.tolist()) if flag]
        step = min(s for s in first if s >= 0)
        self._flags.zero_()
        self._first_step.fill_(-1)
        if self.action == "skip":
            for logger in trainer.loggers:
                logger.log_metrics({"train/skipped_steps": self.skipped_steps}, step=trainer.global_step)
            return
        facts = (f"non-finite values at step {step} ({', '.join(bad_terms)}); its update was not applied and training "
                 f"stopped at step {trainer.global_step}")
        raise DivergedError(
            f"{facts}. Lower the learning rate (schedule.optimizer.lr) and resume with resume.override_schedule=true, "
            f"or skip such steps with callbacks.divergence.action=skip",
            facts=facts, step=step, first_epoch=step < trainer.num_training_batches,
        )

    def summary(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps} if self.action == "skip" else {}
