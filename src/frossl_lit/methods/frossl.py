"""FroSSL as a LightningModule: the base plus :func:`frossl_lit.losses.frossl_loss`."""

from __future__ import annotations

from frossl_lit.losses.frossl import NORMALIZATIONS, frossl_loss
from frossl_lit.methods.base import SSLMethod


class FroSSL(SSLMethod):
    """FroSSL (Skean et al., ECCV 2024) on any number of views (augment.num_views, multi-crop included)."""

    name = "frossl"

    def __init__(self, *, invariance_weight: float = 1.0, normalization: str = "dimension", **base) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"method.normalization={normalization!r} is not one of {', '.join(NORMALIZATIONS)}"
            )
        if invariance_weight < 0:
            raise ValueError(f"method.invariance_weight={invariance_weight} must be non-negative")
        super().__init__(**base)
        self.invariance_weight, self.normalization = invariance_weight, normalization

    def loss(self, embeddings):
        return frossl_loss(embeddings, self.invariance_weight, self.normalization, self.collective)
