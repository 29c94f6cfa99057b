"""Parameter groups: biases and normalisation parameters get no weight decay (nor LARS adaptation)."""

from __future__ import annotations

from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def split_weight_decay(
    model: nn.Module, no_decay_lr_scale: float = 1.0, exclude: nn.Module | None = None, decay_all: bool = False
) -> list[dict]:
    """Two groups: weights that decay, and biases + norm parameters with ``weight_decay=0`` and
    ``lars_exclude=True`` (read by LARS; other optimizers keep extra group keys and ignore them).

    ``no_decay_lr_scale`` multiplies the second group's learning rate (the official Barlow Twins code trains
    biases and norm parameters at 0.0048 / 0.2 = 0.024 of the weights' rate). Parameters of ``exclude`` (a part
    that gets groups of its own) and frozen parameters are left out. ``decay_all``: one group, every parameter
    decays (solo-learn's SGD recipes)."""
    skip = {id(p) for p in exclude.parameters()} if exclude is not None else set()
    decay, no_decay = [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in skip:
                continue
            is_no_decay = not decay_all and (isinstance(module, _NORM_TYPES) or name == "bias")
            (no_decay if is_no_decay else decay).append(parameter)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, "lr_scale": no_decay_lr_scale})
    return groups
