"""The two contracts of a training step: :class:`Branches` (what the step computed from the views; what a loss reads)
and :class:`StepOutput` (what the step hands the callbacks; what the probe, kNN, spectrum, throughput, progress bar
and divergence guard read). Callbacks read a step's outputs only through :meth:`StepOutput.of`; a validation
step gives an :class:`EvalOutput`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Branches:
    """What :meth:`SSLMethod.embed_views` gives the loss, one tensor per view.

    - ``features``: the online backbone's features (the probe, kNN and export read this network).
    - ``embeddings``: the online projector's outputs.
    - ``predictions``: the online predictor's outputs, for methods with a ``predictor`` (BYOL, SimSiam), else None.
    - ``targets``: the target network's projections of the target views (no gradient), for methods with a target
      network (BYOL, MoCo), else None. The target views are the first views, those of the first view's size
      (the large crops; :func:`target_view_count`).
    """

    features: list[torch.Tensor]
    embeddings: list[torch.Tensor]
    predictions: list[torch.Tensor] | None = None
    targets: list[torch.Tensor] | None = None


def target_view_count(views: Sequence[torch.Tensor]) -> int:
    """How many leading views have the first view's spatial size: the large crops a teacher or target sees (the
    rule solo-learn applies to multi-crop: crops of the first recipe's size are large)."""
    size = views[0].shape[-2:]
    count = 0
    while count < len(views) and views[count].shape[-2:] == size:
        count += 1
    return count


@dataclass
class StepOutput:
    """One training step's results for the callbacks, all detached from the graph.

    - ``loss``: the total loss; ``parts``: its named parts (a part may hold one value per view), logged as
      ``train/<method>/<part>``.
    - ``features`` / ``embeddings``: the first view's backbone features and projector outputs (B, D).
    - ``labels``: the batch's labels (B,) (-1 where a dataset has none).
    - ``large_features``: the backbone features of every large view (the leading views of the first view's size,
      :func:`target_view_count`), detached: views of tensors the step holds anyway (no copy, no compute); the
      online probe's ``views=large`` (solo-learn's classifier on every large crop). None from a step that has none.
    - ``method``: the method's name, the prefix of its logged parts.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    features: torch.Tensor
    embeddings: torch.Tensor
    labels: torch.Tensor
    method: str
    large_features: list[torch.Tensor] | None = None

    KEY = "step"  # where the output travels in the dict Lightning passes on to ``on_train_batch_end``

    def for_lightning(self, loss: torch.Tensor) -> dict[str, Any]:
        """What ``training_step`` returns: the loss Lightning backpropagates, and this output for the callbacks."""
        return {"loss": loss, self.KEY: self}

    @classmethod
    def of(cls, outputs: Any) -> StepOutput | None:
        """The :class:`StepOutput` among a ``on_train_batch_end`` hook's ``outputs`` (None for a module that returns
        none, e.g. a user's plain LightningModule)."""
        step = outputs.get(cls.KEY) if isinstance(outputs, Mapping) else None
        return step if isinstance(step, cls) else None


@dataclass
class EvalOutput:
    """One validation batch through the backbone (what ``validation_step`` returns and the online probe reads):
    ``features`` (B, D) and ``labels`` (B,)."""

    features: torch.Tensor
    labels: torch.Tensor
