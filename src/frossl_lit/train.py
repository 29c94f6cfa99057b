"""Train one self-supervised method on one dataset: ``python -m frossl_lit.train method=frossl data=cifar10``.

Reads top to bottom: compose the config (Hydra), instantiate data, model, callbacks, loggers and trainer, fit,
write the summary, return the metric a sweeper optimises.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from frossl_lit.callbacks import LossProgressBar
from frossl_lit.config import CONF_DIR
from frossl_lit.config.checks import check_config
from frossl_lit.data import datamodule as build_datamodule
from frossl_lit.runtime import recovery, rundir
from frossl_lit.runtime.checkpointing import DivergedError, read_checkpoint
from frossl_lit.runtime.errors import UserError, exits_on_user_error, fail, unwraps_user_errors, user_message
from frossl_lit.runtime.fileio import atomic_write
from frossl_lit.runtime.hydra_ddp import single_job_command_line
from frossl_lit.runtime.loggers import continue_csv_history, read_csv_history
from frossl_lit.runtime.preemption import PreemptionCheckpoint
from frossl_lit.runtime.resume import (
    RunRecord,
    ScheduleOverride,
    check_finished,
    check_resume,
    check_shapes,
    resolved,
)


@unwraps_user_errors()  # a constructor's UserError (a config value it refuses) as it is, not in Hydra's wrapper
def build(cfg: DictConfig, resume: dict[str, Any] | None = None) -> tuple[L.LightningDataModule, L.LightningModule, list[L.Callback], L.Trainer]:
    """Instantiate the data, model, callbacks, loggers and trainer a config describes (``resume``: the checkpoint
    a run continues from, whose logger run ids are reused)."""
    datamodule = build_datamodule(cfg.data)
    model = instantiate(
        cfg.method,
        backbone=instantiate(cfg.backbone),
        optimizer=instantiate(cfg.schedule.optimizer),
        lr_scheduler=instantiate(cfg.schedule.lr_scheduler) if cfg.schedule.get("lr_scheduler") else None,
        lr_reference_batch=cfg.schedule.get("lr_reference_batch"),
        batch_size=cfg.data.batch_size,
        no_decay_lr_scale=cfg.schedule.get("no_decay_lr_scale", 1.0),
        decay_bias_and_norm=cfg.schedule.get("decay_bias_and_norm", False),
        **OmegaConf.to_container(cfg.get("model") or OmegaConf.create(), resolve=True),  # compile, channels_last
    )
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    callbacks.append(RunRecord(resolved(cfg)))  # every checkpoint carries the run's config (frossl_lit.runtime.resume)
    # a scheduler's warning signal (SIGUSR1/2; SIGTERM in a SLURM job): last.ckpt at the next step, requeue, exit
    callbacks.append(PreemptionCheckpoint(Path(cfg.paths.output_dir, "checkpoints")))
    if resume is not None and (cfg.get("resume") or {}).get("override_schedule"):
        callbacks.append(ScheduleOverride())  # the new schedule, once Lightning has restored the old one
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(LossProgressBar())  # the loss without a host read per step
    run_ids = (resume or {}).get("logger_versions", {})
    loggers = [
        instantiate(c, **({"id": run_ids["WandbLogger"]} if "wandb" in c._target_ and "WandbLogger" in run_ids else {}))
        for c in cfg.logger.values()
        if c is not None
    ]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    return datamodule, model, callbacks, trainer


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg`` and return the run's summary (also written to ``<run dir>/summary.json`` by rank 0)."""
    check_config(cfg)  # mistyped values fail here, before anything heavy
    with rundir.owned(cfg):  # one run per directory; an earlier run in it is continued only when asked
        return _fit(cfg)


def _resume_checkpoint(cfg: DictConfig) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint the run continues from: with ``resume.auto`` its own ``last.ckpt`` when there is one, else
    ``ckpt_path``; checked against this run's shape and schedule (:mod:`frossl_lit.runtime.resume`)."""
    own = rundir.own_checkpoint(cfg.paths.output_dir) if rundir.auto_resume(cfg) else None  # or a requeued SLURM job
    path = str(own) if own is not None else cfg.get("ckpt_path")
    if not path:
        return None, None
    checkpoint = read_checkpoint(path, "ckpt_path")
    override = bool((cfg.get("resume") or {}).get("override_schedule"))
    for notice in check_resume(checkpoint, cfg, "ckpt_path", path, override_schedule=override):
        if not rundir.child_rank():
            print(f"frossl_lit: {notice}", file=sys.stderr)
    check_finished(checkpoint, cfg, "ckpt_path", path)
    return path, checkpoint


