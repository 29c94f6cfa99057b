"""FroSSL as a LightningModule: the base plus :func:`frossl_lit.losses.frossl_loss`."""

from __future__ import annotations

from frossl_lit.losses.frossl import FORMULATIONS, frossl_loss
from frossl_lit.methods.base import SSLMethod
from frossl_lit.runtime.errors import number, require


class FroSSL(SSLMethod):
    """FroSSL (Skean et al., ECCV 2024) on any number of views (augment.num_views, multi-crop included).

    ``formulation`` picks the official code's current loss or one of the paper-era ones; ``balance_views`` keeps
    the invariance/regulariser balance of 2 views at any view count (see :mod:`frossl_lit.losses.frossl`).
    """

    name = "frossl"
    views_supported = (2, None)  # any number of views, multi-crop included

    def __init__(
        self,
        *,
        invariance_weight: float = 1.0,
        formulation: str = "official",
        balance_views: bool = False,
        **base,
    ) -> None:
        if formulation not in FORMULATIONS:
            raise ValueError(f"method.formulation={formulation!r} is not one of {', '.join(FORMULATIONS)}")
        require("method.invariance_weight", invariance_weight, lambda v: number(v) and v >= 0, "must be >= 0",
                "e.g. method.invariance_weight=1.0")
        super().__init__(**base)
        self.invariance_weight, self.formulation, self.balance_views = invariance_weight, formulation, balance_views

    def loss(self, branches):
        return frossl_loss(
            branches.embeddings, self.invariance_weight, self.formulation, self.balance_views, self.collective
        )
