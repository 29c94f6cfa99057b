"""VICReg as a LightningModule: the base plus :func:`frossl_lit.losses.vicreg_loss`."""

from __future__ import annotations

from frossl_lit.losses.vicreg import vicreg_loss
from frossl_lit.methods.base import SSLMethod
from frossl_lit.runtime.errors import number, require


class VICReg(SSLMethod):
    """VICReg (Bardes et al., ICLR 2022); weights default to the paper's 25 / 25 / 1."""

    name = "vicreg"
    views_supported = (2, 2)

    def __init__(
        self, *, invariance_weight: float = 25.0, variance_weight: float = 25.0, covariance_weight: float = 1.0, **base
    ) -> None:
        require("method.invariance_weight", invariance_weight, lambda v: number(v) and v >= 0, "must be >= 0",
                "e.g. method.invariance_weight=25.0")
        super().__init__(**base)
        self.weights = {
            "invariance_weight": invariance_weight,
            "variance_weight": variance_weight,
            "covariance_weight": covariance_weight,
        }

    def loss(self, branches):
        return vicreg_loss(branches.embeddings, **self.weights, collective=self.collective)
