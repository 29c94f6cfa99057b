"""Pure SSL losses: tensors in, ``(total, parts)`` out. No logging, no config, no host synchronisation."""

from frossl_lit.losses.barlow_twins import barlow_twins_loss
from frossl_lit.losses.frossl import NORMALIZATIONS, frossl_loss, normalize_embeddings
from frossl_lit.losses.vicreg import vicreg_loss

__all__ = ["NORMALIZATIONS", "barlow_twins_loss", "frossl_loss", "normalize_embeddings", "vicreg_loss"]
