"""SimSiam as a LightningModule: the base with a predictor plus :func:`frossl_lit.losses.simsiam_loss`."""

from __future__ import annotations

from frossl_lit.losses.simsiam import simsiam_loss
from frossl_lit.methods.base import SSLMethod


class SimSiam(SSLMethod):
    """SimSiam (Chen and He, CVPR 2021): a predictor (``method.predictor``) and a stop-gradient, no target
    network. ``predictor_static_lr`` (default true, as the paper) keeps the predictor at the peak lr."""

    name = "simsiam"
    views_supported = (2, 2)
    requires_predictor = True

    def __init__(self, *, predictor_static_lr: bool = True, **base) -> None:
        super().__init__(predictor_static_lr=predictor_static_lr, **base)

    def loss(self, branches):
        return simsiam_loss(branches.predictions, branches.embeddings, collective=self.collective)
