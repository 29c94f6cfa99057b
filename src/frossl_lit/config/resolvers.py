"""OmegaConf resolvers the configs use; importing :mod:`frossl_lit` registers them.

``${if_cpu_bf16:A,B}`` is ``A`` on a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX) and ``B``
elsewhere. The laptop preset picks its precision with it: bf16 autocast trains the small CNN 1.8× faster than fp32
on such a CPU; on one without, oneDNN emulates it (not measured here, and not expected to pay), so fp32 is kept.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (torch's own AVX512-BF16 / AMX probes)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _if_cpu_bf16(native: Any, otherwise: Any) -> Any:
    return native if cpu_has_native_bf16() else otherwise


def register() -> None:
    if not OmegaConf.has_resolver("if_cpu_bf16"):
        OmegaConf.register_new_resolver("if_cpu_bf16", _if_cpu_bf16)
