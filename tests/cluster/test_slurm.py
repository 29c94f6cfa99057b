"""On a real SLURM (this machine, brought up by tests/cluster/slurm.sh): `-m hydra/launcher=slurm` submits through
submitit, the jobs run with this environment's python and write their summaries, sacct lists them; a job preempted
mid-run (its warning signal) checkpoints, requeues itself and, started again by SLURM, ends bit for bit where an
uninterrupted twin ends, with every logged step once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, TINY
from tests.runtime.test_resume import _assert_same, _logged_steps, _run_state

pytestmark = pytest.mark.slow

# one CPU, 1 GB and no GPU per job (the 2-core test node runs two at once); a job stays under 10 minutes
LAUNCHER = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
JOB = [*TINY, "callbacks.knn=null", "callbacks.plots=null", "trainer.log_every_n_steps=1"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}


def _sweep(sweep_dir, *overrides) -> list[str]:
    return [sys.executable, "-m", "frossl_lit.train", *LAUNCHER, *JOB, *overrides, f"hydra.sweep.dir={sweep_dir}"]


def _array_job(sweep_dir) -> str:
    """The array job's id, from submitit's folders (``<sweep>/.submitit/<job>_<task>``)."""
    names = [p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    assert names, f"no submitit job folder in {sweep_dir}/.submitit"
    return names[0].split("_")[0]


def _sacct(job: str) -> list[tuple[str, str]]:
    """(JobID, State) of every segment of ``job``'s tasks (``-D``: a requeued task's earlier segments too)."""
    out = subprocess.run(["sacct", "-j", job, "-X", "-D", "-n", "-P", "-o", "JobID,State"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [tuple(line.split("|")[:2]) for line in out.stdout.split()]


def _sacct_eventually(job: str, expected: list[tuple[str, str]], timeout: float = 30) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout  # slurmctld hands finished jobs to slurmdbd asynchronously
    while True:
        rows = _sacct(job)
        if sorted(rows) == sorted(expected) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def test_slurm_is_up_with_this_machines_node(slurm):
    state = subprocess.run(["sinfo", "-h", "-o", "%T %c"], capture_output=True, text=True, check=True).stdout.split()
    assert state[0] in ("idle", "mixed", "allocated") and int(state[1]) == os.cpu_count(), state
    assert subprocess.run([str(slurm), "status"], capture_output=True).returncode == 0


def test_a_two_job_sweep_runs_under_slurm_and_sacct_lists_it(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    run = subprocess.run(_sweep(sweep, "trainer.max_epochs=1", "seed=0,1"), cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    for job_dir in ("0_frossl_digits", "1_frossl_digits"):
        assert (sweep / job_dir / "summary.json").is_file(), job_dir
    job = _array_job(sweep)
    assert _sacct_eventually(job, [(f"{job}_0", "COMPLETED"), (f"{job}_1", "COMPLETED")]) == [
        (f"{job}_0", "COMPLETED"), (f"{job}_1", "COMPLETED")]
    # the jobs ran with this environment's python (submitit starts `<the submitting python> -m submitit.core._submit`)
    script = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    assert f"{sys.executable} -u -m submitit.core._submit" in script


def test_a_job_preempted_mid_run_requeues_itself_and_ends_bit_for_bit(slurm, tmp_path):
    """Two identical jobs (seed=0,0): task 0 runs undisturbed, task 1 gets SLURM's warning signal (USR2, what
    `--signal=USR2@<signal_delay_s>` sends before a time limit or preemption) at a random moment of its training."""
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(_sweep(sweep, "trainer.max_epochs=3", "seed=0,0"), cwd=REPO, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim_dir = sweep / "1_frossl_digits"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and launcher.poll() is None and not (victim_dir / "csv").is_dir():
        time.sleep(0.1)
    assert launcher.poll() is None, launcher.stderr.read()[-3000:]
    time.sleep(float(np.random.default_rng().uniform(0.0, 8.0)))  # 66 steps take about 30 s on one core
    task = f"{_array_job(sweep)}_1"
    subprocess.run(["scancel", "--signal=USR2", task], check=True)

    # SLURM holds a requeued job until its credentials expire (2 minutes); start it now
    while time.monotonic() < deadline and launcher.poll() is None:
        pending = subprocess.run(["squeue", "-h", "-j", task, "-o", "%T %r"], capture_output=True, text=True).stdout
        if "PENDING" in pending and "BeginTime" in pending:
            subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True)
        time.sleep(1)
    try:
        _, stderr = launcher.communicate(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        launcher.send_signal(signal.SIGINT)
        subprocess.run(["scancel", task.split("_")[0]])
        pytest.fail("the sweep did not finish within 5 minutes")
    assert launcher.returncode == 0, stderr[-3000:]

    log = "".join(p.read_text() for p in (sweep / ".submitit" / task).glob("*_log.err"))
    found = re.search(r"SIGUSR2 received; saved \S+/last\.ckpt at step (\d+) and stopped; requeued SLURM job " + task, log)
    assert found, log[-3000:]
    assert 0 <= int(found.group(1)) < 66
    restarts = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts, restarts
    job = task.split("_")[0]
    rows = _sacct_eventually(job, [(f"{job}_0", "COMPLETED"), (task, "REQUEUED"), (task, "COMPLETED")])
    assert sorted(rows) == sorted([(f"{job}_0", "COMPLETED"), (task, "REQUEUED"), (task, "COMPLETED")]), rows

    whole, resumed = sweep / "0_frossl_digits", victim_dir
    _assert_same(_run_state(resumed / "checkpoints" / "last.ckpt"), _run_state(whole / "checkpoints" / "last.ckpt"))
    assert _logged_steps(resumed) == _logged_steps(whole) == list(range(66))
    assert not list(resumed.rglob("hpc_ckpt_*.ckpt"))  # Lightning's own SLURM requeue never ran
