"""CorInfoMax as a LightningModule: the base, each branch's running covariance and mean (buffers), and
:func:`frossl_lit.losses.corinfomax_loss`."""

from __future__ import annotations

import torch

from frossl_lit.losses.corinfomax import corinfomax_loss
from frossl_lit.methods.base import SSLMethod
from frossl_lit.runtime.errors import number, require


def _forgetting(key: str, value) -> None:
    require(f"method.{key}", value, lambda v: number(v) and 0.0 <= v <= 1.0,
            "must be a forgetting factor in [0, 1] (the weight of the old estimate)", f"e.g. method.{key}=0.01")


class CorInfoMax(SSLMethod):
    """CorInfoMax (Ozsoy et al., NeurIPS 2022): log-determinant of each branch's running covariance plus α × MSE.

    The running estimates are buffers (so in every checkpoint), in float64 as in the sources: ``covariances``
    (2, D, D), starting at ``initial_covariance`` × I (``R_ini``), and ``means`` (2, D), starting at 0. Each step's
    loss reads them; the new estimates it returns are stored after the optimizer step. Under DDP with
    ``global_batch=True`` they are those of the global batch, the same on every rank. With ``global_batch=False``
    each rank estimates from its own batch and keeps its own, as the FroSSL fork's plain tensors do: DDP broadcasts
    rank 0's buffers before every forward, so each rank also holds its own copy outside the buffers and the loss
    reads that one; the checkpoint (written by rank 0) holds rank 0's, and a resumed run starts every rank from
    them (the fork checkpoints none and restarts from R_ini). With gradient accumulation every micro-batch of a step
    reads the same estimates, and the step stores the mean of the micro-batches' new ones (the sources update after
    every batch and do not accumulate).
    """

    name = "corinfomax"
    views_supported = (2, 2)

    def __init__(
        self,
        *,
        invariance_weight: float = 500.0,
        covariance_forgetting: float = 0.01,
        mean_forgetting: float = 0.01,
        initial_covariance: float = 1.0,
        epsilon: float = 1e-6,
        normalize: bool = True,
        **base,
    ) -> None:
        require("method.invariance_weight", invariance_weight, lambda v: number(v) and v >= 0,
                "must be >= 0 (α, the weight of the invariance term)", "e.g. method.invariance_weight=500.0")
        _forgetting("covariance_forgetting", covariance_forgetting)
        _forgetting("mean_forgetting", mean_forgetting)
        require("method.initial_covariance", initial_covariance, lambda v: number(v) and v > 0,
                "must be > 0 (the running covariance starts at this multiple of the identity)",
                "e.g. method.initial_covariance=1.0")
        require("method.epsilon", epsilon, lambda v: number(v) and v > 0,
                "must be > 0 (added to the covariance's diagonal before the log-determinant)", "e.g. method.epsilon=1e-6")
        require("method.normalize", normalize, lambda v: isinstance(v, bool), "must be true or false",
                "e.g. method.normalize=true")
        super().__init__(**base)
        self.weights = {
            "invariance_weight": invariance_weight,
            "covariance_forgetting": covariance_forgetting,
            "mean_forgetting": mean_forgetting,
            "epsilon": epsilon,
            "normalize": normalize,
        }
        dim = self.projector.out_dim
        eye = torch.eye(dim, dtype=torch.float64)
        self.register_buffer("covariances", initial_covariance * torch.stack([eye, eye]))
        self.register_buffer("means", torch.zeros(2, dim, dtype=torch.float64))
        self._pending: list = []  # each micro-batch's new estimates since the last optimizer step
        self._own: tuple[torch.Tensor, torch.Tensor] | None = None  # this rank's estimates (global_batch=False)

    def loss(self, branches):
        covariances, means = self._own if self._own is not None else (self.covariances, self.means)
        total, parts, state = corinfomax_loss(branches.embeddings, covariances, means, **self.weights,
                                              collective=self.collective)
        if self.training:
            self._pending.append(state)
        return total, parts

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        if not self._pending:
            return
        covariances = torch.stack([state.covariances for state in self._pending]).mean(dim=0)
        means = torch.stack([state.means for state in self._pending]).mean(dim=0)
        self.covariances.copy_(covariances)
        self.means.copy_(means)
        self._pending = []
        if not self.collective.global_batch:  # out of reach of DDP's broadcast of rank 0's buffers
            self._own = (self.covariances.clone(), self.means.clone())

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        self._own = None  # read the checkpoint's estimates
