"""The projector MLP shared by every method (and the predictor heads of BYOL and SimSiam)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "gelu": nn.GELU}


class Projector(nn.Module):
    """``in_dim → hidden_dims… → out_dim``; Linear-BN-ReLU for each hidden layer, a plain Linear at the end.

    ``hidden_bias`` / ``last_bias``: solo-learn and the official FroSSL code give every Linear a bias; the official
    VICReg and Barlow Twins code give none to the last (Barlow Twins: to any). ``hidden_norm=False`` drops the
    hidden layers' BatchNorm (SimCLR's and MoCo v2's Linear-ReLU-Linear); ``last_norm=True`` ends with a
    BatchNorm1d without affine parameters (SimSiam's projector). ``activation``: ``relu`` after each hidden layer, or
    ``gelu`` (DINO's head).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int] = (2048, 2048),
        out_dim: int = 2048,
        hidden_bias: bool = True,
        last_bias: bool = True,
        hidden_norm: bool = True,
        last_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        if activation not in ACTIVATIONS:
            from frossl_lit.runtime.errors import refuse

            refuse("method.projector.activation", activation, f"must be {' or '.join(ACTIVATIONS)}", "e.g. method.projector.activation=relu")
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_dim
        for width in hidden_dims:
            layers.append(nn.Linear(previous, width, bias=hidden_bias))
            if hidden_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            previous = width
        layers.append(nn.Linear(previous, out_dim, bias=last_bias))
        if last_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
