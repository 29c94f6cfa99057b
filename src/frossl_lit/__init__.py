"""frossl_lit: FroSSL and the SSL baselines it is compared with (VICReg, Barlow Twins, MMCR, SimCLR, MoCo v2+, BYOL,
SimSiam) on PyTorch Lightning + Hydra (see README.md)."""

from frossl_lit.config.resolvers import register as _register_resolvers

_register_resolvers()
