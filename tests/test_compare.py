"""The study command (python -m frossl_lit.compare): tuning split, setting checks, an Optuna sweep on a label-free
metric, and a study killed halfway that continues to the same report."""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import WITH_LABELFREE, run_cli, tiny_digits

REPO = Path(__file__).resolve().parents[1]

# 2 methods x 2 trials x 2 seeds on digits, 3 epochs a run
STUDY = [
    "study.name=smoke", "study.tune.trials=2", "study.tune.startup_trials=1", "study.final.seeds=[0,1]",
    "study.thresholds=[0.9]",
    "study.base=['data=digits','schedule.max_epochs=3','trainer.enable_progress_bar=false','callbacks.plots=null',"
    "'callbacks.checkpoint_best=null','callbacks.spectrum=null']",
]


def test_the_tuning_split_is_carved_from_training_images_and_never_touches_the_reported_split():
    plain, tuned = tiny_digits(), tiny_digits()
    tuned.tune_fraction = 0.25
    plain.setup(), tuned.setup()
    train = [bytes(x.numpy()) for x in plain.train_set.images]
    tune = [bytes(x.numpy()) for x in tuned.val_set.images]
    pretrain = [bytes(x.numpy()) for x in tuned.train_set.images]
    assert len(tune) == math.ceil(0.25 * len(train)) and len(pretrain) + len(tune) == len(train)
    assert sorted(pretrain + tune) == sorted(train)  # tuning images are training images, pretraining keeps the rest
    assert torch.bincount(tuned.val_set.labels).min() > 0.8 * len(tune) / 10  # stratified


def _compare(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "frossl_lit.compare", *args], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def compare_here(args: list[str], monkeypatch, capsys, command: str = "compare") -> tuple[int, str]:
    """``python -m frossl_lit.<command> <args>`` in this process (its argv, its exit status, its stderr), without
    a new interpreter's imports; the real process is tested in test_bad_inputs.py."""
    main = importlib.import_module(f"frossl_lit.{command}").main
    monkeypatch.setattr(sys, "argv", [f"frossl_lit.{command}", *args])
    GlobalHydra.instance().clear()
    try:
        main()
        status = 0
    except SystemExit as stop:
        status = stop.code or 0
    finally:
        GlobalHydra.instance().clear()
    return status, capsys.readouterr().err


