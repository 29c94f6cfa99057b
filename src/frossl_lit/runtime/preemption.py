"""Preemption survived exactly: a scheduler's warning signal becomes ``last.ckpt`` at the next step boundary, a
requeue of the job and an exit; the job's next start continues from that checkpoint by itself.

:class:`PreemptionCheckpoint` (a Trainer callback, always added by ``frossl_lit.train``) owns the signals while
training runs:

- ``SIGUSR1`` / ``SIGUSR2``: the warning a scheduler sends before it stops a job (``sbatch --signal=USR1@60``;
  hydra-submitit-launcher asks for ``--signal=USR2@<signal_delay_s>``, submitit's default). The handler only sets a
  flag; at the next step boundary (as the next batch starts, once the finished step's metrics have reached the
  loggers: the place :class:`frossl_lit.callbacks.StepCheckpoint` saves) every rank saves the run's
  ``checkpoints/last.ckpt`` (atomically, :class:`frossl_lit.runtime.checkpointing.AtomicCheckpointIO`), rank 0 runs
  ``scontrol requeue <job>`` when it runs in a SLURM job, and the process exits: status 0 once requeued (the job
  is not a failure: it goes on in its next start), else 128 + the signal's number, with one line saying how to
  continue (``resume.auto=true``).
- ``SIGTERM``, inside a SLURM job only (what SLURM sends when it preempts with ``PreemptMode=REQUEUE``, cancels a
  job, or ``scontrol requeue`` stops one): the same checkpoint and exit, without a requeue (SLURM requeues a
  preempted job itself; a cancelled one stays cancelled, its checkpoint continues it on demand). Outside SLURM a
  SIGTERM keeps Lightning's meaning.

A job SLURM restarts (``SLURM_RESTART_COUNT`` > 0) continues from its run directory's own ``last.ckpt`` as if
``resume.auto=true`` had been given (:func:`frossl_lit.runtime.rundir.requeued`), so nobody passes ``ckpt_path``; the
data order, augmentations, optimizer and log history continue exactly (as for any resume, see
``tests/runtime/test_resume.py``), so the final weights equal an uninterrupted run's bit for bit.

Who owns the signal (no double handling): Lightning, when it detects SLURM, installs its own ``SIGUSR1`` handler
(``SLURMEnvironment(auto_requeue=True)``: ``hpc_ckpt_N.ckpt`` beside the run, which this project's resume does not
read) only when ``SIGUSR1`` has no handler yet; this callback (re)installs its handlers in ``on_fit_start``, before
Lightning registers its own, and again in ``on_train_start`` (replacing Lightning's SIGTERM handler), so Lightning's
requeue never runs. The handlers are installed when the callback is built (``frossl_lit.train.build``), so a signal
that arrives while the data and model are set up is acted on at the first step. submitit installs a ``SIGUSR2`` handler (requeue, then ``sys.exit`` wherever the process
is) for the whole job; this callback replaces it while training runs and hands the signals back when training
ends. Outside training (data preparation, the summary) submitit's handler still requeues the job and the next
start continues from the last checkpoint written (an epoch's, or ``callbacks.checkpoint_steps``'s), exactly too.

Under DDP the ranks agree on the flag every ``sync_every_n_steps`` steps (one small all-reduce then; none on the
other steps), so all of them save at the same step.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L

REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class Preempted(SystemExit):
    """Raised at a step boundary after the checkpoint: ends the process with its exit status."""


def slurm_job_id() -> str | None:
    """The running SLURM job's id as ``scontrol`` names it (``<array job>_<task>`` for an array task), or None."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{array_task}" if array_job and array_task else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


class PreemptionCheckpoint(L.Callback):
    """Checkpoint, requeue and exit on a scheduler's warning signal (see the module docstring)."""

    def __init__(self, dirpath: str | os.PathLike, filename: str = "last.ckpt", sync_every_n_steps: int = 10) -> None:
        self.path, self.sync_every_n_steps = Path(dirpath) / filename, sync_every_n_steps
        self._received: int | None = None
        self._handling = self._active = False
        self._replaced: dict[int, Any] = {}  # each signal's handler before this callback's first install
        self._install()  # from construction on: a signal while the data and model are set up waits for the first step

    # -- the handlers: set a flag, nothing else (a signal may arrive anywhere) ------------------------------------
    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if not self._active:  # left installed after training (Lightning restores what it found): be the one replaced
            previous = self._replaced.get(signum, signal.SIG_DFL)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        if self._received is None:
            self._received = signum

    def _signals(self) -> tuple[int, ...]:
        return (*REQUEUE_SIGNALS, signal.SIGTERM) if slurm_job_id() else REQUEUE_SIGNALS

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._active = True
        for signum in self._signals():
            current = signal.getsignal(signum)
            if current is not self._handler:
                self._replaced.setdefault(signum, current)
                signal.signal(signum, self._handler)

    def _restore(self) -> None:
        self._active = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._replaced.items():
            if signal.getsignal(signum) is self._handler and handler is not None:
                signal.signal(signum, handler)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # before Lightning's SLURM connector, which then leaves SIGUSR1 alone

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # again: Lightning's connector has replaced SIGTERM in between

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # a failed fit (or this callback's own exit) hands the signals back too

    # -- at a step boundary: checkpoint, requeue, exit -------------------------------------------------------------
    def _should_stop(self, trainer: L.Trainer) -> bool:
        if trainer.world_size == 1:
            return self._received is not None
        if trainer.global_step % self.sync_every_n_steps:
            return False
        return bool(trainer.strategy.reduce_boolean_decision(self._received is not None, all=False))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._handling or not self._should_stop(trainer):
            return
        self._handling = True
        signum = self._received or signal.SIGUSR1  # a rank told by the others
        trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes
        name, step = signal.Signals(signum).name, trainer.global_step
        job = slurm_job_id()
        status = 128 + signum
        if trainer.is_global_zero:
            if job and signum in REQUEUE_SIGNALS:
                requeued = _requeue(job)
                if requeued is None:
                    status = 0
                    note = f"requeued SLURM job {job}: its next start continues from this checkpoint"
                else:
                    note = (f"`scontrol requeue {job}` failed ({requeued}); continue with the same command plus "
                            f"resume.auto=true (hydra.run.dir={self.path.parent.parent})")
            else:
                note = (f"continue with the same command plus resume.auto=true (hydra.run.dir={self.path.parent.parent})"
                        + (" — SLURM requeues a preempted job by itself" if job else ""))
            print(f"frossl_lit: {name} received; saved {self.path} at step {step} and stopped; {note}", file=sys.stderr, flush=True)
        elif job and signum in REQUEUE_SIGNALS:
            status = 0
        raise Preempted(status)


def _requeue(job: str) -> str | None:
    """``scontrol requeue <job>``; None when it worked, else what went wrong."""
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit status {result.returncode}")
