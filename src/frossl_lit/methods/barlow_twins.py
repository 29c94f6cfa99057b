"""Barlow Twins as a LightningModule: the base plus :func:`frossl_lit.losses.barlow_twins_loss`."""

from __future__ import annotations

from frossl_lit.losses.barlow_twins import barlow_twins_loss
from frossl_lit.methods.base import SSLMethod


class BarlowTwins(SSLMethod):
    """Barlow Twins (Zbontar et al., ICML 2021); off-diagonal weight 0.0051 as in the paper."""

    name = "barlow_twins"
    views_supported = (2, 2)

    def __init__(self, *, off_diagonal_weight: float = 0.0051, scale: float = 1.0, **base) -> None:
        super().__init__(**base)
        self.off_diagonal_weight, self.scale = off_diagonal_weight, scale

    def loss(self, branches):
        return barlow_twins_loss(branches.embeddings, self.off_diagonal_weight, self.scale, collective=self.collective)
