"""A run that stops at any step and resumes is the same run: weights bit for bit, every logged step, the spectrum
history and the wall-clock (frossl_lit.data.base's resume position, per-batch augmentation seeds, StepCheckpoint)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import lightning as L
import numpy as np
import pytest
import torch

from frossl_lit.train import train
from tests.conftest import REPO, TINY, compose_config

# 2 epochs of 22 steps (digits at batch 64), a checkpoint after every step, every step logged
RUN = [*TINY, "trainer.max_epochs=2", "callbacks.checkpoint_steps.every_n_steps=1", "trainer.log_every_n_steps=1", "callbacks.spectrum.every_n_steps=5"]
# the same at batch 128: 2 epochs of 11 steps, stopped after step 16 (mid-epoch 2); a checkpoint per step costs
SHORT = [o if o != "data.batch_size=64" else "data.batch_size=128" for o in RUN]
STEPS, STOP = 2 * (1437 // 128), 16


class Crash(RuntimeError):
    pass


class CrashAfter(L.Callback):
    """Dies after optimizer step ``step``, just after the step checkpoint, as a killed process would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"stopped after step {self.step}")


def _weights(checkpoint_path):
    return torch.load(checkpoint_path, map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _logged_steps(run_dir, metric="train/loss"):
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row.get(metric)]


def _logged(run_dir, metric):
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [float(row[metric]) for row in csv.DictReader(handle) if row.get(metric)]


