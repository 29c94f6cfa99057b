"""Offline evaluation of a pretraining checkpoint: the backbone and the data come from the run's own config.

A checkpoint written by ``frossl_lit.train`` lives in ``<run dir>/checkpoints/``; the run's composed config is
``<run dir>/.hydra/config.yaml``. :func:`load_pretrained` rebuilds the run's backbone with the checkpoint's
weights and its DataModule (``data_overrides`` such as ``data.root=/elsewhere`` apply on top).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from frossl_lit.errors import UserError


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
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt={ckpt} does not exist; point it at a run's checkpoints/last.ckpt or best-*.ckpt")
    cfg = find_run_config(path, pretrain_config)
    if data_overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(data_overrides)))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    backbone: nn.Module = instantiate(cfg.backbone)
    backbone.load_state_dict(backbone_state_dict(checkpoint))
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    if not datamodule.has_labels:
        raise UserError("the run's dataset has no labelled validation split: nothing to evaluate against")
    return cfg, datamodule, backbone.eval()


@torch.no_grad()
def embed(backbone: nn.Module, datamodule, loader, device: torch.device, crop_recipe=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of a loader; ``crop_recipe`` applies one augmented view (linear-protocol training)."""
    features, labels = [], []
    for images, targets in loader:
        images = images.to(device)
        if crop_recipe is None:
            x = datamodule.augment.eval_transform(images)
        else:
            x = datamodule.augment._finish(datamodule.augment.augment_one(images.float() / 255, crop_recipe))
        features.append(backbone(x).float())
        labels.append(targets.to(device))
    return torch.cat(features), torch.cat(labels)


def top_accuracies(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, prefix: str) -> dict[str, float]:
    """``{prefix}_top1`` and (with at least 5 classes) ``{prefix}_top5`` of class scores, via torchmetrics."""
    from torchmetrics.functional.classification import multiclass_accuracy

    result = {f"{prefix}_top1": multiclass_accuracy(scores, labels, num_classes, top_k=1, average="micro").item()}
    if num_classes >= 5:
        result[f"{prefix}_top5"] = multiclass_accuracy(scores, labels, num_classes, top_k=5, average="micro").item()
    return result


def run_evaluation(name: str, evaluate, cfg: DictConfig) -> float:
    """Run an offline evaluation; a user error prints its message alone and exits with status 2."""
    import sys

    try:
        return evaluate(cfg)[f"{name}_top1"]
    except UserError as error:
        print(f"\nfrossl_lit: error: {error}\n", file=sys.stderr)
        sys.exit(2)


def resolve_device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def write_result(output_dir: str, name: str, result: dict) -> Path:
    out = Path(output_dir) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out
