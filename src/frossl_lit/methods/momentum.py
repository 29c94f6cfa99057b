"""The seam for methods with a momentum target network (BYOL, MoCo): a frozen copy of backbone + projector moved
towards the online weights after every optimizer step, with a per-step momentum schedule.

The target is registered state of the method (a submodule whose parameters do not train), so it is in every
checkpoint and a resumed run continues it bit for bit; the schedule's position is the trainer's step, and the
momentum in use is the ``target_momentum`` buffer. The probe, kNN and ``export`` read the online backbone, as
solo-learn and the papers evaluate it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from frossl_lit.methods.base import SSLMethod, target_view_count
from frossl_lit.runtime.errors import number, require

SCHEDULES = ("cosine", "constant")


def momentum_at(step: int, total_steps: int, start: float, end: float, schedule: str = "cosine") -> float:
    """The momentum τ after ``step`` optimizer steps: cosine from ``start`` (step 0) to ``end`` (the last step), as
    BYOL (Grill et al. 2020, eq. in §3.2) and solo-learn's ``MomentumUpdater``; ``constant``: always ``start``."""
    if schedule == "constant":
        return start
    progress = min(1.0, step / max(1, total_steps))
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


class MomentumTarget(nn.Module):
    """Frozen copies of the online ``backbone`` and ``projector``: ``θ_target ← τ θ_target + (1 − τ) θ_online``.

    Only parameters move by the average; the copies' BatchNorm statistics follow their own forward passes (they run
    in training mode like the online network), as in solo-learn and the official BYOL code."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone, self.projector = copy.deepcopy(backbone), copy.deepcopy(projector)
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: Sequence[nn.Module], momentum: float) -> None:
        targets = [p for p in self.parameters()]
        sources = [p.detach() for module in online for p in module.parameters()]
        torch._foreach_lerp_(targets, sources, 1.0 - momentum)  # t + (1 − τ)(o − t) = τ t + (1 − τ) o

    @torch.no_grad()
    def forward(self, view: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(view))


class MomentumMethod(SSLMethod):
    """An :class:`SSLMethod` with a momentum target network; :attr:`Branches.targets` holds its projections of
    the target views (the large crops: the views of the first view's size).

    Args:
        momentum_start: τ at the first step (BYOL 0.996; solo-learn's CIFAR recipes 0.99).
        momentum_end: τ at the last step (1.0: the target freezes as training ends).
        momentum_schedule: ``cosine`` from start to end over the run's ``total_steps``, or ``constant``.
    """

    def __init__(
        self, *, momentum_start: float = 0.996, momentum_end: float = 1.0, momentum_schedule: str = "cosine", **base
    ) -> None:
        for key, value, example in (("momentum_start", momentum_start, 0.99), ("momentum_end", momentum_end, 1.0)):
            require(f"method.{key}", value, lambda v: number(v) and 0.0 <= v <= 1.0, "is a momentum: it must lie in [0, 1]",
                    f"e.g. method.{key}={example}")
        require("method.momentum_start", momentum_start, lambda v: v <= momentum_end, f"exceeds method.momentum_end={momentum_end}",
                "the momentum grows towards its end value, e.g. method.momentum_start=0.99 method.momentum_end=1.0")
        require("method.momentum_schedule", momentum_schedule, lambda v: v in SCHEDULES, f"must be {' or '.join(SCHEDULES)}",
                f"e.g. method.momentum_schedule={SCHEDULES[0]}")
        super().__init__(**base)
        self.momentum_start, self.momentum_end, self.momentum_schedule = momentum_start, momentum_end, momentum_schedule
        self.target = MomentumTarget(self.backbone, self.projector)
        self.register_buffer("target_momentum", torch.tensor(momentum_start, dtype=torch.float64))

    def configure_model(self) -> None:
        super().configure_model()
        if self.channels_last:
            self.target.backbone.to(memory_format=torch.channels_last)
        if self.compile_options is not None and not getattr(self, "_target_compiled", False):
            self.target.backbone.compile(**self.compile_options)
            self.target.projector.compile(**self.compile_options)
            self._target_compiled = True

    def embed_targets(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.target(view) for view in views[: target_view_count(views)]]

    def after_optimizer_step(self) -> None:
        """Move the target with the momentum of the step just taken (the k-th update, from 0, uses τ(k)), with no
        host read: the step counter and ``total_steps`` are host integers."""
        step = self.trainer.global_step if self._trainer is not None else 0  # not yet counted: the step just taken
        tau = momentum_at(step, self.total_steps or 1, self.momentum_start, self.momentum_end, self.momentum_schedule)
        self.target.update([self.backbone, self.projector], tau)
        self.target_momentum.fill_(tau)

    def log_loss(self, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        super().log_loss(total, parts)
        self.log(f"train/{self.name}/target_momentum", self.target_momentum.float())
