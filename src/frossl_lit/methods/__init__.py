from frossl_lit.methods.barlow_twins import BarlowTwins
from frossl_lit.methods.base import SSLMethod
from frossl_lit.methods.frossl import FroSSL
from frossl_lit.methods.vicreg import VICReg

__all__ = ["BarlowTwins", "FroSSL", "SSLMethod", "VICReg"]
