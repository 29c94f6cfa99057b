"""Offline evaluation of a pretraining checkpoint: the backbone and the data come from the run's own config.

A checkpoint written by ``frossl_lit.train`` lives in ``<run dir>/checkpoints/``; the run's composed config is
``<run dir>/.hydra/config.yaml``. :func:`load_pretrained` rebuilds the run's backbone with the checkpoint's
weights and its DataModule (``data_overrides`` such as ``data.root=/elsewhere`` apply on top);
:func:`report` scores the predictions and writes ``<name>.json``; :func:`run_evaluation` is each CLI's body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from frossl_lit.config.values import check_evaluation
from frossl_lit.data import datamodule as build_datamodule
from frossl_lit.evaluation.metrics import top_k_metrics
from frossl_lit.runtime.checkpointing import read_checkpoint
from frossl_lit.runtime.errors import UserError, exits_on_user_error
from frossl_lit.runtime.fileio import atomic_write
from frossl_lit.runtime.resume import check_recorded_backbone, check_shapes


def find_run_config(ckpt: Path, pretrain_config: str | None = None) -> DictConfig:
    candidates = [Path(pretrain_config)] if pretrain_config else [ckpt.parent.parent / ".hydra" / "config.yaml", ckpt.parent / ".hydra" / "config.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return OmegaConf.load(candidate)
    raise UserError(
        f"no pretraining config found for {ckpt} (looked for {', '.join(map(str, candidates))}). Pass "
        f"pretrain_config=<run dir>/.hydra/config.yaml, or keep the checkpoint inside its run directory."
    )


def backbone_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise UserError("the checkpoint holds no backbone.* weights; is it a frossl_lit pretraining checkpoint?")
    return state


def load_pretrained(ckpt: str, data_overrides: list[str] | None = None, pretrain_config: str | None = None):
    """``(run config, DataModule, backbone in eval mode with the checkpoint's weights)``."""
    checkpoint = read_checkpoint(ckpt, "ckpt")  # missing, truncated, not a checkpoint: one line
    config_path = pretrain_config or str(Path(ckpt).expanduser().parent.parent / ".hydra" / "config.yaml")
    cfg = find_run_config(Path(ckpt).expanduser(), pretrain_config)
    check_recorded_backbone(checkpoint, cfg, "ckpt", ckpt, config_path)  # the checkpoint records its backbone
    if data_overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(data_overrides)))
    backbone: nn.Module = instantiate(cfg.backbone)
    weights = backbone_state_dict(checkpoint)
    check_shapes(weights, backbone.state_dict(), "ckpt", ckpt)  # checkpoints from before the record: by shape
    backbone.load_state_dict(weights)
    datamodule = build_datamodule(cfg.data)
    datamodule.setup()
    if not datamodule.has_labels:
        raise UserError("the run's dataset has no labelled validation split: nothing to evaluate against")
    return cfg, datamodule, backbone.eval()


def report(cfg: DictConfig, name: str, scores: torch.Tensor, labels: torch.Tensor, num_classes: int, **details: Any) -> dict:
    """Top-1 / top-5 of ``scores`` against ``labels`` as ``{name}_top1`` / ``{name}_top5``, with ``details``, written
    to ``<output dir>/{name}.json`` and printed in one line."""
    metrics = top_k_metrics(num_classes, prefix=f"{name}_").to(scores.device)
    metrics.update(scores, labels)
    figures = {key: float(value) for key, value in metrics.compute().items()}
    result = {"ckpt": str(cfg.ckpt), **figures, **details, "num_val": len(labels)}
    out = write_result(cfg.paths.output_dir, name, result)
    print(f"{name} top-1 {result[f'{name}_top1']:.4f} ({len(labels)} images) → {out}")
    return result


@exits_on_user_error()
def run_evaluation(name: str, evaluate, cfg: DictConfig) -> float:
    """Run an offline evaluation and return its top-1; a user error (:func:`frossl_lit.config.values.check_evaluation`
    first) is one line and exit status 2 (:func:`frossl_lit.runtime.errors.exits_on_user_error`)."""
    check_evaluation(cfg, name)
    return evaluate(cfg)[f"{name}_top1"]


def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def write_result(output_dir: str, name: str, result: dict) -> Path:
    """``<output_dir>/<name>.json``, written whole (an unwritable directory is one line)."""
    return atomic_write(Path(output_dir) / f"{name}.json", json.dumps(result, indent=2) + "\n")
