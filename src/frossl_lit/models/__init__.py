from frossl_lit.models.backbones import SmallCNN, resnet
from frossl_lit.models.projector import Projector

__all__ = ["Projector", "SmallCNN", "resnet"]
