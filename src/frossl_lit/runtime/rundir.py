"""A run directory has one owner: a lock while a run uses it, and a run that already lives there is never
overwritten by accident.

:func:`claim` takes an exclusive ``flock`` on ``<run dir>/.run.lock`` (the kernel drops it when the process ends,
however it ends, so a lock left by a killed run is stale by construction and the next run takes it) and records
the owner's pid, start time and command in it, for the message a second run gets. Then, if the directory already
holds a run (a checkpoint, ``summary.json`` or ``csv/metrics.csv``; a directory with nothing but Hydra's
``.hydra/`` from a run that stopped at its config checks is free), the run continues only when told what to do
with it (the ``resume`` settings of ``conf/train.yaml``):

- ``resume.auto=true``: continue from the directory's own ``checkpoints/last.ckpt`` (start afresh when it has
  none yet) — what a scheduler that restarts the same command needs (SLURM requeue, a preempted VM);
- ``ckpt_path=<a checkpoint inside the directory>``: the same, explicitly;
- ``resume.overwrite=true``: the earlier run's files (checkpoints, metrics, summary, plots, W&B files) are
  deleted first;
- otherwise: one line, naming what the directory holds and these three ways out (or another ``hydra.run.dir``).

From the command line the check runs in a Hydra callback (:class:`RunDirGuard`, ``conf/hydra/default.yaml``)
*before* Hydra writes ``.hydra/config.yaml`` into the directory, so a refused run changes nothing there; a
sweep refuses a sweep directory whose jobs already hold runs before its first job starts. ``train()`` claims
the directory too (a no-op when the callback already did), so in-process callers get the same guarantees.
Ranks other than 0 of a distributed run share their rank 0's directory and claim nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from frossl_lit.runtime.errors import UserError, exits_on_user_error, fail

LOCK_NAME = ".run.lock"
# what a run writes into its directory: removed by resume.overwrite=true (nothing else is touched)
RUN_FILES = ("checkpoints", "csv", "wandb", "summary.json", "curves.png", "spectrum.png", "spectrum.npz")
_held: dict[Path, int] = {}  # run directories this process owns -> the open lock file's descriptor


def child_rank() -> bool:
    """Whether this process is a rank other than 0 of a distributed run (it uses its rank 0's directory)."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit() and int(value) != 0:
            return True
    return False


def describe_run(directory: Path) -> str | None:
    """What earlier run ``directory`` holds, in a few words, or None when it holds none."""
    checkpoints = sorted((directory / "checkpoints").glob("*.ckpt")) if (directory / "checkpoints").is_dir() else []
    summary_path, metrics = directory / "summary.json", directory / "csv" / "metrics.csv"
    if not checkpoints and not summary_path.is_file() and not metrics.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    except (OSError, ValueError):
        summary = None
    if summary:
        figures = ", ".join(f"{key} {summary[key]:.3f}" for key in ("knn_top1", "probe_top1") if isinstance(summary.get(key), float))
        return (f"a finished run of {summary.get('method')} on {summary.get('data')}: {summary.get('epochs')} epochs, "
                f"step {summary.get('global_step')}" + (f", {figures}" if figures else ""))
    if checkpoints:
        return f"an unfinished run with {len(checkpoints)} checkpoint(s) ({', '.join(p.name for p in checkpoints[:3])})"
    return "the metrics of a run that stopped before its first checkpoint"


def _lock_owner(lock_path: Path) -> str:
    try:
        owner = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"])) if "started" in owner else "?"
    return f"process {owner.get('pid', '?')} (started {started}: {owner.get('command', '?')[:120]})"


def _open_directory(directory: Path, key: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        reason = "a part of the path is a file" if isinstance(error, (NotADirectoryError, FileExistsError)) else (error.strerror or str(error))
        raise UserError(f"{key}={directory} cannot be used as a run directory ({reason}); choose a writable "
                        f"directory, e.g. {key}=outputs/runs/my_run") from None


def claim(directory: str | os.PathLike, auto: bool = False, overwrite: bool = False, ckpt_path: str | None = None,
          key: str = "hydra.run.dir") -> bool:
    """Own ``directory`` for this process (see the module docstring). Returns whether this call took the lock
    (False: this process already owned it, or it is not rank 0); :func:`release` gives it back."""
    if child_rank():
        return False
    directory = Path(directory).expanduser().resolve()
    if directory in _held:
        return False
    if auto and overwrite:
        raise UserError("resume.auto=true and resume.overwrite=true contradict each other: continue the run in the "
                        "directory (resume.auto=true) or delete it and start afresh (resume.overwrite=true), not both")
    _open_directory(directory, key)
    lock_path = directory / LOCK_NAME
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UserError(f"{key}={directory} is in use by {_lock_owner(lock_path)}; wait for that run to end, or "
                        f"choose another directory ({key}=...)") from None
    owner = {"pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(owner).encode(), 0)
    _held[directory] = descriptor
    try:
        _settle_earlier_run(directory, auto, overwrite, ckpt_path, key)
    except BaseException:
        release(directory)
        raise
    return True


def _settle_earlier_run(directory: Path, auto: bool, overwrite: bool, ckpt_path: str | None, key: str) -> None:
    earlier = describe_run(directory)
    if earlier is None or auto:
        return
    if overwrite:
        for name in RUN_FILES:
            target = directory / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        return
    if ckpt_path and directory in Path(ckpt_path).expanduser().resolve().parents:
        return  # an explicit resume of this directory's own run
    raise UserError(f"{key}={directory} already holds {earlier}; continue it with resume.auto=true, start it afresh "
                    f"with resume.overwrite=true (deletes its checkpoints and metrics), or choose another directory ({key}=...)")


def release(directory: str | os.PathLike) -> None:
    """Give up the lock on ``directory`` (the lock file stays; an unlocked one is free)."""
    descriptor = _held.pop(Path(directory).expanduser().resolve(), None)
    if descriptor is not None:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def own_checkpoint(directory: str | os.PathLike) -> Path | None:
    """``<directory>/checkpoints/last.ckpt`` when it exists (what ``resume.auto=true`` continues from)."""
    last = Path(directory) / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


def requeued() -> bool:
    """Whether this process is a SLURM job's restart (requeued after a preemption, ``SLURM_RESTART_COUNT`` > 0): its
    run then continues from its directory's own ``last.ckpt`` as with ``resume.auto=true`` (frossl_lit.runtime.preemption)."""
    count = os.environ.get("SLURM_RESTART_COUNT", "").strip()
    return count.isdigit() and int(count) > 0


def auto_resume(cfg: DictConfig) -> bool:
    """``resume.auto``, or a requeued SLURM job (:func:`requeued`)."""
    return bool((cfg.get("resume") or {}).get("auto", False)) or requeued()


def _resume_settings(cfg: DictConfig) -> dict[str, Any]:
    resume = cfg.get("resume") or {}
    return {"auto": auto_resume(cfg), "overwrite": bool(resume.get("overwrite", False)),
            "ckpt_path": cfg.get("ckpt_path")}


@contextmanager
def owned(cfg: DictConfig) -> Iterator[None]:
    """Own the run directory of ``cfg`` (``paths.output_dir``) for the duration of the block."""
    directory = cfg.paths.output_dir
    took = claim(directory, key="paths.output_dir", **_resume_settings(cfg))
    try:
        yield
    finally:
        if took:
            release(directory)


class RunDirGuard(Callback):
    """Hydra callback: claim the run (or each sweep job's) directory before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exits_on_user_error():  # a Hydra callback: an exception here would be Hydra's traceback
            claim(config.hydra.run.dir, **_resume_settings(config))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sweep directory whose jobs hold runs is refused before the first job (each job's own directory is
        claimed as it starts, once Hydra has made it)."""
        settings = _resume_settings(config)
        if child_rank() or settings["auto"] or settings["overwrite"]:
            return
        sweep = Path(config.hydra.sweep.dir).expanduser().resolve()
        held = [p for p in (sweep, *sorted(sweep.iterdir())) if p.is_dir() and describe_run(p)] if sweep.is_dir() else []
        if held:
            fail(f"hydra.sweep.dir={sweep} already holds runs ({held[0].name}: {describe_run(held[0])}); continue them "
                 f"with resume.auto=true, start afresh with resume.overwrite=true, or choose another hydra.sweep.dir")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exits_on_user_error():
            claim(config.hydra.runtime.output_dir, key="hydra.sweep.dir", **_resume_settings(config))

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(config.hydra.runtime.output_dir)
