"""Pure SSL losses: tensors in, ``(total, parts)`` out. No logging, no config, no host synchronisation."""

from frossl_lit.losses.barlow_twins import barlow_twins_loss
from frossl_lit.losses.byol import byol_loss
from frossl_lit.losses.frossl import FORMULATIONS, frossl_loss
from frossl_lit.losses.mmcr import mmcr_loss
from frossl_lit.losses.mocov2 import mocov2_loss
from frossl_lit.losses.simclr import simclr_loss
from frossl_lit.losses.simsiam import simsiam_loss
from frossl_lit.losses.vicreg import vicreg_loss

__all__ = [
    "FORMULATIONS", "barlow_twins_loss", "byol_loss", "frossl_loss", "mmcr_loss", "mocov2_loss", "simclr_loss",
    "simsiam_loss", "vicreg_loss",
]
