"""W-MSE as a LightningModule: the base plus :func:`frossl_lit.losses.wmse.wmse_loss`, with the sub-batch
permutations drawn from a generator seeded by (run seed, global step)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from frossl_lit.losses.wmse import wmse_loss
from frossl_lit.methods.base import SSLMethod
from frossl_lit.methods.step import target_view_count
from frossl_lit.runtime.errors import UserError, number, positive_int, refuse, require


def _batch_fits(key_batch: str, batch: int, size: int) -> str | None:
    """Why ``size`` cannot split ``batch`` into whitening sub-batches (None when it can)."""
    if size > batch:
        return f"is larger than {key_batch} ({batch}): a sub-batch larger than the batch cannot be whitened"
    if batch % size:
        return f"does not divide {key_batch} ({batch}) into whole sub-batches"
    return None


class WMSE(SSLMethod):
    """W-MSE (Ermolov et al., ICML 2021): the batch split into sub-batches of ``whitening_size`` samples, each view of
    each whitened by Cholesky, ``whitening_iters`` times with fresh splits; the loss is the normalised MSE of the
    whitened views over every pair of views.

    Views: any number of large crops (``augment.num_views`` ≥ 2; the paper's "W-MSE 4" takes 4). Small crops
    (``augment.small_views``) run through the network but are not in the loss, as in solo-learn (its loss loops over
    ``num_large_crops`` only; its ImageNet-100 setting adds 6 small crops that only pass forward).

    The permutations of step k are drawn from ``torch.Generator().manual_seed(f(seed, k))``: identical on every
    rank (the sub-batches of the global batch under ``global_batch=True``) and again after a resume. Under
    gradient accumulation the micro-batches of one optimizer step share them.
    """

    name = "wmse"
    views_supported = (2, None)

    def __init__(
        self,
        *,
        whitening_size: int = 128,
        whitening_iters: int = 1,
        whitening_eps: float = 0.0,
        detach_second_view: bool = False,
        seed: int = 0,
        **base,
    ) -> None:
        require("method.whitening_size", whitening_size, lambda v: positive_int(v) and v >= 2,
                "must be a whole number of samples >= 2 per whitening sub-batch", "e.g. method.whitening_size=128")
        require("method.whitening_iters", whitening_iters, positive_int, "must be a whole number >= 1",
                "e.g. method.whitening_iters=1")
        require("method.whitening_eps", whitening_eps, lambda v: number(v) and 0 <= v <= 1,
                "must be a covariance shrinkage weight in [0, 1]", "e.g. method.whitening_eps=0.0")
        require("method.detach_second_view", detach_second_view, lambda v: isinstance(v, bool), "must be true or false",
                "e.g. method.detach_second_view=false")
        require("method.seed", seed, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                "must be a whole number >= 0 (conf/method/wmse.yaml: the run's seed)", "e.g. method.seed=${seed}")
        super().__init__(**base)
        out_dim = self.projector.out_dim
        if whitening_eps == 0 and out_dim >= whitening_size:
            refuse("method.projector.out_dim", out_dim,
                   f"must be < method.whitening_size={whitening_size}: {whitening_size} centred samples span at most "
                   f"{whitening_size - 1} dimensions, so the covariance is singular and its Cholesky fails",
                   "raise method.whitening_size (the batch permitting), lower method.projector.out_dim, or set "
                   "method.whitening_eps > 0")
        if not self.collective.global_batch and self.batch_size:
            why = _batch_fits("data.batch_size", self.batch_size, whitening_size)
            if why:
                refuse("method.whitening_size", whitening_size, why, f"with method.global_batch=false it splits each device's batch; e.g. method.whitening_size={self.batch_size}")
        self.whitening_size, self.whitening_iters = whitening_size, whitening_iters
        self.whitening_eps, self.detach_second_view, self.seed = whitening_eps, detach_second_view, seed

    @classmethod
    def check_config(cls, cfg: DictConfig, global_batch: int | None) -> None:
        """The sub-batch against the batch it splits, on the composed config (``frossl_lit.config.checks``):
        the global batch (``data.batch_size`` × devices × nodes, where those are numbers) or, with
        ``method.global_batch=false``, the per-device batch."""
        size = OmegaConf.select(cfg, "method.whitening_size")
        per_device = OmegaConf.select(cfg, "data.batch_size")
        if not (positive_int(size) and positive_int(per_device)):
            return  # refused, with its own message, where the value is used
        if OmegaConf.select(cfg, "method.global_batch", default=True):
            batch, key = global_batch, "the global batch (data.batch_size × devices)"
        else:
            batch, key = per_device, "data.batch_size (method.global_batch=false: each device whitens its own)"
        why = _batch_fits(key, batch, size) if batch else None
        if why:
            refuse("method.whitening_size", size, why, f"e.g. method.whitening_size={batch} (the whole batch)")

    def setup(self, stage: str) -> None:
        """Check again with the real world size (``trainer.devices=auto`` is known only now)."""
        trainer = self._trainer
        if trainer is not None and self.batch_size:
            batch = self.batch_size * (trainer.world_size if self.collective.global_batch else 1)
            why = _batch_fits("the global batch" if self.collective.global_batch else "data.batch_size", batch, self.whitening_size)
            if why:
                raise UserError(f"method.whitening_size={self.whitening_size} {why}; e.g. method.whitening_size={batch}")

    def permutations(self, samples: int, step: int | None = None) -> torch.Tensor:
        """The (whitening_iters, samples) sub-batch permutations of optimizer step ``step`` (default: the current
        one), a function of (seed, step) only."""
        step = self.global_step if step is None else step
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) % 2**63)
        return torch.stack([torch.randperm(samples, generator=generator) for _ in range(self.whitening_iters)])

    def embed_views(self, views):
        self._large_views = target_view_count(views)
        return super().embed_views(views)

    def loss(self, branches):
        large = branches.embeddings[: getattr(self, "_large_views", len(branches.embeddings))]
        samples = large[0].shape[0] * self.collective.world_size
        permutations = self.permutations(samples).to(large[0].device, non_blocking=True)
        return wmse_loss(large, permutations, self.whitening_size, self.whitening_eps, self.detach_second_view,
                         collective=self.collective)
