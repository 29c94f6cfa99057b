"""The preemption path without SLURM (frossl_lit.runtime.preemption): a training process gets SIGUSR1 mid-run in a
fake SLURM job (``SLURM_JOB_ID`` set, a fake ``scontrol`` on PATH that records its arguments); it writes
``last.ckpt`` at the next step, calls ``scontrol requeue <id>`` and exits 0; the same command started again as
SLURM's restart (``SLURM_RESTART_COUNT=1``, no ``ckpt_path``, no ``resume.auto``) ends in the uninterrupted run's
state, bit for bit, with every logged step once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from frossl_lit.runtime.preemption import slurm_job_id
from frossl_lit.runtime.rundir import requeued
from tests.conftest import REPO, TINY
from tests.runtime.test_resume import _assert_same, _logged_steps, _run_state

# 2 epochs of 11 steps (digits at batch 128); only the signal writes a mid-epoch checkpoint
RUN = [o if o != "data.batch_size=64" else "data.batch_size=128" for o in TINY] + [
    "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "callbacks.knn=null", "callbacks.plots=null"]
STEPS = 2 * (1437 // 128)


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **extra}


def _fake_scontrol(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.calls\n')
    script.chmod(0o755)
    return bin_dir


@pytest.mark.slow  # ~30 s of three training processes: make test-full
def test_sigusr1_checkpoints_requeues_exits_and_the_restart_resumes_bit_for_bit(tmp_path):
    args = [sys.executable, "-m", "frossl_lit.train", *RUN]
    # the uninterrupted run, as a process too (in-process training differs in the last bits), beside the preempted one
    whole = subprocess.Popen([*args, f"hydra.run.dir={tmp_path}/whole"], cwd=REPO, env=_env(tmp_path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    fake_job = _env(tmp_path, SLURM_JOB_ID="4242", PATH=f"{_fake_scontrol(tmp_path)}:{os.environ['PATH']}")
    run_dir, calls = tmp_path / "preempted", tmp_path / "scontrol.calls"
    victim = subprocess.Popen([*args, f"hydra.run.dir={run_dir}"], cwd=REPO, env=fake_job, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    # the handlers are in place from the trainer's construction on; the csv directory appears just after it (the
    # loggers' hyperparameters): signal at a random moment from then on
    rng = np.random.default_rng()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None and not (run_dir / "csv").is_dir():
        time.sleep(0.02)
    time.sleep(float(rng.uniform(0.0, 0.6)))
    assert victim.poll() is None, "the run ended before the signal"
    victim.send_signal(signal.SIGUSR1)
    _, stderr = victim.communicate(timeout=120)

    assert victim.returncode == 0, stderr[-2000:]
    assert whole.wait(timeout=120) == 0, whole.stderr.read()[-2000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    last = run_dir / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=False, map_location="cpu")["global_step"]
    assert 0 <= stopped_at < STEPS
    assert f"SIGUSR1 received; saved {last} at step {stopped_at}" in stderr and "requeued SLURM job 4242" in stderr
    assert not (run_dir / "summary.json").exists()

    # SLURM's restart of the job: the same command, SLURM_RESTART_COUNT=1 -> continues from its own last.ckpt
    restarted = subprocess.run([*args, f"hydra.run.dir={run_dir}"], cwd=REPO, env={**fake_job, "SLURM_RESTART_COUNT": "1"},
                               capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    _assert_same(_run_state(last), _run_state(tmp_path / "whole" / "checkpoints" / "last.ckpt"))
    assert _logged_steps(run_dir) == _logged_steps(tmp_path / "whole") == list(range(STEPS))
    assert calls.read_text().split() == ["requeue", "4242"]  # no second requeue


@pytest.mark.slow
def test_without_slurm_the_signal_checkpoints_and_says_how_to_continue(tmp_path):
    """No SLURM job: SIGUSR2 still saves last.ckpt at the next step and stops (status 128 + 12), with the resume
    command; the same command with resume.auto=true finishes the run."""
    args = [sys.executable, "-m", "frossl_lit.train", *RUN, "trainer.max_epochs=1"]
    run_dir = tmp_path / "run"
    victim = subprocess.Popen([*args, f"hydra.run.dir={run_dir}"], cwd=REPO, env=_env(tmp_path), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None and not (run_dir / "csv").is_dir():
        time.sleep(0.02)
    victim.send_signal(signal.SIGUSR2)
    _, stderr = victim.communicate(timeout=120)
    if victim.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert victim.returncode == 128 + signal.SIGUSR2, stderr[-2000:]
    assert "SIGUSR2 received" in stderr and "resume.auto=true" in stderr
    resumed = subprocess.run([*args, "resume.auto=true", f"hydra.run.dir={run_dir}"], cwd=REPO, env=_env(tmp_path),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _logged_steps(run_dir) == list(range(STEPS // 2))


def test_a_restarted_slurm_job_resumes_by_itself_and_requeues_itself_by_its_own_id(monkeypatch):
    for name in ("SLURM_RESTART_COUNT", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert not requeued() and slurm_job_id() is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert not requeued()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert requeued()
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert slurm_job_id() == "17"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "16")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert slurm_job_id() == "16_1"  # an array task is requeued by its own name, not the whole array
