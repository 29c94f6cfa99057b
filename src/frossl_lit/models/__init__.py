from frossl_lit.models.backbones import SmallCNN, resnet, timm_backbone
from frossl_lit.models.projector import Projector

__all__ = ["Projector", "SmallCNN", "resnet", "timm_backbone"]