def test_a_study_dir_of_another_setting_is_refused_and_the_advice_works(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "study"
    status, err = compare_here([*STUDY, f"dir={study}", "phases=[]"], monkeypatch, capsys)
    assert status == 0, err
    status, err = compare_here([*STUDY, f"dir={study}", "phases=[]", "study.tune.seed=1"], monkeypatch, capsys)
    assert status == 2
    assert "study.tune.seed was 0, not 1" in err and "new directory" in err
    assert "Traceback" not in err
    status, err = compare_here([*STUDY, f"dir={tmp_path / 'new'}", "phases=[]", "study.tune.seed=1"], monkeypatch, capsys)
    assert status == 0, err
    status, err = compare_here([*STUDY, f"dir={study}", "phases=[]", "study.tune.trials=3"], monkeypatch, capsys)
    assert status == 0, err  # more trials extend a study


def test_a_study_another_compare_process_holds_is_refused_until_it_lets_go(tmp_path, monkeypatch, capsys):
    import fcntl

    monkeypatch.chdir(tmp_path)
    study = tmp_path / "study"
    study.mkdir()
    with open(study / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running compare holds it (another open file: refused)
        status, err = compare_here([*STUDY, f"dir={study}", "phases=[]"], monkeypatch, capsys)
    assert status == 2 and "another compare process is running this study" in err
    status, err = compare_here([*STUDY, f"dir={study}", "phases=[]"], monkeypatch, capsys)
    assert status == 0, err


@pytest.mark.parametrize("bad, says", [
    ("study.tune.trials=0", "study.tune.trials=0 must be a whole number >= 1"),
    ("study.final.seeds=[1,1]", "must be distinct whole numbers"),
    ("phases=[tunes]", "['tunes'] unknown"),
])
def test_bad_study_values_get_one_line(bad, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, err = compare_here([*STUDY, f"dir={tmp_path / 's'}", bad], monkeypatch, capsys)
    assert status == 2 and says in err and "Traceback" not in err


def test_an_optuna_sweep_maximises_a_label_free_metric(tmp_path, monkeypatch, capsys):
    """``optimized_metric=rankme`` through Hydra's Optuna sweeper: the best trial is the one with the largest RankMe."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    status, err = compare_here([
        "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
        "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={sweep}", "optimized_metric=rankme", *WITH_LABELFREE,
        "schedule.max_epochs=1", "trainer.max_steps=4", "callbacks.knn=null", "callbacks.plots=null", "callbacks.checkpoint_best=null",
        "callbacks.checkpoint_last=null", "trainer.enable_progress_bar=false",
        "method.invariance_weight=tag(log, interval(0.1, 4.0))",
    ], monkeypatch, capsys, command="train")
    assert status == 0, err[-3000:]
    rankmes = [json.loads(p.read_text())["rankme"] for p in sorted(sweep.glob("*/summary.json"))]
    assert len(rankmes) == 2 and all(r > 1 for r in rankmes)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(rankmes))


@pytest.mark.slow  # 13 s; the other Optuna sweep test keeps the sweeper's dependencies in make test
def test_an_optuna_sweep_on_a_figure_no_run_publishes_gets_one_line_naming_the_figures(tmp_path):
    result = run_cli([
        "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "optimized_metric=knn_top11", "trainer.max_steps=1", "callbacks.knn=null", "callbacks.labelfree=null",
        "callbacks.plots=null", "callbacks.checkpoint_best=null", "trainer.enable_progress_bar=false",
        "method.invariance_weight=interval(0.5, 1.0)",
    ], cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "optimized_metric=knn_top11 is not a figure of this run's summary" in result.stderr
    assert "'probe_top1'" in result.stderr  # what to name instead


def _results(study: Path) -> dict:
    report = json.loads((study / "report.json").read_text())
    return {key: report[key] for key in ("results", "paired", "rank_agreement", "trials")}


@pytest.mark.slow
def test_a_study_killed_halfway_continues_without_redoing_finished_runs_to_the_same_report(tmp_path):
    whole = tmp_path / "whole"
    uninterrupted = _compare([*STUDY, f"dir={whole}"], cwd=tmp_path)
    out, _ = uninterrupted.communicate(timeout=900)
    assert uninterrupted.returncode == 0, out[-3000:]
    report = (whole / "report.md").read_text()
    assert "| frossl | 2 |" in report and "| vicreg | 2 |" in report and (whole / "knn_curves.png").is_file()

    # kill the whole process group while VICReg's second trial is mid-run (its first checkpoint written)
    study = tmp_path / "killed"
    victim = study / "tuning" / "vicreg" / "trial_001"
    killed = _compare([*STUDY, f"dir={study}"], cwd=tmp_path)
    deadline = time.time() + 600
    while not (victim / "checkpoints" / "last.ckpt").is_file():
        assert killed.poll() is None and time.time() < deadline, killed.communicate()[0][-3000:]
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (victim / "summary.json").is_file()
    finished = {p: p.stat().st_mtime_ns for p in study.glob("**/summary.json")}
    assert len(finished) == 5  # frossl: 2 trials, 2 final runs; vicreg: its first trial

    resumed = _compare([*STUDY, f"dir={study}"], cwd=tmp_path)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-3000:]
    assert "vicreg: a trial was interrupted; it runs again from its last checkpoint" in out
    assert "vicreg: tuning trial 2/2 (resumed)" in out
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # no finished run was redone
    assert out.count("tuning trial") == 1 and out.count("final run") == 2
    assert _results(study) == _results(whole)
