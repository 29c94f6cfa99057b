"""A wall-clock budget that is the schedule: the run measures its own speed and fits the length of its
learning-rate schedule, its momentum schedules and its evaluations to the time it has, so it always ends annealed
and evaluated inside the budget, on whatever machine it runs (``callbacks.budget``)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L

from frossl_lit.callbacks.schedule import ScheduledEvaluation
from frossl_lit.optim.schedules import WarmupCosine
from frossl_lit.runtime.errors import UserError, number, positive_int, require


class EpochEnds:
    """What an epoch's end costs (validation, the evaluations that run after it, the loader's restart), measured
    per set of scheduled evaluations that run then: a key holds one ``1`` / ``0`` per ``ScheduledEvaluation`` of
    the run (e.g. ``"10"``: the label-free figures every epoch, the kNN pass every second epoch not this time), so
    a run whose evaluations have different periods prices each kind of epoch end by its own measurement."""

    def __init__(self, measured: dict[str, float] | None = None, first_gap: float | None = None) -> None:
        self.measured = dict(measured or {})
        self.first_gap = first_gap  # fit start -> first step: every at_start evaluation + the loader's start

    def record(self, key: str, seconds: float) -> None:
        self.measured[key] = seconds

    def cost(self, key: str) -> float:
        """The measured cost of ``key``; unmeasured: the cheapest measured end that ran at least the same
        evaluations, else the gap before the first step (it ran every evaluation), else the dearest end measured."""
        if key in self.measured:
            return self.measured[key]
        covering = [v for k, v in self.measured.items() if all(b >= a for a, b in zip(key, k))]
        if covering:
            return min(covering)
        if self.first_gap is not None:
            return self.first_gap
        return max(self.measured.values(), default=0.0)


def plan_steps(seconds_left: float, step: int, steps_per_epoch: int, step_seconds: float, end_cost,
               final_eval: float) -> int:
    """The total number of optimizer steps the run can take from ``step`` with ``seconds_left``: whole epochs while
    they fit (the end of epoch e costs ``end_cost(e)`` seconds), then the steps of a last partial epoch, keeping
    ``final_eval`` seconds for the evaluation that follows the last step. Never fewer than ``step + 1``."""
    left = seconds_left - final_eval
    done_in_epoch = step % steps_per_epoch
    epoch = step // steps_per_epoch
    total = step
    while True:
        room = steps_per_epoch - done_in_epoch
        if room * step_seconds > left:
            total += max(0, int(left / step_seconds))
            break
        left -= room * step_seconds
        total += room
        end = end_cost(epoch)
        if end >= left:  # the epoch's end is the run's end: its evaluation is the final one
            break
        left -= end
        epoch, done_in_epoch = epoch + 1, 0
    return max(total, step + 1)


class TimeBudget(L.Callback):
    """Inactive with neither ``seconds`` nor ``steps`` (the default). Ends the run after ``seconds`` of wall-clock (counted from the run's construction, over every segment of a
    resumed run), with its schedule fitted to that length.

    It times ``skip_steps`` then ``calibration_steps`` training steps and plans the total number of steps
    (:func:`plan_steps`), then plans again at the start of every epoch with the last epoch's step time and the
    measured cost of each kind of epoch end (:class:`EpochEnds`: per set of scheduled evaluations that run then). Each plan sets
    the run's ``total_steps`` (momentum and temperature schedules), the span of every warm-up + cosine schedule
    (the method's and a probe's on the pretraining schedule; a warm-up still under way keeps its fraction), and
    ``max_epochs``; the run stops at the planned step, where the cosine ends, and its evaluations run then.
    ``trainer.max_time`` stays a backstop. Under DDP rank 0's plan is broadcast, so every rank stops at the same step.

    ``steps`` fixes the plan instead (no timing): a budgeted run's ``budget_planned_steps`` from its summary makes
    the same schedule again, bit for bit. The plan and the clock are checkpointed; a resumed run keeps planning
    with the time it has left.
    """

    def __init__(self, seconds: float | None = None, steps: int | None = None, calibration_steps: int = 20,
                 skip_steps: int = 5, reserve_seconds: float = 10.0) -> None:
        require("callbacks.budget.seconds", seconds, lambda v: v is None or (number(v) and v > 0),
                "must be a positive number of seconds", "e.g. callbacks.budget.seconds=540")
        require("callbacks.budget.steps", steps, lambda v: v is None or positive_int(v),
                "must be a positive number of optimizer steps or null", "e.g. callbacks.budget.steps=null")
        if seconds is not None and steps is not None:
            raise UserError("callbacks.budget: give seconds (a wall-clock budget) or steps (a fixed plan), not both: "
                            "e.g. callbacks.budget.steps=null")
        require("callbacks.budget.calibration_steps", calibration_steps, positive_int, "must be >= 1",
                "e.g. callbacks.budget.calibration_steps=20")
        require("callbacks.budget.skip_steps", skip_steps, lambda v: positive_int(v) or v == 0, "must be >= 0",
                "e.g. callbacks.budget.skip_steps=5")
        require("callbacks.budget.reserve_seconds", reserve_seconds, lambda v: number(v) and v >= 0, "must be >= 0",
                "e.g. callbacks.budget.reserve_seconds=10")
        self.seconds, self.fixed_steps = seconds, steps
        self.calibration_steps, self.skip_steps, self.reserve = calibration_steps, skip_steps, float(reserve_seconds)
        self.planned_steps: int | None = None
        self.plans: list[list[int]] = []  # [at step, planned total] of every plan
        self._clock_start = time.monotonic()
        self._earlier = 0.0  # seconds of the budget spent by earlier segments (a resumed run)
        self._fit_start = self._last_batch_end = None
        self._reference: tuple[float, int] | None = None  # (time, global step) the step time is measured from
        self._ends = EpochEnds()
        self._step_seconds: float | None = None

    def elapsed(self) -> float:
        return self._earlier + time.monotonic() - self._clock_start

    @staticmethod
    def _end_key(trainer: L.Trainer):
        """epoch -> which scheduled evaluations run after it (an :class:`EpochEnds` key)."""
        periods = [c.every_n_epochs for c in trainer.callbacks if isinstance(c, ScheduledEvaluation)]
        return lambda epoch: "".join("1" if (epoch + 1) % n == 0 else "0" for n in periods)

    @property
    def active(self) -> bool:
        return self.seconds is not None or self.fixed_steps is not None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.fixed_steps is not None:  # before the first step: the whole schedule spans the plan
            self._plan(trainer, pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not self.active:  # neither seconds nor steps: the schedule's epochs, untouched
            return
        now = time.monotonic()
        if self._ends.first_gap is None and self._fit_start is not None:
            self._ends.first_gap = now - self._fit_start
        if batch_idx == 0 and self._last_batch_end is not None and self.fixed_steps is None:
            previous = trainer.current_epoch - 1  # its end, measured: validation, evaluations, the loader's restart
            self._ends.record(self._end_key(trainer)(previous), now - self._last_batch_end)
            ref_time, ref_step = self._reference
            if trainer.global_step > ref_step:
                self._step_seconds = (self._last_batch_end - ref_time) / (trainer.global_step - ref_step)
            self._plan(trainer, pl_module)
        if self._reference is None or (batch_idx == 0 and trainer.current_epoch > 0):
            self._reference = (now, trainer.global_step)  # epoch 0 re-anchors after its first steps (compilation)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.active:
            return
        self._last_batch_end = now = time.monotonic()
        step = trainer.global_step
        if self.planned_steps is None and self.fixed_steps is None:
            if step == self.skip_steps:
                self._reference = (now, step)
            elif step == self.skip_steps + self.calibration_steps:
                self._step_seconds = (now - self._reference[0]) / (step - self._reference[1])
                self._plan(trainer, pl_module)
        if self.planned_steps is not None and step >= self.planned_steps:
            trainer.should_stop = True

    def _plan(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        steps_per_epoch = max(1, trainer.num_training_batches // trainer.accumulate_grad_batches)
        if self.fixed_steps is not None:
            total = self.fixed_steps
        elif self._step_seconds is None:
            return
        else:
            key = self._end_key(trainer)
            final = self._ends.cost("1" * len(key(0)))  # the last epoch's end (or a mid-epoch stop) runs them all
            left = self.seconds - self.elapsed() - self.reserve
            total = plan_steps(left, step, steps_per_epoch, self._step_seconds, lambda e: self._ends.cost(key(e)), final)
            total = int(trainer.strategy.broadcast(total, src=0))  # every rank stops at rank 0's step
        self.planned_steps = max(total, step + 1)
        self.plans.append([step, self.planned_steps])
        retarget(trainer, pl_module, self.planned_steps, step)
        trainer.fit_loop.max_epochs = math.ceil(self.planned_steps / steps_per_epoch)

    def summary(self) -> dict[str, Any]:
        if not self.active:
            return {}
        return {"budget_seconds": self.seconds, "budget_planned_steps": self.planned_steps,
                "budget_plans": [list(p) for p in self.plans], "budget_step_seconds": self._step_seconds,
                "budget_epoch_end_seconds": dict(self._ends.measured)}

    def state_dict(self) -> dict[str, Any]:
        if not self.active:
            return {}
        return {"elapsed": self.elapsed(), "planned_steps": self.planned_steps, "plans": self.plans,
                "step_seconds": self._step_seconds, "ends": dict(self._ends.measured),
                "first_gap": self._ends.first_gap}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._earlier, self._clock_start = float(state_dict["elapsed"]), time.monotonic()
        self.planned_steps, self.plans = state_dict["planned_steps"], [list(p) for p in state_dict["plans"]]
        self._step_seconds = state_dict["step_seconds"]
        self._ends = EpochEnds(state_dict["ends"], state_dict["first_gap"])


def retarget(trainer: L.Trainer, pl_module: L.LightningModule, total_steps: int, step: int) -> None:
    """Make every warm-up + cosine schedule of the run (and its ``total_steps``) span ``total_steps``."""
    schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
    schedulers += [c.scheduler for c in trainer.callbacks if getattr(c, "scheduler", None) is not None]
    multipliers = [m for s in schedulers for m in getattr(s, "lr_lambdas", []) if isinstance(m, WarmupCosine)]
    if not multipliers and trainer.lr_scheduler_configs:
        raise UserError("callbacks.budget fits a warm-up + cosine schedule to the time it has, and this run's "
                        "schedule.lr_scheduler is another: use frossl_lit.optim.schedules.warmup_cosine, or "
                        "callbacks.budget=null")
    for multiplier in multipliers:
        multiplier.retarget(total_steps, step)
    pl_module.total_steps = total_steps
