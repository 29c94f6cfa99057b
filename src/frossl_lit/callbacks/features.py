"""Backbone features of a whole loader, in eval mode, for evaluation callbacks."""

from __future__ import annotations

import lightning as L
import torch


@torch.no_grad()
def extract_features(trainer: L.Trainer, pl_module: L.LightningModule, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` of this rank's share of ``loader``: un-augmented (the DataModule's eval transform),
    backbone in eval mode (restored afterwards), under the trainer's precision context."""
    transform = trainer.datamodule.augment.eval_transform
    was_training = pl_module.training
    pl_module.eval()
    features, labels = [], []
    with trainer.precision_plugin.forward_context():
        for images, targets in loader:
            features.append(pl_module.backbone(transform(images.to(pl_module.device, non_blocking=True))).float())
            labels.append(targets.to(pl_module.device))
    pl_module.train(was_training)
    if not features:
        empty = torch.zeros(0, pl_module.backbone.out_dim, device=pl_module.device)
        return empty, torch.zeros(0, dtype=torch.long, device=pl_module.device)
    return torch.cat(features), torch.cat(labels)
