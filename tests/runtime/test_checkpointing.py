"""Checkpoints are written whole or not at all, never with non-finite weights; a full disk and an unreadable
checkpoint each get one message (frossl_lit.runtime.checkpointing)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from frossl_lit.runtime.checkpointing import AtomicCheckpointIO, DivergedError, read_checkpoint
from frossl_lit.runtime.errors import UserError
from tests.conftest import REPO


def _checkpoint(value: float = 1.0, size: int = 1000) -> dict:
    return {"state_dict": {"w": torch.full((size,), value)}, "global_step": 7}


def test_save_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(1.0), path)
    io.save_checkpoint(_checkpoint(2.0), path)
    assert torch.load(path, weights_only=False)["state_dict"]["w"][0] == 2.0
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_non_finite_weights_are_never_saved(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(1.0), path)
    with pytest.raises(DivergedError, match=r"^not saving .*best\.ckpt: the weights hold non-finite values \(w\) at step 7; no earlier checkpoint exists$"):
        io.save_checkpoint(_checkpoint(float("nan")), tmp_path / "first" / "best.ckpt")
    with pytest.raises(DivergedError, match=r"not saving .*last\.ckpt: the weights hold non-finite values \(w\) at step 7; the earlier checkpoints are kept \(last\.ckpt\)$"):
        io.save_checkpoint(_checkpoint(float("nan")), path)
    assert torch.load(path, weights_only=False)["state_dict"]["w"][0] == 1.0


def test_full_disk_names_path_needed_and_free_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_checkpoint(1.0), path)
    real_open = open

    def open_that_fills_the_disk(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and ".tmp-" in str(file):
            handle.write(b"partial")

            def fail(_):
                raise OSError(errno.ENOSPC, "No space left on device")

            handle.write = fail
        return handle

    monkeypatch.setattr("builtins.open", open_that_fills_the_disk)
    with pytest.raises(UserError) as info:
        io.save_checkpoint(_checkpoint(2.0, size=50_000), path)
    message = str(info.value)
    assert f"cannot write checkpoint {path}: it needs 196.9 kB" in message and "free" in message and "intact" in message
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["state_dict"]["w"][0] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no partial file


def test_too_little_free_space_is_said_before_writing(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(UserError, match=r"it needs .* and its filesystem has 1\.0 kB free"):
        AtomicCheckpointIO().save_checkpoint(_checkpoint(size=100_000), tmp_path / "best.ckpt")
    assert list(tmp_path.iterdir()) == []


_SLOW_SAVE = """
import os, sys, time, torch
from frossl_lit.runtime.checkpointing import AtomicCheckpointIO
os.fsync = lambda fd: time.sleep(60)  # hold the save between writing the temporary file and renaming it
AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.full((1000,), 2.0)}, "global_step": 2}, sys.argv[1])
"""


def test_a_save_killed_midway_leaves_the_old_checkpoint_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), path)
    child = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(path)], cwd=REPO)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".last.ckpt.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".last.ckpt.tmp-*")), "the child never started writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert torch.load(path, weights_only=False)["state_dict"]["w"][0] == 1.0  # the old checkpoint, whole
    AtomicCheckpointIO().save_checkpoint(_checkpoint(3.0), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the orphan is gone


def test_a_truncated_checkpoint_names_the_file_and_the_newest_readable_one(tmp_path):
    good, bad = tmp_path / "best-epoch003.ckpt", tmp_path / "last.ckpt"
    torch.save(_checkpoint(), good)
    bad.write_bytes(good.read_bytes()[:100])
    os.utime(good, (time.time() - 60, time.time() - 60))
    with pytest.raises(UserError) as info:
        read_checkpoint(str(bad))
    message = str(info.value)
    assert message.startswith(f"ckpt_path={bad} cannot be read (100 bytes;") and message.endswith(f"use ckpt_path={good}")
    assert "\n" not in message
    bad.write_bytes(b"")
    good.unlink()
    with pytest.raises(UserError, match="no other checkpoint beside it can be read"):
        read_checkpoint(str(bad))


def test_a_directory_or_a_file_that_is_no_checkpoint_gets_one_line_naming_a_readable_one(tmp_path):
    from frossl_lit.runtime.checkpointing import read_checkpoint

    good = tmp_path / "last.ckpt"
    torch.save(_checkpoint(), good)
    with pytest.raises(UserError, match=rf"^ckpt={tmp_path} is a directory; point it at a run's checkpoints/last.ckpt"):
        read_checkpoint(str(tmp_path), "ckpt")
    plain = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, plain)  # a bare state dict, e.g. an export
    with pytest.raises(UserError) as info:
        read_checkpoint(str(plain), "ckpt")
    assert str(info.value) == f"ckpt={plain} is not a Lightning checkpoint (no state_dict in it); use ckpt={good}"
