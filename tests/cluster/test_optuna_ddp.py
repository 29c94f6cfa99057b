"""Optuna sweeps whose trials are DDP runs, and a killed sweep continued from its SQLite study.

Lightning starts rank 1 of a trial by re-running ``sys.argv``, which inside a sweep is the whole ``-m`` sweep:
without :mod:`frossl_lit.runtime.hydra_ddp` rank 1 would start its own study and trials (the problem of
lightning-hydra-template issue #639). ``hydra/sweeper=optuna_resumable`` (:mod:`frossl_lit.runtime.optuna_sweeps`)
makes ``n_trials`` the study's size, so the same command started again runs only what the study lacks.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, run_cli

pytestmark = pytest.mark.slow

DDP_TRIALS = [*TINY, "data.batch_size=32", "trainer=ddp", "trainer.devices=2", "trainer.max_steps=2",
              "trainer.max_epochs=1", "callbacks.spectrum=null", "optimized_metric=knn_top1",
              "method.invariance_weight=interval(0.5, 2)", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
              "hydra.sweeper.sampler.seed=1", "hydra.sweeper.study_name=s"]


def _trials(db: Path) -> list[tuple[int, str, float | None]]:
    """(number, state, value) of every trial, read with plain sqlite3 (Optuna 2.x schema)."""
    with sqlite3.connect(db, timeout=5) as connection:
        rows = connection.execute("SELECT t.number, t.state, v.value FROM trials t LEFT JOIN trial_values v "
                                  "ON v.trial_id = t.trial_id ORDER BY t.number").fetchall()
    return [(number, state, value) for number, state, value in rows]


def _params(db: Path, number: int) -> dict[str, float]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT p.param_name, p.param_value FROM trial_params p JOIN trials t "
                                  "ON p.trial_id = t.trial_id WHERE t.number = ?", (number,)).fetchall()
    return dict(rows)


def _jobs(sweep: Path) -> list[str]:
    return sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_optuna_trials_run_as_ddp_and_rank_0_reports(tmp_path):
    sweep, db = tmp_path / "sweep", tmp_path / "optuna.db"
    result = run_cli(["-m", "hydra/sweeper=optuna", *DDP_TRIALS, f"hydra.sweeper.storage=sqlite:///{db}",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert output.count("Study name: s") == 1  # rank 1 of each trial ran the trial, not a sweep of its own
    assert _jobs(sweep) == ["0_frossl_digits", "1_frossl_digits"]
    trials = _trials(db)
    assert [(n, s) for n, s, _ in trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
    for (_, _, value), job in zip(trials, _jobs(sweep)):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["global_step"] == 2
        assert value == pytest.approx(summary["knn_top1"])  # the value Optuna got is rank 0's figure
        assert (sweep / job / "train_ddp_process_1.log").is_file()  # rank 1 logged into its trial's directory


def test_a_killed_sweep_continues_with_the_trials_it_lacks(tmp_path):
    sweep, db = tmp_path / "sweep", tmp_path / "optuna.db"
    # optuna_resumable has n_jobs=1: each trial is told COMPLETE as soon as it ends
    args = ["-m", "hydra/sweeper=optuna_resumable", *DDP_TRIALS, f"hydra.sweeper.storage=sqlite:///{db}",
            f"hydra.sweep.dir={sweep}", "resume.auto=true"]
    env = {**os.environ, "WANDB_MODE": "", "PYTHONWARNINGS": "ignore"}
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "frossl_lit.train", *args], cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    states = [state for _, state, _ in _trials(db)] if db.is_file() else []
                except sqlite3.OperationalError:  # locked or not created yet
                    states = []
                if states[:2] == ["COMPLETE", "RUNNING"] and (sweep / "1_frossl_digits" / ".hydra").is_dir():
                    break  # the second trial has started training
                time.sleep(0.05)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the sweep and its trial's DDP rank 1
            process.wait()
    assert [state for _, state, _ in _trials(db)] == ["COMPLETE", "RUNNING"], (tmp_path / "first.log").read_text()[-3000:]

    result = run_cli(args, cwd=tmp_path)  # the same command again
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _trials(db)
    assert [(n, s) for n, s, _ in trials] == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE")]
    assert _params(db, 2) == _params(db, 1)  # the interrupted setting ran again
    assert _jobs(sweep) == ["0_frossl_digits", "1_frossl_digits", "2_frossl_digits"]  # job k is trial k
    summary = json.loads((sweep / "2_frossl_digits" / "summary.json").read_text())
    assert summary["world_size"] == 2 and trials[2][2] == pytest.approx(summary["knn_top1"])
    assert not (sweep / "1_frossl_digits" / "summary.json").exists()

    again = run_cli(args, cwd=tmp_path)  # a finished study: nothing left to run
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_trials(db)) == 3
