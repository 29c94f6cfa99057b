"""SwAV as a LightningModule: the base, a prototype layer, an optional queue, :func:`frossl_lit.losses.swav_loss`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from frossl_lit.losses.common import unit_rows
from frossl_lit.losses.swav import swav_loss
from frossl_lit.methods.base import SSLMethod, target_view_count
from frossl_lit.methods.queue import KeyQueue
from frossl_lit.runtime.errors import (
    UserError,
    number,
    positive_int,
    require,
    require_temperature,
    require_whole,
    whole,
)

PROTOTYPE_NORMS = ("step", "weight_norm")


class SwAV(SSLMethod):
    """SwAV (Caron et al., NeurIPS 2020) as the official code and solo-learn train it: projector → unit sphere →
    ``num_prototypes`` prototypes (a Linear without bias with unit rows; frozen, their gradient dropped, for the first
    ``freeze_prototypes_epochs`` epochs, counted by ``trainer.current_epoch``), Sinkhorn-Knopp codes of the large crops (the leading views of the first
    view's size) predicted from every other view, large and small (multi-crop).

    ``prototype_norm``: ``step`` renormalises the prototypes in place before every step (the official code; the
    gradient and the optimizer see the unit weights), ``weight_norm`` reparametrises them as solo-learn does, w = v/‖v‖
    per row with the gain fixed at 1 (the same forward; the gradient projected onto the sphere and scaled by 1/‖v‖,
    weight decay and LARS on v).

    ``queue_size`` > 0 keeps the unit embeddings of the large crops of the last ``queue_size`` samples of the global
    batch (one queue per large crop, zeros at the start, filled after every optimizer step from the first); from
    epoch ``epoch_queue_starts`` on they are scored with the current prototypes and added to the Sinkhorn input (as
    solo-learn; the official code adds them once the queue is full). ``large_views``: the number of large crops
    (``augment.num_views``), the queues' count.
    """

    name = "swav"
    views_supported = (2, None)
    queue_optional = True  # method.queue_size=0: no queue (frossl_lit.config.checks)

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        num_prototypes: int = 3000,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        queue_size: int = 0,
        epoch_queue_starts: int = 15,
        freeze_prototypes_epochs: int = 1,
        large_views: int = 2,
        prototype_norm: str = "step",
        **base,
    ) -> None:
        require_temperature("method.temperature", temperature, 0.1)
        require("method.sinkhorn_epsilon", sinkhorn_epsilon, lambda v: number(v) and v > 0,
                "must be Sinkhorn's entropy weight > 0", "e.g. method.sinkhorn_epsilon=0.05")
        require_whole("method.sinkhorn_iterations", sinkhorn_iterations, 1, "iterations", 3)
        require_whole("method.num_prototypes", num_prototypes, 1, "prototypes", 3000)
        require("method.queue_size", queue_size, lambda v: whole(v, 0), "must be 0 (no queue) or a whole number of embeddings",
                "e.g. method.queue_size=0")
        require("method.epoch_queue_starts", epoch_queue_starts, lambda v: whole(v, 0), "must be an epoch >= 0",
                "e.g. method.epoch_queue_starts=15")
        require_whole("method.freeze_prototypes_epochs", freeze_prototypes_epochs, 0, "epochs", 1)
        require("method.large_views", large_views, positive_int, "must be the number of large crops >= 1",
                "leave it at ${augment.num_views}")
        require("method.prototype_norm", prototype_norm, lambda v: v in PROTOTYPE_NORMS, f"must be {' or '.join(PROTOTYPE_NORMS)}",
                "e.g. method.prototype_norm=step")
        super().__init__(**base)
        self.temperature, self.sinkhorn_epsilon, self.sinkhorn_iterations = temperature, sinkhorn_epsilon, sinkhorn_iterations
        self.epoch_queue_starts, self.freeze_prototypes_epochs = epoch_queue_starts, freeze_prototypes_epochs
        self.large_views = large_views
        self.prototype_norm = prototype_norm
        self.prototypes = nn.Linear(self.projector.out_dim, num_prototypes, bias=False)
        if prototype_norm == "weight_norm":  # solo-learn: weight_norm with weight_g filled with 1 and frozen
            self.prototypes = parametrizations.weight_norm(self.prototypes, dim=0)
            gain = self.prototypes.parametrizations.weight.original0
            gain.data.fill_(1.0)
            gain.requires_grad_(False)
        else:
            self.normalize_prototypes()
        self.queue = KeyQueue(large_views, queue_size, self.projector.out_dim, init="zeros") if queue_size else None
        self._pending: list[list[torch.Tensor]] = []  # each micro-batch's large-crop embeddings, queued after the step

    def setup(self, stage: str) -> None:
        """The queue must hold at least one global batch (checked on the config too, where the device count is a
        number; here with the real world size)."""
        trainer = self._trainer
        if self.queue is not None and trainer is not None and self.batch_size:
            global_batch = self.batch_size * trainer.world_size
            if self.queue.size < global_batch:
                raise UserError(
                    f"method.queue_size={self.queue.size} is smaller than the global batch ({global_batch}); "
                    f"give it at least one batch, e.g. method.queue_size={max(3840, global_batch)}, or 0 for no queue"
                )

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Scale every prototype (row of the weight) back to unit norm (``prototype_norm=step``)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def training_step(self, batch, batch_idx):
        if self.prototype_norm == "step":
            self.normalize_prototypes()  # before every step, as the official main_swav.py
        return super().training_step(batch, batch_idx)

    def queue_in_use(self) -> bool:
        return self.queue is not None and self.current_epoch >= self.epoch_queue_starts

    def loss(self, branches):
        large = self._large  # the large crops' count, read off the views' sizes in embed_views
        if self.queue is not None and self.training:
            self._pending.append([unit_rows(z.detach()) for z in branches.embeddings[:large]])
        queue = self.queue.keys if self.queue_in_use() else None
        return swav_loss(branches.embeddings, self.prototypes.weight, queue, self.temperature, self.sinkhorn_epsilon,
                         self.sinkhorn_iterations, large, collective=self.collective)

    def embed_views(self, views):
        large = target_view_count(views)
        if self.queue is not None and large != self.large_views:
            raise ValueError(f"method.large_views={self.large_views} queues, but the batch has {large} large crops; "
                             "set method.large_views=${augment.num_views}")
        self._large = large
        return super().embed_views(views)

    def on_after_backward(self) -> None:
        """Drop the prototypes' gradient during the first ``freeze_prototypes_epochs`` epochs (solo-learn's
        ``on_after_backward``; the optimizer skips a parameter without a gradient)."""
        if self.current_epoch < self.freeze_prototypes_epochs:
            for parameter in self.prototypes.parameters():
                parameter.grad = None

    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        for embeddings in self._pending:  # every micro-batch's, with gradient accumulation
            self.queue.push(embeddings)
        self._pending = []
