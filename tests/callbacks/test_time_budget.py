"""callbacks.budget (frossl_lit.callbacks.TimeBudget): the plan's arithmetic against a brute-force search, a fixed
plan's schedule against the warm-up + cosine formula written out here, the run ending annealed and evaluated inside
a wall-clock budget, bit-exact resume of a planned run, and the wrong values."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest

from frossl_lit.callbacks.time_budget import EpochEnds, TimeBudget, plan_steps
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, run_cli
from tests.runtime.test_resume import SHORT, STEPS, _logged, assert_resumes_bit_for_bit

STEPS_PER_EPOCH = 1437 // 64  # digits' training split at batch 64 (drop_last)


def _brute_force(seconds, step, per_epoch, step_seconds, end_cost, final):
    """The most steps S whose cost fits: (S - step) steps, every epoch end strictly before S (each at its own
    cost), and the final evaluation after S."""
    def cost(total):
        ends = [e for e in range(step // per_epoch, total // per_epoch + 1) if step < (e + 1) * per_epoch < total]
        return (total - step) * step_seconds + sum(end_cost(e) for e in ends) + final
    best = step + 1
    for total in range(step + 1, step + 10_000):
        if cost(total) <= seconds:
            best = total
    return best


@pytest.mark.parametrize("seconds,step,per_epoch,step_seconds,ends,every", [
    (100.0, 0, 10, 1.0, (5.0, 2.0), 2),
    (100.0, 7, 10, 1.0, (5.0, 2.0), 1),
    (37.5, 3, 22, 0.25, (4.0, 0.5), 3),
    (1000.0, 120, 176, 1.1, (30.0, 6.0), 2),
    (10.0, 0, 10, 1.0, (5.0, 5.0), 1),  # not even the first epoch fits
    (1.0, 50, 10, 1.0, (5.0, 5.0), 1),  # nothing fits: one more step
])
def test_the_plan_is_the_most_steps_that_fit(seconds, step, per_epoch, step_seconds, ends, every):
    end_cost = lambda epoch: ends[0] if (epoch + 1) % every == 0 else ends[1]
    final = ends[0]
    assert plan_steps(seconds, step, per_epoch, step_seconds, end_cost, final) == _brute_force(
        seconds, step, per_epoch, step_seconds, end_cost, final)


def test_each_kind_of_epoch_end_is_priced_by_its_own_measurement():
    """Evaluations of different periods (label-free every epoch, kNN every second): the ends with the kNN pass and
    those without are kept apart, where one with/without flag let the last measurement of either overwrite the
    other (a laptop run's plans swung by ~500 steps from epoch to epoch). An unmeasured kind is priced by the
    cheapest measured end that ran at least its evaluations, else by the gap before the first step."""
    ends = EpochEnds(first_gap=20.0)
    assert ends.cost("11") == 20.0 and ends.cost("10") == 20.0
    ends.record("10", 1.5)
    assert ends.cost("10") == 1.5 and ends.cost("00") == 1.5 and ends.cost("11") == 20.0 and ends.cost("01") == 20.0
    ends.record("11", 12.0)
    ends.record("10", 1.7)
    assert ends.cost("11") == 12.0 and ends.cost("10") == 1.7 and ends.cost("01") == 12.0
    assert EpochEnds({"10": 2.0}).cost("11") == 2.0  # nothing covers it and no first gap: the dearest measured


def _last_step(run_dir, metric) -> int:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return max(int(row["step"]) for row in csv.DictReader(handle) if row.get(metric))


def _warmup_cosine(step, total, warmup, final=0.01):
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def test_a_fixed_plan_spans_the_schedule_stops_there_and_evaluates_the_last_weights(tmp_path):
    planned = STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2  # ends mid-epoch 2
    summary = train(compose_config([*TINY, "trainer.max_epochs=4", "trainer.log_every_n_steps=1",
                                    f"callbacks.budget.steps={planned}"], tmp_path))
    assert summary["global_step"] == planned == summary["budget_planned_steps"]
    assert summary["budget_plans"] == [[0, planned]]
    configured = 4 * STEPS_PER_EPOCH  # the schedule built from max_epochs, re-spanned before the first step
    warmup = round(round(0.1 * configured) * planned / configured)
    lrs = _logged(tmp_path, "lr-AdamW/pg1")
    assert len(lrs) == planned
    for step, lr in enumerate(lrs):
        assert lr == pytest.approx(2e-3 * _warmup_cosine(step, planned, warmup), rel=1e-6), step
    assert _last_step(tmp_path, "val/knn_top1") == _last_step(tmp_path, "train/loss")  # kNN of the final weights


@pytest.mark.slow  # ~30 s, and its wall-clock check wants the cores to itself
def test_a_wall_clock_budget_ends_annealed_and_evaluated_inside_it(tmp_path):
    budget = 20.0
    result = run_cli([*TINY, "trainer.max_epochs=1", f"callbacks.budget.seconds={budget}", "callbacks.budget.reserve_seconds=2",
                      "callbacks.budget.calibration_steps=10", "callbacks.knn.every_n_epochs=2",
                      f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    planned = summary["budget_planned_steps"]
    assert summary["global_step"] == planned > STEPS_PER_EPOCH  # max_epochs=1 was only the first guess
    assert summary["wall_seconds"] <= budget * 1.25, summary  # inside the budget (a loaded machine: some slack)
    lrs = _logged(tmp_path, "lr-AdamW/pg1")
    assert lrs[-1] == pytest.approx(2e-3 * 0.01, rel=0.05)  # the cosine ran to its end
    assert _last_step(tmp_path, "val/knn_top1") == _last_step(tmp_path, "train/loss")
    ends = summary["budget_epoch_end_seconds"]  # the ends with the kNN pass and those without, apart
    assert len(ends) >= 2 and len({len(key) for key in ends}) == 1, ends


def test_a_planned_run_stopped_mid_epoch_resumes_bit_for_bit(tmp_path):
    run = [*SHORT, "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null",
           "trainer.max_epochs=3", f"callbacks.budget.steps={STEPS}"]
    stopped, _ = assert_resumes_bit_for_bit(run, tmp_path)
    assert stopped["schedule"][0]["lr_lambdas"][0]["total_steps"] == STEPS


@pytest.mark.parametrize("kwargs,key", [
    ({"seconds": -5}, "callbacks.budget.seconds"),
    ({"seconds": "soon"}, "callbacks.budget.seconds"),
    ({"steps": 0}, "callbacks.budget.steps"),
    ({"steps": 2.5}, "callbacks.budget.steps"),
    ({"seconds": 60, "calibration_steps": 0}, "callbacks.budget.calibration_steps"),
    ({"seconds": 60, "skip_steps": -1}, "callbacks.budget.skip_steps"),
    ({"seconds": 60, "reserve_seconds": -1}, "callbacks.budget.reserve_seconds"),
])
def test_a_wrong_value_names_its_key(kwargs, key):
    with pytest.raises(UserError, match=re.escape(key)):
        TimeBudget(**kwargs)


def test_seconds_and_steps_together_are_refused_and_the_advice_works(tmp_path):
    both = [*TINY, "trainer.max_epochs=1", "callbacks.budget.seconds=4", "callbacks.budget.steps=5",
            "callbacks.budget.calibration_steps=3", "callbacks.budget.reserve_seconds=0"]
    with pytest.raises(UserError, match=r"not both: e\.g\. callbacks\.budget\.steps=null"):
        train(compose_config(both, tmp_path / "a"))
    summary = train(compose_config([*both, "callbacks.budget.steps=null"], tmp_path / "b"))
    assert summary["budget_planned_steps"] == summary["global_step"]
