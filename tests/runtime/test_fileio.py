"""Files are written whole or not at all, and a write that cannot happen is one line (frossl_lit.runtime.fileio); the CSV
logger replaces metrics.csv whole (frossl_lit.runtime.loggers.AtomicCSVLogger)."""

from __future__ import annotations

import csv
import errno
import os

import pytest

from frossl_lit.runtime.errors import UserError
from frossl_lit.runtime.fileio import atomic_write, atomic_write_with


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "summary.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]
    atomic_write_with(tmp_path / "b.bin", lambda buffer: buffer.write(b"\x00\x01"))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_a_full_disk_is_one_line_and_leaves_the_old_file_and_no_empty_one(tmp_path, monkeypatch):
    old = tmp_path / "summary.json"
    old.write_text('{"knn_top1": 0.9}')
    real_fsync = os.fsync

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError) as info:
        atomic_write(old, "x" * 5000)
    with pytest.raises(UserError):
        atomic_write(tmp_path / "fresh.json", "{}")
    monkeypatch.setattr(os, "fsync", real_fsync)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot write {old}: its filesystem is full (it needs 4.9 kB")
    assert "paths.output_dir=" in message
    assert old.read_text() == '{"knn_top1": 0.9}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary, no 0-byte fresh.json


@pytest.mark.parametrize("where", ["through_a_file", "proc"])
def test_an_unwritable_destination_is_one_line(where, tmp_path):
    (tmp_path / "a_file").write_text("x")
    target = tmp_path / "a_file" / "out.json" if where == "through_a_file" else "/proc/frossl_lit/out.json"
    with pytest.raises(UserError, match=r"^cannot write .*out\.json \(.+\); choose a writable directory") as info:
        atomic_write(target, "{}")
    if where == "through_a_file":
        assert "a part of the path is a file" in str(info.value)


def test_the_csv_logger_keeps_every_row_and_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    from frossl_lit.runtime.loggers import AtomicCSVLogger

    logger = AtomicCSVLogger(str(tmp_path), name="csv", version="")
    logger.log_hyperparams({"lr": 0.1, "widths": [8, 16]})
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.save()
    logger.log_metrics({"train/loss": 0.5, "val/knn_top1": 0.7}, step=1)  # a new column: the whole file again
    logger.save()
    path = tmp_path / "csv" / "metrics.csv"
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["train/loss"], r["val/knn_top1"]) for r in rows] == [("0", "1.0", ""), ("1", "0.5", "0.7")]
    assert "widths" in (tmp_path / "csv" / "hparams.yaml").read_text()

    before = path.read_text()
    logger.log_metrics({"train/loss": 0.25, "train/new": 1.0}, step=2)
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(UserError, match="metrics.csv"):
        logger.save()
    assert path.read_text() == before and sorted(p.name for p in path.parent.iterdir()) == ["hparams.yaml", "metrics.csv"]
