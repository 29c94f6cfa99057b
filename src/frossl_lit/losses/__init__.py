"""Pure SSL losses: tensors in, ``(total, parts)`` out. No logging, no config, no host synchronisation.
(CorInfoMax's also returns its new running estimates: the method stores them.)"""

from frossl_lit.losses.barlow_twins import barlow_twins_loss
from frossl_lit.losses.byol import byol_loss
from frossl_lit.losses.corinfomax import RunningMoments, corinfomax_loss
from frossl_lit.losses.dino import dino_centre_update, dino_loss, teacher_temperature_at
from frossl_lit.losses.frossl import FORMULATIONS, frossl_loss
from frossl_lit.losses.mmcr import mmcr_loss
from frossl_lit.losses.mocov2 import mocov2_loss
from frossl_lit.losses.simclr import simclr_loss
from frossl_lit.losses.simsiam import simsiam_loss
from frossl_lit.losses.swav import sinkhorn_knopp, swav_loss
from frossl_lit.losses.vicreg import vicreg_loss
from frossl_lit.losses.wmse import whiten, wmse_loss

__all__ = [
    "FORMULATIONS", "RunningMoments", "barlow_twins_loss", "byol_loss", "corinfomax_loss", "dino_centre_update",
    "dino_loss", "frossl_loss", "mmcr_loss", "mocov2_loss", "simclr_loss", "simsiam_loss", "sinkhorn_knopp", "swav_loss",
    "teacher_temperature_at", "vicreg_loss", "whiten", "wmse_loss",
]
