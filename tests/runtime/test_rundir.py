"""A run directory has one owner (frossl_lit.runtime.rundir): a lock while a run uses it, and an earlier run in it is
continued, deleted or refused only as the user says."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from omegaconf import OmegaConf

from frossl_lit.runtime import rundir
from frossl_lit.runtime.errors import UserError


def _finished_run(directory):
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (directory / "csv").mkdir()
    (directory / "csv" / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    (directory / "summary.json").write_text(json.dumps({"method": "frossl", "data": "digits", "epochs": 8,
                                                         "global_step": 40, "knn_top1": 0.95}))
    (directory / "notes.txt").write_text("mine")
    return directory


def test_a_free_directory_is_claimed_and_released(tmp_path):
    run = tmp_path / "run"
    assert rundir.claim(run) is True
    assert rundir.claim(run) is False  # this process owns it already
    owner = json.loads((run / rundir.LOCK_NAME).read_text())
    assert owner["pid"] > 0 and "command" in owner
    rundir.release(run)
    assert rundir.claim(run) is True  # the lock file stays, unlocked: free again
    rundir.release(run)


def test_a_directory_another_process_runs_in_is_refused_naming_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, json, os, sys, time
        fd = os.open({str(run / rundir.LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"pid": os.getpid(), "started": time.time(), "command": "python -m frossl_lit.train"}}).encode())
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError) as info:
            rundir.claim(run)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"hydra.run.dir={run.resolve()} is in use by process {holder.pid}")
        assert "python -m frossl_lit.train" in message and "choose another directory" in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert rundir.claim(run) is True  # the holder ended: its lock went with it (no stale lock to clean)
    rundir.release(run)


def test_a_directory_holding_a_run_is_refused_and_each_way_out_works(tmp_path):
    run = _finished_run(tmp_path / "run")
    with pytest.raises(UserError) as info:
        rundir.claim(run)
    message = str(info.value)
    assert "\n" not in message
    assert "already holds a finished run of frossl on digits: 8 epochs, step 40, knn_top1 0.950" in message
    for advice in ("resume.auto=true", "resume.overwrite=true", "hydra.run.dir=..."):
        assert advice in message
    assert (run / "summary.json").is_file()  # refused: nothing touched, and not left locked
    assert rundir.claim(run, auto=True) is True  # continue it
    rundir.release(run)
    assert rundir.claim(run, ckpt_path=str(run / "checkpoints" / "last.ckpt")) is True  # an explicit resume of it
    rundir.release(run)
    with pytest.raises(UserError, match="already holds"):  # a checkpoint of another directory is no resume of this one
        rundir.claim(run, ckpt_path=str(tmp_path / "other" / "checkpoints" / "last.ckpt"))
    with pytest.raises(UserError, match="contradict each other"):
        rundir.claim(run, auto=True, overwrite=True)
    assert rundir.claim(run, overwrite=True) is True  # afresh: the run's files go, the user's stay
    rundir.release(run)
    assert sorted(p.name for p in run.iterdir()) == [rundir.LOCK_NAME, "notes.txt"]
    assert rundir.describe_run(run) is None


def test_a_directory_with_only_the_config_of_a_refused_run_is_free(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    assert rundir.describe_run(run) is None
    assert rundir.claim(run) is True
    rundir.release(run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert rundir.describe_run(run).startswith("an unfinished run with 1 checkpoint(s) (last.ckpt)")


@pytest.mark.parametrize("where", ["through_a_file", "proc"])
def test_a_run_directory_that_cannot_be_made_is_one_line(where, tmp_path):
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "a_file" / "run" if where == "through_a_file" else "/proc/frossl_lit_run"
    with pytest.raises(UserError, match=r"^hydra\.run\.dir=.* cannot be used as a run directory \(.+\); choose a writable"):
        rundir.claim(target)


def test_other_ranks_claim_nothing(tmp_path, monkeypatch):
    run = _finished_run(tmp_path / "run")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rundir.claim(run) is False and not (run / rundir.LOCK_NAME).exists()


def test_a_sweep_directory_holding_runs_is_refused_before_the_first_job(tmp_path, capsys):
    _finished_run(tmp_path / "sweep" / "0_frossl_digits")
    guard = rundir.RunDirGuard()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}, "resume": {"auto": False, "overwrite": False}})
    with pytest.raises(SystemExit) as stop:
        guard.on_multirun_start(config)
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "hydra.sweep.dir=" in lines[0] and "0_frossl_digits" in lines[0] and "resume.auto=true" in lines[0]
    config.resume.auto = True
    guard.on_multirun_start(config)  # continuing the sweep's jobs is allowed


@pytest.mark.slow  # two CLI runs at once, ~20 s
def test_two_runs_started_at_once_into_one_directory_one_runs_the_other_is_refused(tmp_path):
    import csv
    import os

    from tests.conftest import REPO, TINY

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
    run = tmp_path / "shared"
    processes = [subprocess.Popen([sys.executable, "-m", "frossl_lit.train", *TINY, "trainer.max_epochs=2", "callbacks.knn=null",
                                   f"seed={seed}", f"hydra.run.dir={run}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = 1 + [code for code, _ in results].index(0)
    refusal = next(err for code, err in results if code == 2)
    lines = [line for line in refusal.splitlines() if line.strip()]
    assert len(lines) == 1 and ("is in use by process" in lines[0] or "already holds a finished run" in lines[0]), refusal
    # the directory is the winner's alone: its config, its summary, each step logged once
    assert f"seed={winner}" in (run / ".hydra" / "overrides.yaml").read_text()
    assert json.loads((run / "summary.json").read_text())["global_step"] == 44
    steps = [int(row["step"]) for row in csv.DictReader((run / "csv" / "metrics.csv").open()) if row.get("train/loss")]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert steps == sorted(set(steps)) and len(names) == 2 and names[0].startswith("best-epoch") and names[1] == "last.ckpt"
