"""MMCR as a LightningModule: the base plus :func:`frossl_lit.losses.mmcr.mmcr_loss`."""

from __future__ import annotations

from frossl_lit.losses.mmcr import mmcr_loss
from frossl_lit.methods.base import SSLMethod


class MMCR(SSLMethod):
    """MMCR (Yerxa et al., NeurIPS 2023) on any number of views; ``local_weight`` is the paper's λ."""

    name = "mmcr"
    views_supported = (2, None)

    def __init__(self, *, local_weight: float = 0.0, **base) -> None:
        if local_weight < 0:
            raise ValueError(f"method.local_weight={local_weight} must be non-negative")
        super().__init__(**base)
        self.local_weight = local_weight

    def loss(self, branches):
        return mmcr_loss(branches.embeddings, self.local_weight, collective=self.collective)
