"""The entry point end to end: the real CLI in subprocesses, resume in process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from frossl_lit.train import train
from tests.conftest import REPO, TINY, WITH_LABELFREE, compose_config, run_cli


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow  # 11 s; the CLI path runs in test_checks and test_compare too
def test_fast_dev_run_through_the_cli(tmp_path):
    result = run_cli([*TINY, "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(tmp_path / "run")
    assert summary["method"] == "frossl" and summary["knn_top1_init"] > 0.3
    assert summary["global_step"] == 1


def test_short_run_writes_summary_metrics_and_checkpoints(tmp_path):
    cfg = compose_config([*TINY, "trainer.max_epochs=2", "data.batch_size=128"], tmp_path)
    summary = train(cfg)
    for key in ("probe_top1", "knn_top1", "knn_top1_init", "epochs", "wall_seconds", "run_dir"):
        assert summary[key] is not None, key
    assert summary["epochs"] == 2 and 0 <= summary["probe_top1"] <= 1
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "spectrum.npz").is_file()
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    for metric in ("train/loss", "train/frossl/regularizer", "train/frossl/invariance", "val/probe_top1", "val/knn_top1", "val/knn_train_seconds", "train/effective_rank"):
        assert metric in header, metric


def test_resume_continues_epochs_probe_and_knn_state(tmp_path):
    adam_probe = ["callbacks.probe.optimizer._target_=torch.optim.Adam", "~callbacks.probe.optimizer.momentum", "callbacks.probe.optimizer.lr=1e-3"]
    first = compose_config([*TINY, *adam_probe, "trainer.max_epochs=2", "data.batch_size=128"], tmp_path / "first")
    summary = train(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False, map_location="cpu")
    steps_per_epoch = saved["global_step"] // 2
    probe_steps = saved["callbacks"]["OnlineLinearProbe"]["optimizer"]["state"][0]["step"]
    assert int(probe_steps) == saved["global_step"]

    resumed = compose_config([*TINY, *adam_probe, "trainer.max_epochs=3", "data.batch_size=128", "resume.override_schedule=true", f"ckpt_path={last}"], tmp_path / "second")
    resumed_summary = train(resumed)
    assert resumed_summary["epochs"] == 3
    assert resumed_summary["global_step"] == saved["global_step"] + steps_per_epoch
    assert resumed_summary["knn_top1_init"] == summary["knn_top1_init"]  # not re-measured on resume
    after = torch.load(tmp_path / "second" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    # the probe's optimizer continued counting from the checkpoint instead of starting again
    assert int(after["callbacks"]["OnlineLinearProbe"]["optimizer"]["state"][0]["step"]) == resumed_summary["global_step"]


@pytest.mark.slow  # 10-14 s; in make test as rows of tests/test_bad_inputs.py (in-process)
def test_missing_cifar_fails_fast_with_one_clear_message(tmp_path):
    result = run_cli(["data=cifar10", f"paths.data_dir={tmp_path}/nothing", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "CIFAR10 not found" in result.stderr and "data.root=" in result.stderr and "data.download=true" in result.stderr


@pytest.mark.slow  # 11 s; in make test as a row of tests/test_bad_inputs.py (in-process)
def test_bad_config_value_gets_a_clear_message(tmp_path):
    result = run_cli(["method.formulation=batch", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "method.formulation='batch' is not one of official, paper_two_view, paper_multiview" in result.stderr


@pytest.mark.slow  # 14 s; tests/runtime/test_loggers.py keeps offline W&B in make test
def test_wandb_offline_without_key_or_network(tmp_path):
    result = run_cli(
        [*TINY, "logger=wandb", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
        env={"WANDB_BASE_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)},  # no key, nothing listening
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb")), "the offline run holds no metrics file"


def test_ddp_two_cpu_processes_one_summary(tmp_path):
    result = run_cli(
        [*WITH_LABELFREE, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=1", "data.batch_size=128", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(tmp_path / "run")
    assert summary["world_size"] == 2 and summary["epochs"] == 1
    assert result.stdout.count("frossl_lit summary") == 1
    assert summary["global_step"] == 1437 // 256  # each rank takes its own half of every global batch
    # the label-free figures: both ranks computed them on the same subset, without a collective
    assert all(summary[key] is not None for key in ("rankme", "lidar", "alpha_req"))


def test_frossl_trains_on_many_views_and_multi_crop(tmp_path):
    """4 large views plus 2 small crops of another size in one step: the loss takes any V views of one batch."""
    cfg = compose_config(
        [*TINY, "augment.num_views=4", "augment.small_views=2", "augment.small_recipe={size:8,scale:[0.2,0.5]}",
         "method.invariance_weight=0.33", "trainer.max_steps=3", "trainer.log_every_n_steps=1", "data.batch_size=128"],
        tmp_path,
    )
    summary = train(cfg)
    assert summary["global_step"] == 3
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/frossl/regularizer_view5" in header and "train/frossl/regularizer_view6" not in header



class KillRank(L.Callback):
    """SIGKILLs the process of ``rank`` after optimizer step ``step``, as a lost node would."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow  # 15-17 s each; the hung-rank test is slow too
@pytest.mark.parametrize("rank", [1, 0])
def test_ddp_with_a_rank_killed_the_other_stops_with_one_line(rank, tmp_path):
    result = run_cli(
        [*TINY, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=2", "data.batch_size=32", "callbacks.knn=null",
         "+callbacks.killer._target_=tests.test_train.KillRank", f"+callbacks.killer.rank={rank}", "+callbacks.killer.step=3",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path, env={"PYTHONPATH": str(REPO)}, timeout=240,
    )
    errors = [line for line in result.stderr.splitlines() if "frossl_lit: error:" in line]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    if rank == 1:  # the survivor is the launching process, whose stderr the user sees
        assert len(errors) == 1 and "another DDP process of this run stopped" in errors[0], result.stderr[-3000:]


class HangRank(L.Callback):
    """Makes the process of ``rank`` stop answering after optimizer step ``step`` for ``seconds``, then exit:
    a peer that hangs (a stuck filesystem, a deadlocked worker) instead of dying."""

    def __init__(self, rank: int, step: int, seconds: float) -> None:
        self.rank, self.step, self.seconds = rank, step, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            time.sleep(self.seconds)
            os._exit(3)


@pytest.mark.slow
def test_ddp_with_a_hung_rank_the_other_stops_at_the_collective_timeout(tmp_path):
    """The launching rank waits at most ``trainer.strategy.timeout`` (20 s here) for the hung one, then says so."""
    hang = 150
    args = [*TINY, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=2", "data.batch_size=32", "callbacks.knn=null",
            "trainer.strategy.timeout.minutes=0", "+trainer.strategy.timeout.seconds=20",
            "+callbacks.hang._target_=tests.test_train.HangRank", "+callbacks.hang.rank=1", "+callbacks.hang.step=3",
            f"+callbacks.hang.seconds={hang}", f"hydra.run.dir={tmp_path}/run"]
    env = {**os.environ, "WANDB_MODE": "", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:  # a file, not a pipe: the hung rank must not keep the test waiting for EOF
        launcher = subprocess.Popen([sys.executable, "-m", "frossl_lit.train", *args], cwd=tmp_path, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            returncode = launcher.wait(timeout=hang - 30)  # well before the hung rank would wake and exit
        finally:
            os.killpg(launcher.pid, signal.SIGKILL)  # the hung rank, still asleep
    errors = [line for line in stderr.read_text().splitlines() if "frossl_lit: error:" in line]
    assert returncode != 0 and len(errors) == 1 and "another DDP process of this run stopped" in errors[0], stderr.read_text()[-3000:]
