"""Backbone features of a whole loader."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    loader,
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    context: contextlib.AbstractContextManager | None = None,
    progress: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, F) float32, labels (N,))`` of every ``(uint8 images, labels)`` batch of ``loader``.

    ``transform`` turns a uint8 batch on ``device`` into the backbone's input (the DataModule's
    ``augment.eval_transform``, or one augmented view for the linear protocol). The backbone runs in eval mode
    (its mode is restored afterwards) inside ``context`` (e.g. the trainer's precision context). ``progress``: a
    label for a progress bar with an ETA on stderr (``None``: silent).
    """
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    try:
        with context or contextlib.nullcontext():
            for images, targets in _with_progress(loader, progress):
                features.append(backbone(transform(images.to(device, non_blocking=True))).float())
                labels.append(targets.to(device))
    finally:
        backbone.train(was_training)
    if not features:  # an empty shard (more ranks than evaluation batches)
        return torch.zeros(0, backbone.out_dim, device=device), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(features), torch.cat(labels)


def _with_progress(loader, label: str | None):
    if label is None:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=label, total=len(loader), leave=False, unit="batch", dynamic_ncols=True)


def model_features(trainer, pl_module, loader, label: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-augmented backbone features of this rank's share of ``loader`` during a Lightning run: the DataModule's
    eval transform, the module's device, the trainer's precision context (for the evaluation callbacks). A
    progress bar labelled ``label`` shows on rank 0 when the trainer shows its own."""
    transform = trainer.datamodule.augment.eval_transform
    context = trainer.precision_plugin.forward_context()
    shown = label if trainer.progress_bar_callback is not None and trainer.is_global_zero else None
    return extract_features(pl_module.backbone, loader, transform, pl_module.device, context, shown)
