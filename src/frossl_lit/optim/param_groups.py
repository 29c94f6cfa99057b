"""Parameter groups: biases, normalisation parameters and a model's own no-decay parameters (a ViT's position
embeddings and class / register tokens) get no weight decay (nor LARS adaptation)."""

from __future__ import annotations

from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def split_weight_decay(
    model: nn.Module, no_decay_lr_scale: float = 1.0, exclude: nn.Module | None = None, decay_all: bool = False
) -> list[dict]:
    """Two groups: weights that decay, and the parameters that do not, with ``weight_decay=0`` and
    ``lars_exclude=True`` (read by LARS; other optimizers keep extra group keys and ignore them).

    The parameters that do not decay: biases, the parameters of normalisation layers, any other 1-D parameter (a
    norm type not listed, timm's LayerScale gammas), and the names a submodule's ``no_weight_decay()`` returns
    (timm's ViTs: ``pos_embed``, ``cls_token``, ``reg_token``, ``dist_token``; a name covers that parameter, or every
    parameter under it when it names a submodule), the exclusions of DINO, MoCo v3 and timm's own recipes.
    The convolution and linear weights of ResNets, small CNNs and projectors are all ≥ 2-D: their groups are the
    biases + norms split as before.

    ``no_decay_lr_scale`` multiplies the second group's learning rate (the official Barlow Twins code trains
    biases and norm parameters at 0.0048 / 0.2 = 0.024 of the weights' rate). Parameters of ``exclude`` (a part
    that gets groups of its own) and frozen parameters are left out. ``decay_all``: one group, every parameter
    decays (solo-learn's SGD recipes)."""
    skip = {id(p) for p in exclude.parameters()} if exclude is not None else set()
    declared = set() if decay_all else _declared_no_decay(model)
    decay, no_decay = [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in skip:
                continue
            is_no_decay = not decay_all and (
                isinstance(module, _NORM_TYPES) or name == "bias" or parameter.ndim <= 1 or id(parameter) in declared)
            (no_decay if is_no_decay else decay).append(parameter)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, "lr_scale": no_decay_lr_scale})
    return groups


def _declared_no_decay(model: nn.Module) -> set[int]:
    """Ids of the parameters named by the ``no_weight_decay()`` of ``model`` or of any of its submodules (names are
    relative to the module that declares them)."""
    declared: set[int] = set()
    for module in model.modules():
        names = getattr(module, "no_weight_decay", None)
        if not callable(names):
            continue
        names = set(names())
        for name, parameter in module.named_parameters():
            if name in names or any(name.startswith(f"{prefix}.") for prefix in names):
                declared.add(id(parameter))
    return declared
