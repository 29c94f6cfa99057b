"""Train one self-supervised method on one dataset: ``python -m frossl_lit.train method=frossl data=cifar10``.

Reads top to bottom: compose the config (Hydra), instantiate data, model, callbacks, loggers and trainer, fit,
write the summary, return the metric a sweeper optimises.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from frossl_lit.callbacks.knn import KNNEvaluation
from frossl_lit.callbacks.online_probe import OnlineLinearProbe
from frossl_lit.errors import UserError
from frossl_lit.hydra_ddp import single_job_command_line


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, list[L.Callback], L.Trainer]:
    """Instantiate the data, model, callbacks, loggers and trainer a config describes."""
    datamodule = instantiate(cfg.data)
    model = instantiate(
        cfg.method,
        backbone=instantiate(cfg.backbone),
        optimizer=instantiate(cfg.schedule.optimizer),
        lr_scheduler=instantiate(cfg.schedule.lr_scheduler) if cfg.schedule.get("lr_scheduler") else None,
        lr_reference_batch=cfg.schedule.get("lr_reference_batch"),
        no_decay_lr_scale=cfg.schedule.get("no_decay_lr_scale", 1.0),
    )
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    run_ids = _logger_versions(cfg.get("ckpt_path"))
    loggers = [
        instantiate(c, **({"id": run_ids["WandbLogger"]} if "wandb" in c._target_ and "WandbLogger" in run_ids else {}))
        for c in cfg.logger.values()
        if c is not None
    ]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    return datamodule, model, callbacks, trainer


def _logger_versions(ckpt_path: str | None) -> dict[str, str]:
    """The logger run ids a checkpoint recorded (empty without a checkpoint)."""
    if not ckpt_path:
        return {}
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path} does not exist; point it at a run's checkpoints/last.ckpt")
    import torch

    return torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True).get("logger_versions", {})


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg`` and return the run's summary (also written to ``<run dir>/summary.json`` by rank 0)."""
    started = time.time()
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model, callbacks, trainer = build(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    with single_job_command_line():  # DDP children of a multirun job rejoin this job, not the sweep
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    knn = next((c for c in callbacks if isinstance(c, KNNEvaluation)), None)
    probe = next((c for c in callbacks if isinstance(c, OnlineLinearProbe)), None)
    best = next((c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor), None)
    last = Path(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    summary = {
        "method": HydraConfig.get().runtime.choices.get("method"),
        "data": HydraConfig.get().runtime.choices.get("data"),
        "probe_top1": probe.last_top1 if probe else None,
        "probe_top5": probe.last_top5 if probe else None,
        "knn_top1": knn.last_top1 if knn else None,
        "knn_top1_init": knn.initial_top1 if knn else None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "wall_seconds": round(time.time() - started, 2),
        "run_dir": str(Path(cfg.paths.output_dir).resolve()),
        "best_checkpoint": best or None,
        "last_checkpoint": str(last.resolve()) if last.is_file() else None,
    }
    if trainer.is_global_zero:
        Path(cfg.paths.output_dir, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _print_summary(summary)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="frossl_lit summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def _fail(message: str) -> None:
    print(f"\nfrossl_lit: error: {message}\n", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except UserError as error:
        _fail(str(error))
    except InstantiationException as error:  # a constructor rejected a config value: show its own message
        cause = error.__cause__
        if isinstance(cause, UserError):
            _fail(str(cause))
        _fail(f"{error}" if cause is None else f"{error}".split("\n")[0] + f"\n  {type(cause).__name__}: {cause}")
    return summary["probe_top1"]


if __name__ == "__main__":
    main()
