"""Per-step learning-rate schedules."""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """Multiplier for ``LambdaLR``: linear warm-up from ``warmup_start`` to 1, then cosine to ``final``.

    A callable object rather than a closure so that ``LambdaLR.state_dict()`` checkpoints it.
    """

    def __init__(self, total_steps: int, warmup_steps: int, final: float = 0.0, warmup_start: float = 0.0) -> None:
        self.total_steps, self.warmup_steps = max(1, total_steps), min(max(0, warmup_steps), max(0, total_steps - 1))
        self.final, self.warmup_start = final, warmup_start

    def retarget(self, total_steps: int, step: int) -> None:
        """Span ``total_steps`` from now on (``callbacks.budget``); a warm-up still under way at ``step`` keeps its
        fraction of the schedule, one that is over keeps its length."""
        if step < self.warmup_steps:
            self.warmup_steps = max(step, round(self.warmup_steps * total_steps / self.total_steps))
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(self.warmup_steps, max(0, self.total_steps - 1))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))


class Constant:
    """Multiplier 1 at every step: a group with ``static_lr`` (SimSiam's predictor) stays at its peak lr."""

    def __call__(self, step: int) -> float:
        return 1.0


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int = 1,
    warmup_epochs: float | None = None,
    warmup_fraction: float = 0.0,
    final_fraction: float = 0.0,
    warmup_start_lr: float | None = None,
    min_lr: float | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up for ``warmup_epochs`` (or ``warmup_fraction`` of training), then cosine down.

    The warm-up starts at 0, or at the absolute ``warmup_start_lr``; the cosine ends at ``final_fraction`` × each
    group's peak, or at the absolute ``min_lr``. Absolute values are not scaled with the batch: solo-learn and the
    official FroSSL code warm up from 3e-5 to the batch-scaled peak and end at 0. A group marked
    ``static_lr`` keeps its peak learning rate throughout (solo-learn's ``static_lr``: no warm-up, no decay).
    """
    if warmup_epochs is not None:
        steps = int(round(warmup_epochs * steps_per_epoch))
    else:
        steps = int(round(warmup_fraction * total_steps))
    multipliers = []
    for group in optimizer.param_groups:
        if group.get("static_lr"):
            multipliers.append(Constant())
            continue
        peak = group["lr"]
        start = warmup_start_lr / peak if warmup_start_lr is not None and peak > 0 else 0.0
        final = min_lr / peak if min_lr is not None and peak > 0 else final_fraction
        multipliers.append(WarmupCosine(total_steps, steps, final, start))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multipliers)