def _fit(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path, resume = _resume_checkpoint(cfg)
    history = read_csv_history(ckpt_path, resume["global_step"]) if resume else []
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, callbacks, trainer = build(cfg, resume)
    if resume:
        check_shapes(resume["state_dict"], model.state_dict(), "ckpt_path", ckpt_path)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        continue_csv_history(trainer.loggers, history)  # a resumed run's metrics.csv holds every step

    with single_job_command_line():  # DDP children of a multirun job rejoin this job, not the sweep
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

    best = next((c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor), None)
    last = Path(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    summary = {
        "method": HydraConfig.get().runtime.choices.get("method"),
        "data": HydraConfig.get().runtime.choices.get("data"),
    }
    for callback in callbacks:  # each callback publishes its own final figures (kNN, probe, skipped steps, …)
        summary.update(callback.summary() if hasattr(callback, "summary") else {})
    summary.update({
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        # source images one epoch trains on (all ranks): epochs to a threshold x this = images seen
        "images_per_epoch": (int(trainer.num_training_batches * datamodule.batch_size * trainer.world_size)
                             if math.isfinite(trainer.num_training_batches) else None),
        "wall_seconds": round(model.training_seconds, 2),  # training wall-clock over every resumed segment
        "run_dir": str(Path(cfg.paths.output_dir).resolve()),
        "best_checkpoint": best if best and Path(best).is_file() else None,
        "last_checkpoint": str(last.resolve()) if last.is_file() else None,
    })
    if trainer.is_global_zero:
        atomic_write(Path(cfg.paths.output_dir, "summary.json"), json.dumps(summary, indent=2) + "\n")
        _print_summary(summary)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="frossl_lit summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


# an absolute config path: a relative one resolves against the package (``pkg://frossl_lit/conf``, not a module)
# when main() is called from the console script or in-process rather than as ``python -m``
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    # a `with`, not the decorator: a launcher that pickles this function (submitit) cannot pickle a decorator's
    # generator-based context manager
    with exits_on_user_error():  # a value the user can fix: one line, exit status 2
        return _task(cfg)


def _task(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except DivergedError as error:  # the run itself went wrong, not its configuration
        if recovery.in_a_sweep():  # one diverged setting is a failed trial (NaN to a sweeper), not the end of the sweep
            print(f"\nfrossl_lit: this job failed: {error}\n", file=sys.stderr)
            return float("nan")
        fail(recovery.divergence_advice(cfg, error), status=1)
    except Exception as error:
        if user_message(error) is not None or not recovery.lost_a_peer(error):
            raise
        fail(recovery.peer_loss_advice(cfg, error), status=1)
    metric = cfg.get("optimized_metric") or "probe_top1"
    value = summary.get(metric)
    if not isinstance(value, (int, float)) and recovery.sweeper_needs_a_value():
        figures = sorted(k for k, v in summary.items() if isinstance(v, float))
        raise UserError(f"optimized_metric={metric} is not a figure of this run's summary ({value!r}), so the sweeper "
                        f"has nothing to optimise; name one of {figures}, e.g. optimized_metric=knn_top1")
    return value


def main() -> None:
    """``python -m frossl_lit.train`` / ``frossl-train``: the command line's overrides are checked first, so a mistyped
    group, key or ``+key`` is one line (:mod:`frossl_lit.config.overrides`); then Hydra composes and runs."""
    from frossl_lit.config.overrides import check_command_line

    check_command_line("train")
    _hydra_main()


if __name__ == "__main__":
    # `python -m frossl_lit.train`: run the importable module's main(), so that a launcher which pickles the task
    # function (hydra/launcher=slurm: submitit) pickles frossl_lit.train._hydra_main by reference, not __main__'s by value
    from frossl_lit.train import main as importable_main

    importable_main()
