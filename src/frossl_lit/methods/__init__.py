from frossl_lit.methods.barlow_twins import BarlowTwins
from frossl_lit.methods.base import SSLMethod
from frossl_lit.methods.byol import BYOL
from frossl_lit.methods.corinfomax import CorInfoMax
from frossl_lit.methods.dino import DINO, DINOHead
from frossl_lit.methods.frossl import FroSSL
from frossl_lit.methods.mmcr import MMCR
from frossl_lit.methods.mocov2 import MoCoV2
from frossl_lit.methods.momentum import MomentumMethod
from frossl_lit.methods.simclr import SimCLR
from frossl_lit.methods.simsiam import SimSiam
from frossl_lit.methods.step import Branches, EvalOutput, StepOutput
from frossl_lit.methods.swav import SwAV
from frossl_lit.methods.vicreg import VICReg
from frossl_lit.methods.wmse import WMSE

__all__ = [
    "BYOL", "BarlowTwins", "Branches", "CorInfoMax", "DINO", "DINOHead", "EvalOutput", "FroSSL", "MMCR", "MoCoV2",
    "MomentumMethod", "SSLMethod", "SimCLR", "SimSiam", "StepOutput", "SwAV", "VICReg", "WMSE",
]