@pytest.mark.parametrize("callbacks", ["all", pytest.param("no_knn_no_probe", marks=pytest.mark.slow)])  # "all" covers more
def test_stopping_mid_epoch_and_resuming_gives_the_same_weights_and_every_logged_step(callbacks, tmp_path):
    # "all": every default callback, the label-free figures included
    extra = ["callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null"] if callbacks != "all" else []
    run = SHORT if callbacks != "all" else [o for o in SHORT if o != "callbacks.labelfree=null"]
    whole = train(compose_config([*run, *extra], tmp_path / "whole"))

    # the first segment dies after step 16 (mid-epoch 2), as a kill after that step's checkpoint would leave it
    first = compose_config([*run, *extra, "+callbacks.crash._target_=tests.runtime.test_resume.CrashAfter", f"+callbacks.crash.step={STOP}"], tmp_path / "first")
    with pytest.raises(Crash):
        train(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False, map_location="cpu")["global_step"] == STOP
    resumed = train(compose_config([*run, *extra, f"ckpt_path={last}"], tmp_path / "resumed"))

    assert resumed["global_step"] == whole["global_step"] == STEPS
    _assert_same_weights(_weights(tmp_path / "whole" / "checkpoints" / "last.ckpt"), _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt"))
    if callbacks == "all":
        assert resumed["knn_top1"] == whole["knn_top1"] and resumed["probe_top1"] == whole["probe_top1"]
        assert all(resumed[k] == whole[k] is not None for k in ("rankme", "lidar", "alpha_req"))  # label-free too
        # the kNN clock (training seconds, kNN passes left out) goes on counting after the resume
        clock = _logged(tmp_path / "resumed", "val/knn_train_seconds")
        assert len(clock) == 2 and 0 < clock[0] < clock[1], clock
    # the resumed run's metrics.csv holds every step of the run, each once
    assert _logged_steps(tmp_path / "resumed") == _logged_steps(tmp_path / "whole") == list(range(STEPS))
    # the spectrum history and the wall-clock cover both segments
    np.testing.assert_array_equal(np.load(tmp_path / "resumed" / "spectrum.npz")["steps"], np.load(tmp_path / "whole" / "spectrum.npz")["steps"])
    first_seconds = torch.load(last, weights_only=False, map_location="cpu")["training_seconds"]
    assert resumed["wall_seconds"] > first_seconds > 0


def _run_state(checkpoint_path) -> dict:
    """Everything a run carries on: weights and buffers (a target network, a queue and its pointer, the momentum
    in use), the optimizer's state and the schedule's."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    return {"state_dict": checkpoint["state_dict"], "optimizer": checkpoint["optimizer_states"], "schedule": checkpoint["lr_schedulers"]}


def _assert_same(a, b, where="run"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}.{index}")
    else:
        assert a == b, where


def assert_resumes_bit_for_bit(run: list[str], tmp_path) -> tuple[dict, dict]:
    """Train ``run`` whole; train it again, killed after step ``STOP`` (mid-second epoch), and resume it from its
    last checkpoint: the resumed run ends in the whole run's state, bit for bit. Returns (the state at the kill, the
    final state) for the method's own checks."""
    whole = train(compose_config(run, tmp_path / "whole"))
    with pytest.raises(Crash):
        train(compose_config([*run, "+callbacks.crash._target_=tests.runtime.test_resume.CrashAfter",
                              f"+callbacks.crash.step={STOP}"], tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    stopped = _run_state(last)
    resumed = train(compose_config([*run, f"ckpt_path={last}"], tmp_path / "resumed"))
    assert resumed["global_step"] == whole["global_step"] == STEPS
    state = _run_state(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    _assert_same(state, _run_state(tmp_path / "whole" / "checkpoints" / "last.ckpt"))
    return stopped, state


# the stateful methods: an EMA target with its momentum schedule (BYOL), and a queue with its pointer (MoCo)
@pytest.mark.parametrize("method", ["byol", "mocov2"])
def test_a_stateful_method_stopped_mid_epoch_resumes_to_the_same_state_bit_for_bit(method, tmp_path):
    run = [*SHORT, f"method={method}", "method.queue_size=256" if method == "mocov2" else "method.momentum_start=0.9",
           "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null"]
    _, state = assert_resumes_bit_for_bit(run, tmp_path)
    stateful = {"byol": "target.backbone.features.0.weight", "mocov2": "queue.keys"}[method]
    assert stateful in state["state_dict"] and "target_momentum" in state["state_dict"]


def test_every_epoch_draws_fresh_augmentations(tmp_path):
    """The augmentation seed is a function of (seed, rank, epoch, batch): epochs differ, reruns agree."""
    from frossl_lit.data.base import SSLDataModule

    seeds = set()
    for epoch in range(3):
        for batch in range(4):
            trainer = type("T", (), {"global_rank": 0, "current_epoch": epoch})()
            trainer.fit_loop = type("F", (), {})()
            trainer.fit_loop.epoch_loop = type("E", (), {})()
            trainer.fit_loop.epoch_loop.batch_progress = type("B", (), {})()
            trainer.fit_loop.epoch_loop.batch_progress.current = type("C", (), {"ready": batch})()
            module = SSLDataModule.__new__(SSLDataModule)
            module.seed, module.trainer = 0, trainer
            seeds.add(module._augmentation_seed())
    assert len(seeds) == 12


@pytest.mark.slow
def test_a_run_killed_with_sigkill_at_a_random_step_resumes_to_the_same_weights(tmp_path):
    """The acceptance: a real process, SIGKILL after a random step, the same command with `resume.auto=true` into
    the same directory, identical final weights and every logged step once."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
    args = [sys.executable, "-m", "frossl_lit.train", *RUN, "callbacks.knn=null", "trainer.max_epochs=3"]
    whole = subprocess.run([*args, f"hydra.run.dir={tmp_path}/whole"], cwd=REPO, env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-2000:]

    kill_after = int(np.random.default_rng().integers(5, 60))
    victim = subprocess.Popen([*args, f"hydra.run.dir={tmp_path}/killed"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if last.is_file():
            try:
                if torch.load(last, weights_only=False, map_location="cpu")["global_step"] >= kill_after:
                    break
            except Exception:  # never: saves are atomic (a reader sees the old or the new file)
                pytest.fail("last.ckpt could not be read while the run was writing it")
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = torch.load(last, weights_only=False, map_location="cpu")["global_step"]
    assert kill_after <= killed_at < 66, killed_at

    # the same command again into the killed run's own directory: refused as it stands, continued with resume.auto
    again = subprocess.run([*args, f"hydra.run.dir={tmp_path}/killed"], cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "already holds an unfinished run" in again.stderr and "resume.auto=true" in again.stderr
    resumed = subprocess.run([*args, "resume.auto=true", f"hydra.run.dir={tmp_path}/killed"], cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(_weights(tmp_path / "whole" / "checkpoints" / "last.ckpt"), _weights(last))
    assert _logged_steps(tmp_path / "killed") == list(range(66))


# -- a resume continues its own run, or says what differs (frossl_lit.runtime.resume) ------------------------------------
FINISHED = [*TINY, "data.batch_size=256", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "callbacks.knn=null",
            "callbacks.spectrum=null"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-epoch run on digits (its directory and last.ckpt)."""
    directory = tmp_path_factory.mktemp("finished")
    summary = train(compose_config(FINISHED, directory))
    return directory, directory / "checkpoints" / "last.ckpt", summary


@pytest.mark.parametrize("change,message", [
    (["method=barlow_twins"], r"is a checkpoint of a FroSSL run whose method\._target_ is frossl_lit\.methods\.FroSSL, but this run's is frossl_lit\.methods\.BarlowTwins"),
    (["backbone.widths=[8,32]"], r"whose backbone\.widths is \[8, 16\], but this run's is \[8, 32\]"),
    (["method.projector.out_dim=16"], r"whose method\.projector\.out_dim is 32, but this run's is 16"),
    (["data=cifar10"], r"whose data\._target_ is frossl_lit\.data\.digits\.DigitsDataModule"),
    (["schedule.optimizer.lr=1e-4"], r"was trained with another schedule \(schedule\.optimizer\.lr 0\.002 -> 0\.0001\).*Add resume\.override_schedule=true"),
    (["trainer.max_epochs=3"], r"another schedule \(trainer\.max_epochs 2 -> 3\)"),
    ([], r"ends a run that finished its 2 epochs, so trainer\.max_epochs=2 leaves nothing to train; to extend it, raise trainer\.max_epochs"),
    (["resume.override_schedule=true"], r"leaves nothing to train"),
])
def test_a_resume_of_another_shape_schedule_or_a_finished_run_is_one_line(change, message, finished_run, tmp_path):
    from frossl_lit.runtime.errors import UserError

    _, last, _ = finished_run
    cfg = compose_config([*FINISHED, *change, f"ckpt_path={last}"], tmp_path / "next")
    with pytest.raises(UserError, match=f"^ckpt_path={last} .*{message}") as info:
        train(cfg)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "next" / "csv").exists()  # refused before anything ran


def test_a_checkpoint_without_a_record_is_checked_by_its_shapes(finished_run, tmp_path):
    from frossl_lit.runtime.errors import UserError

    _, last, _ = finished_run
    old_style = torch.load(last, weights_only=False, map_location="cpu")
    del old_style["callbacks"]["RunRecord"]
    torch.save(old_style, tmp_path / "old.ckpt")
    cfg = compose_config([*FINISHED, "backbone.widths=[8,32]", "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'old.ckpt'}"], tmp_path / "next")
    with pytest.raises(UserError, match=r"holds backbone\.features\.\d+\.weight of shape \(32, 8, 3, 3\)|of shape \(16, 8, 3, 3\), but this run's model has \(32, 8, 3, 3\)"):
        train(cfg)


def test_override_schedule_continues_as_if_configured_so_from_the_start(finished_run, tmp_path):
    """Extending a finished run with a new lr: the lr at every resumed step is the new 3-epoch schedule's."""
    from frossl_lit.optim.schedules import warmup_cosine

    _, last, summary = finished_run
    steps_per_epoch = summary["global_step"] // 2
    cfg = compose_config([*FINISHED, "trainer.max_epochs=3", "schedule.optimizer.lr=1e-3", "resume.override_schedule=true",
                          f"ckpt_path={last}"], tmp_path / "extended")
    extended = train(cfg)
    assert extended["epochs"] == 3 and extended["global_step"] == 3 * steps_per_epoch
    dummy = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = warmup_cosine(dummy, total_steps=3 * steps_per_epoch, warmup_fraction=0.1, final_fraction=0.01)
    expected = []
    for _ in range(3 * steps_per_epoch):
        expected.append(dummy.param_groups[0]["lr"])
        dummy.step()
        schedule.step()
    logged = dict(zip(_logged_steps(tmp_path / "extended", "lr-AdamW/pg1"), _logged(tmp_path / "extended", "lr-AdamW/pg1")))
    resumed_steps = range(2 * steps_per_epoch, 3 * steps_per_epoch)
    assert [logged[step] for step in resumed_steps] == pytest.approx([expected[step] for step in resumed_steps], rel=1e-6)
    # the checkpoint now records the new schedule: the same command resumes it again without a word
    after = torch.load(tmp_path / "extended" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert after["callbacks"]["RunRecord"]["config"]["schedule"]["optimizer"]["lr"] == 1e-3
