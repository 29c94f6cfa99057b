"""What a training run that stopped tells its user: why, and the command that carries on.

:func:`rerun_command` is the run's own command line into the same run directory with some settings changed;
:func:`divergence_advice` continues a diverged run at a tenth of the learning rate; :func:`peer_loss_advice`
resumes a DDP run one of whose processes died; :func:`in_a_sweep` and :func:`sweeper_needs_a_value` tell a
sweep job (whose failure is one failed trial, not the end of the sweep) from a single run.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from frossl_lit.runtime.checkpointing import DivergedError

# what gloo and NCCL say when a peer died (connection errors) or stopped answering (the collective timeout)
_PEER_FAILURES = (
    "Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted",
    "Socket Timeout", "Timed out waiting", "Application timeout",
)
_RESUME_KEYS = ("ckpt_path", "resume.auto", "resume.overwrite", "resume.override_schedule")


def rerun_command(cfg: DictConfig, changes: list[str]) -> str:
    """This run's command line, into the same run directory, with ``changes`` replacing the overrides of their keys
    (and any earlier resume settings): advice a user can paste."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    replaced = {change.split("=", 1)[0] for change in changes} | set(_RESUME_KEYS)
    kept = [o for o in task if o.split("=", 1)[0].lstrip("+~") not in replaced]
    run_dir = Path(cfg.paths.output_dir).resolve()
    return " ".join(["python -m frossl_lit.train", *map(shlex.quote, [*kept, *changes, f"hydra.run.dir={run_dir}"])])


def divergence_advice(cfg: DictConfig, error: DivergedError) -> str:
    """The guard's facts and a command that carries on at a tenth of the learning rate: afresh when the first bad
    step lies in the first epoch (no checkpoint predates it), else from the run's last checkpoint with the new
    schedule applied (``resume.override_schedule``)."""
    lr = f"schedule.optimizer.lr={float(cfg.schedule.optimizer.lr) / 10:.3g}"
    how = ["resume.overwrite=true"] if error.first_epoch else ["resume.auto=true", "resume.override_schedule=true"]
    return (f"{error.facts}. To train at a tenth of the learning rate, "
            f"{'start again' if error.first_epoch else 'continue from its last checkpoint'}: {rerun_command(cfg, [lr, *how])}"
            f" (or skip such steps with callbacks.divergence.action=skip)")


def lost_a_peer(error: BaseException | None) -> bool:
    """Whether ``error`` (or its cause) is a collective failing because another rank died."""
    import torch.distributed as dist

    while error is not None:
        if isinstance(error, getattr(dist, "DistBackendError", ())) or any(text in str(error) for text in _PEER_FAILURES):
            return True
        error = error.__cause__ or error.__context__
    return False


def peer_loss_advice(cfg: DictConfig, error: BaseException) -> str:
    """Why this DDP process stops (:func:`lost_a_peer`) and the command that continues the run."""
    text = str(error).strip().splitlines()
    reason = (text[-1] if text else type(error).__name__)[:160]
    return (f"another DDP process of this run stopped or stopped answering ({reason}), so this one stops too; "
            f"continue it with: {rerun_command(cfg, ['resume.auto=true'])}")


def in_a_sweep() -> bool:
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweeper_needs_a_value() -> bool:
    """An optimising sweeper (Optuna) reads the job's return value; Hydra's grid sweeper does not."""
    return in_a_sweep() and "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()
