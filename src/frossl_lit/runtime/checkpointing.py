"""Checkpoints that are never half-written, never non-finite, and a clear word when one cannot be read.

:class:`AtomicCheckpointIO` is the Trainer's checkpoint plugin (``trainer.plugins`` in ``conf/trainer/default.yaml``).
Lightning's own writer goes through a temporary file in the system's temp directory; when that directory lies on
another filesystem than the run (a cluster's node-local ``/tmp`` and a shared run directory, say) the final move is
a copy, and a process killed during it leaves a truncated checkpoint. Here the checkpoint is serialised in memory
first (so its size is known), written to a temporary file beside its destination, flushed to disk and renamed
over it: a reader sees the old file or the new one, whole. Saving refuses weights that are not finite, so a
diverged run never overwrites ``last.ckpt`` or ``best-*.ckpt``; a full disk gets one message with the path, the
size needed and the space free, and leaves the earlier checkpoints as they were.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol

from frossl_lit.runtime.errors import UserError
from frossl_lit.runtime.fileio import TEMP_MARK, replace_whole, size_text


class DivergedError(RuntimeError):
    """Training produced non-finite values (see :class:`frossl_lit.callbacks.DivergenceGuard`).

    ``facts``: what happened, without advice; ``step``: the first bad step; ``first_epoch``: whether that step lies
    in the run's first epoch (no checkpoint predates it, so the advice is to start afresh rather than resume)."""

    def __init__(self, message: str, facts: str | None = None, step: int | None = None, first_epoch: bool = False) -> None:
        super().__init__(message)
        self.facts, self.step, self.first_epoch = facts or message, step, first_epoch


def non_finite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) state dict that hold a NaN or an infinity."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [name for key, value in state.items() for name in non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))]
    return []


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the destination directory, ``fsync``, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not _is_local_file_protocol(path):  # object storage: Lightning's writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            earlier = [p.name for p in path.parent.glob("*.ckpt")] if path.parent.is_dir() else []
            kept = f"the earlier checkpoints are kept ({', '.join(sorted(earlier)[:3])})" if earlier else "no earlier checkpoint exists"
            raise DivergedError(
                f"not saving {path}: the weights hold non-finite values ({', '.join(bad[:3])}"
                f"{', …' if len(bad) > 3 else ''}) at step {checkpoint.get('global_step')}; {kept}"
            )
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries(path.parent)
        free = shutil.disk_usage(path.parent).free
        existing = path.stat().st_size if path.exists() else 0
        if free < len(data):
            raise self._no_space(path, len(data), free, existing)
        try:
            replace_whole(path, data)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._no_space(path, len(data), shutil.disk_usage(path.parent).free, existing) from None
            raise

    @staticmethod
    def _no_space(path: Path, needed: int, free: int, existing: int) -> UserError:
        return UserError(
            f"cannot write checkpoint {path}: it needs {size_text(needed)} and its filesystem has {size_text(free)} free"
            f"{f' (the file it replaces holds {size_text(existing)})' if existing else ''}; the earlier checkpoints are intact. "
            f"Free some space, or move the run with paths.output_dir=... and resume from its last.ckpt"
        )

    @staticmethod
    def _remove_stale_temporaries(directory: Path) -> None:
        """Temporary files of saves that were killed (any process that is no longer running)."""
        for stale in directory.glob(f".*.ckpt{TEMP_MARK}*"):
            pid = stale.name.rsplit(TEMP_MARK, 1)[1]
            if not pid.isdigit() or int(pid) == os.getpid() or not _process_alive(int(pid)):
                stale.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_checkpoint(ckpt_path: str, key: str = "ckpt_path") -> dict[str, Any]:
    """Read a frossl_lit checkpoint, or fail with one :class:`UserError` line naming ``key=ckpt_path``, what is wrong
    with it and the newest readable checkpoint beside it (missing, truncated, corrupt, or not a checkpoint)."""
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise UserError(f"{key}={ckpt_path} {where}; point it at a run's checkpoints/last.ckpt (or best-*.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # truncated, corrupt or not a checkpoint: torch raises several kinds
        with open(path, "rb") as handle:
            zip_file = handle.read(2) == b"PK"  # torch.save writes a zip archive
        reason = (f"truncated or corrupt: {str(error).splitlines()[0][:100] if str(error) else type(error).__name__}"
                  if zip_file else "not a file torch.save wrote")
        raise UserError(f"{key}={ckpt_path} cannot be read ({path.stat().st_size} bytes; {reason}); {_fallback(path, key)}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{key}={ckpt_path} is not a Lightning checkpoint (no state_dict in it); {_fallback(path, key)}")
    return checkpoint


def _fallback(path: Path, key: str) -> str:
    fallback = newest_readable_checkpoint(path.parent, exclude=path)
    return f"use {key}={fallback}" if fallback else "no other checkpoint beside it can be read"


def newest_readable_checkpoint(directory: Path, exclude: Path | None = None) -> Path | None:
    """The most recently written ``*.ckpt`` in ``directory`` that loads, or ``None``."""
    candidates = sorted(directory.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        if exclude is not None and candidate.resolve() == exclude.resolve():
            continue
        try:
            torch.load(candidate, map_location="cpu", weights_only=False, mmap=True)
        except Exception:
            continue
        return candidate
    return None
