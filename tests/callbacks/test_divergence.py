"""A non-finite loss stops the run with one line naming the step and the terms (or skips the step, counted), and
the checkpoints keep finite weights (frossl_lit.callbacks.DivergenceGuard)."""

from __future__ import annotations

import re

import pytest
import torch

from frossl_lit.checkpointing import DivergedError, non_finite_tensors
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, run_cli

EXPLODE = [*TINY, "schedule.optimizer.lr=1e6", "trainer.max_epochs=3", "callbacks.knn=null", "callbacks.labelfree=null"]


def test_a_diverging_run_stops_at_the_step_and_writes_no_non_finite_checkpoint(tmp_path):
    with pytest.raises(DivergedError, match=r"^non-finite loss at step (\d+) \(train/loss, train/frossl/") as info:
        train(compose_config([*EXPLODE, "callbacks.divergence.check_every_n_steps=1"], tmp_path))
    assert "\n" not in str(info.value) and "callbacks.divergence.action=skip" in str(info.value)
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert non_finite_tensors(torch.load(path, weights_only=False, map_location="cpu")["state_dict"]) == [], path


def test_lr_1e6_on_digits_stops_in_the_first_epoch_and_last_ckpt_is_finite(tmp_path):
    """The acceptance (digits defaults: 5 steps per epoch, a check every 10 steps): the bad steps' updates were
    never applied, the epoch checkpoints hold finite weights, and the guard stops within the epoch that diverged."""
    with pytest.raises(DivergedError, match=r"^non-finite loss at step (\d+) .* stopped at step (\d+)") as info:
        train(compose_config(["schedule.optimizer.lr=1e6", "callbacks.knn=null", "callbacks.labelfree=null", "trainer.enable_progress_bar=false"], tmp_path))
    bad_step, stop_step = map(int, re.search(r"at step (\d+) .* stopped at step (\d+)", str(info.value)).groups())
    assert bad_step // 5 == (stop_step - 1) // 5  # stopped in the epoch where it happened
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["global_step"] <= stop_step and non_finite_tensors(last["state_dict"]) == []


def test_skip_mode_trains_on_and_reports_how_many_steps_it_skipped(tmp_path):
    summary = train(compose_config([*EXPLODE, "callbacks.divergence.action=skip", "trainer.max_epochs=2"], tmp_path))
    assert summary["skipped_steps"] > 0 and summary["global_step"] == 44
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert non_finite_tensors(last["state_dict"]) == []
    assert last["callbacks"]["DivergenceGuard"]["skipped_steps"] == summary["skipped_steps"]


def test_the_cli_exits_non_zero_with_one_line(tmp_path):
    result = run_cli([*EXPLODE, f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, timeout=300)
    errors = [line for line in result.stderr.splitlines() if "frossl_lit: error:" in line]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and "non-finite loss at step" in errors[0]


def test_the_guard_rejects_an_unknown_action():
    from frossl_lit.callbacks import DivergenceGuard

    with pytest.raises(ValueError, match="callbacks.divergence.action='halt' must be one of stop, skip"):
        DivergenceGuard(action="halt")
