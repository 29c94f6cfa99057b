"""Top-k accuracy, from torchmetrics: one definition for every evaluation."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def top_k_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """``{prefix}top1`` and, with at least 5 classes, ``{prefix}top5`` (micro accuracy over samples).

    Under DDP ``compute()`` sums the counts of every rank (torchmetrics syncs its states), so a figure over
    sharded queries is exact; ``update(scores, labels)`` takes class scores (N, C) and labels (N,).
    """
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes >= 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)
