"""SimCLR as a LightningModule: the base plus :func:`frossl_lit.losses.simclr_loss`."""

from __future__ import annotations

from frossl_lit.losses.simclr import simclr_loss
from frossl_lit.methods.base import SSLMethod
from frossl_lit.runtime.errors import require_temperature


class SimCLR(SSLMethod):
    """SimCLR (Chen et al., ICML 2020) on any number of views (V > 2: multi-positive contrast, as solo-learn)."""

    name = "simclr"
    views_supported = (2, None)

    def __init__(self, *, temperature: float = 0.2, **base) -> None:
        require_temperature("method.temperature", temperature, 0.2)
        super().__init__(**base)
        self.temperature = temperature

    def loss(self, branches):
        return simclr_loss(branches.embeddings, self.temperature, collective=self.collective)
