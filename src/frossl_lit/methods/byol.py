"""BYOL as a LightningModule: the momentum base with a predictor plus :func:`frossl_lit.losses.byol_loss`."""

from __future__ import annotations

from frossl_lit.losses.byol import byol_loss
from frossl_lit.methods.momentum import MomentumMethod


class BYOL(MomentumMethod):
    """BYOL (Grill et al., NeurIPS 2020): an online predictor (``method.predictor``), an EMA target of backbone and
    projector (``method.momentum_*``). Any number of views; with multi-crop the target sees the large crops."""

    name = "byol"
    views_supported = (2, None)
    requires_predictor = True

    def loss(self, branches):
        return byol_loss(branches.predictions, branches.targets, collective=self.collective)
