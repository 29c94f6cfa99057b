"""frossl_lit: FroSSL, VICReg and Barlow Twins on PyTorch Lightning + Hydra (see README.md)."""

from frossl_lit.resolvers import register as _register_resolvers

_register_resolvers()
