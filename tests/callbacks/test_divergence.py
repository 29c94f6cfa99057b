"""A non-finite loss or norm-layer statistic stops the run with one line naming the step and the terms and a command
that carries on (or skips the step, counted), and the checkpoints keep finite weights
(frossl_lit.callbacks.DivergenceGuard)."""

from __future__ import annotations

import json
import re

import lightning as L
import pytest
import torch

from frossl_lit.runtime.checkpointing import DivergedError, non_finite_tensors
from frossl_lit.train import train
from tests.conftest import REPO, TINY, compose_config, run_cli, tiny_fit

EXPLODE = [*TINY, "schedule.optimizer.lr=1e6", "trainer.max_epochs=3", "callbacks.knn=null", "callbacks.labelfree=null"]


def test_a_diverging_run_stops_at_the_step_and_writes_no_non_finite_checkpoint(tmp_path):
    with pytest.raises(DivergedError, match=r"^non-finite values at step (\d+) \((train/loss, train/frossl/|the norm layers' running statistics)") as info:
        train(compose_config([*EXPLODE, "callbacks.divergence.check_every_n_steps=1"], tmp_path))
    assert "\n" not in str(info.value) and "callbacks.divergence.action=skip" in str(info.value)
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert non_finite_tensors(torch.load(path, weights_only=False, map_location="cpu")["state_dict"]) == [], path


def test_lr_1e6_on_digits_stops_in_the_first_epoch_and_last_ckpt_is_finite(tmp_path):
    """The acceptance (digits defaults: 5 steps per epoch, a check every 10 steps): the bad steps' updates were
    never applied, the epoch checkpoints hold finite weights, and the guard stops within the epoch that diverged."""
    with pytest.raises(DivergedError, match=r"^non-finite values at step (\d+) .* stopped at step (\d+)") as info:
        train(compose_config(["schedule.optimizer.lr=1e6", "callbacks.knn=null", "callbacks.labelfree=null", "trainer.enable_progress_bar=false"], tmp_path))
    bad_step, stop_step = map(int, re.search(r"at step (\d+) .* stopped at step (\d+)", str(info.value)).groups())
    assert bad_step // 5 == (stop_step - 1) // 5  # stopped in the epoch where it happened
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["global_step"] <= stop_step and non_finite_tensors(last["state_dict"]) == []


def test_skip_mode_trains_on_and_reports_how_many_steps_it_skipped(tmp_path):
    """At batch 256 the loss of lr=1e6 stays finite while BatchNorm's running variance overflows: such steps are
    skipped too, the statistics repaired, and every checkpoint is written."""
    summary = train(compose_config([*EXPLODE, "callbacks.divergence.action=skip", "trainer.max_epochs=2", "data.batch_size=256"], tmp_path))
    assert summary["skipped_steps"] > 0 and summary["global_step"] == 10
    assert summary["best_checkpoint"] and summary["last_checkpoint"] and (tmp_path / "summary.json").is_file()
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=False, map_location="cpu")
        assert non_finite_tensors(checkpoint["state_dict"]) == [], path
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["callbacks"]["DivergenceGuard"]["skipped_steps"] == summary["skipped_steps"]


def test_overflowing_norm_statistics_stop_the_run_naming_them(tmp_path):
    from frossl_lit.callbacks import DivergenceGuard

    class Overflow(L.Callback):  # a batch whose activations overflow BatchNorm's running variance at step 3
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 3:
                pl_module.backbone.features[1].running_var.fill_(float("inf"))

    with pytest.raises(DivergedError, match=r"^non-finite values at step 3 \(the norm layers' running statistics\)"):
        tiny_fit(tmp_path, [Overflow(), DivergenceGuard(check_every_n_steps=1)], max_steps=6)


def test_the_command_exits_1_with_one_line_and_a_command_that_carries_on(tmp_path, monkeypatch, capsys):
    """The train command as its console script runs it (in-process; the advice is run for real in the slow tests)."""
    from tests.test_bad_inputs import Row, run_row

    status = run_row(Row("diverges", tuple(o for o in EXPLODE if o not in TINY)), tmp_path, monkeypatch)
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "frossl_lit: error:" in line]
    assert status == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert len(errors) == 1 and "non-finite values at step" in errors[0]
    assert "To train at a tenth of the learning rate, start again: python -m frossl_lit.train" in errors[0]
    assert "schedule.optimizer.lr=1e+05 resume.overwrite=true hydra.run.dir=" in errors[0]


def _advice(stderr: str) -> list[str]:
    """The command a divergence message advises, as arguments."""
    import shlex

    line = next(line for line in stderr.splitlines() if "frossl_lit: error:" in line)
    command = re.search(r": (python -m frossl_lit\.train .*?) \(or skip such steps", line).group(1)
    return shlex.split(command)[3:]


@pytest.mark.slow  # two CLI runs, ~25 s
def test_the_advice_after_a_divergence_in_the_first_epoch_is_a_command_that_works(tmp_path):
    run = [*TINY, "schedule.optimizer.lr=1e5", "trainer.max_epochs=2", "data.batch_size=256", "callbacks.knn=null", f"hydra.run.dir={tmp_path}/run"]
    diverged = run_cli(run, cwd=tmp_path)
    assert diverged.returncode == 1, diverged.stderr[-3000:]
    advised = _advice(diverged.stderr)
    assert "schedule.optimizer.lr=1e+04" in advised and "resume.overwrite=true" in advised
    followed = run_cli(advised, cwd=tmp_path)
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["global_step"] == 10


class UnstableAbove(L.Callback):
    """A model that is unstable at learning rates above ``lr`` from optimizer step ``step`` on: its views turn NaN
    there, as an overflow would make them (a divergence a lower learning rate cures; a corrupt batch would not be:
    the same batch comes back at the same step of a resumed run)."""

    def __init__(self, step: int, lr: float) -> None:
        self.step, self.lr = step, lr

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and trainer.optimizers[0].param_groups[0]["lr"] > self.lr:
            for view in batch[0]:
                view.fill_(float("nan"))


@pytest.mark.slow  # two CLI runs, ~25 s
def test_the_advice_after_a_later_divergence_resumes_the_run_at_a_lower_lr(tmp_path):
    run = [*TINY, "trainer.max_epochs=3", "data.batch_size=256", "callbacks.knn=null", "+callbacks.unstable._target_=tests.callbacks.test_divergence.UnstableAbove",
           "+callbacks.unstable.step=6", "+callbacks.unstable.lr=1e-3", f"hydra.run.dir={tmp_path}/run"]
    diverged = run_cli(run, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert diverged.returncode == 1, diverged.stderr[-3000:]
    advised = _advice(diverged.stderr)
    assert {"schedule.optimizer.lr=0.0002", "resume.auto=true", "resume.override_schedule=true"} <= set(advised), advised
    stopped_at = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"]
    followed = run_cli(advised, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert followed.returncode == 0, followed.stderr[-3000:]
    assert "resuming with the new schedule from step" in followed.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_step"] == 15 > stopped_at and summary["epochs"] == 3


def test_the_guard_rejects_an_unknown_action():
    from frossl_lit.callbacks import DivergenceGuard

    with pytest.raises(ValueError, match="callbacks.divergence.action='halt' must be one of stop, skip"):
        DivergenceGuard(action="halt")
