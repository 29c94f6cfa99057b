"""DINO as a LightningModule: the momentum base (teacher = EMA of backbone and DINO head), a centre buffer,
:func:`frossl_lit.losses.dino.dino_loss`."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from frossl_lit.losses.dino import dino_centre_update, dino_loss, teacher_temperature_at
from frossl_lit.methods.momentum import MomentumMethod
from frossl_lit.runtime.distributed import Collective
from frossl_lit.runtime.errors import number, require, require_temperature, require_whole

GLOBAL_CENTRE = Collective(global_batch=True)  # the centre's mean is the global batch's, as both sources' all_reduce


class DINOHead(nn.Module):
    """DINO's head: ``mlp`` (``method.projector``: Linear-GELU layers down to a bottleneck), L2 normalisation, then
    a Linear without bias to ``num_prototypes`` scores under weight normalisation (each prototype's weight
    ``w = g · v / ‖v‖``). ``norm_last_layer``: g is fixed to 1 (not trained), so every prototype is a unit vector
    and the scores are cosines; otherwise g trains (from 1). The MLP's Linear layers start from a truncated normal
    (std 0.02, biases 0), the prototypes from PyTorch's Linear default, as solo-learn's and the official DINOHead.
    """

    def __init__(self, mlp: nn.Module, num_prototypes: int, norm_last_layer: bool = True) -> None:
        super().__init__()
        self.mlp = mlp
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.last_layer = weight_norm(nn.Linear(mlp.out_dim, num_prototypes, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)
        self.out_dim = num_prototypes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def dino_head(in_dim: int, *, mlp: Callable[..., nn.Module], num_prototypes: int, norm_last_layer: bool) -> DINOHead:
    """What :class:`DINO` gives the base as its projector factory: ``method.projector`` (the MLP) inside a
    :class:`DINOHead`, so the EMA teacher copies the whole head."""
    return DINOHead(mlp(in_dim=in_dim), num_prototypes, norm_last_layer)


class DINO(MomentumMethod):
    """DINO (Caron et al., ICCV 2021): a student (backbone + :class:`DINOHead`) distilled from its EMA teacher's
    centred, sharpened prototype scores. Any number of views: the teacher sees the large crops (the views of the
    first view's size), the student every crop (``augment.small_views`` adds multi-crop's small ones).

    Args:
        projector: the head's MLP (a ``_partial_`` of :class:`~frossl_lit.models.Projector`; DINO's is
            ``activation: gelu, hidden_norm: false``); its ``out_dim`` is the bottleneck.
        num_prototypes: P, the last layer's outputs.
        norm_last_layer: fix the prototypes' weight-norm magnitude to 1.
        student_temperature: τ_s.
        teacher_temperature: τ_t after the warm-up.
        warmup_teacher_temperature: τ_t in the first epoch; linear (per epoch) to ``teacher_temperature`` over
            ``warmup_teacher_temperature_epochs`` (0: ``teacher_temperature`` throughout).
        centre_momentum: m of the centre's moving average.
        freeze_last_layer: the prototypes' gradients are dropped during the first this many epochs (epoch-based
            like the sources, so exact on resume).
        momentum_start / momentum_end / momentum_schedule: the teacher's EMA (:class:`MomentumMethod`).

    The centre is a buffer (in every checkpoint), moved once per optimizer step, after it, by the mean of the
    teacher's scores over every micro-batch of that step (with gradient accumulation the micro-batches of one step
    see the same centre, and the update equals one of the whole accumulated batch). solo-learn and the official code
    move it inside the loss's forward, once per forward pass; without accumulation both orders give the same
    centre at every step. The centre is always the mean over the global batch, ``method.global_batch`` or not: both
sources all-reduce it whatever the loss does, and one centre on every rank is also what DDP's broadcast of rank 0's
buffers would leave (DINO's loss is a per-sample mean with no batch-wide term, so ``global_batch`` changes nothing
else). The teacher temperature in use is logged as ``train/dino/teacher_temperature``.

    Not transcribed: solo-learn's ``clip_grad`` (per-parameter clipping of the backbone's gradients; 0, off, in
    every solo-learn and FroSSL-repository ResNet recipe); ``trainer.gradient_clip_val`` clips by the global norm.
    """

    name = "dino"
    views_supported = (2, None)

    def __init__(
        self,
        *,
        projector: Callable[..., nn.Module],
        num_prototypes: int = 4096,
        norm_last_layer: bool = True,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        warmup_teacher_temperature_epochs: int = 0,
        centre_momentum: float = 0.9,
        freeze_last_layer: int = 1,
        **base,
    ) -> None:
        require_whole("method.num_prototypes", num_prototypes, 1, "prototypes", 4096)
        require("method.norm_last_layer", norm_last_layer, lambda v: isinstance(v, bool), "must be true or false",
                "e.g. method.norm_last_layer=true")
        require_temperature("method.student_temperature", student_temperature, 0.1)
        require_temperature("method.teacher_temperature", teacher_temperature, 0.07)
        require_temperature("method.warmup_teacher_temperature", warmup_teacher_temperature, 0.04)
        require_whole("method.warmup_teacher_temperature_epochs", warmup_teacher_temperature_epochs, 0, "epochs", 0)
        require_whole("method.freeze_last_layer", freeze_last_layer, 0, "epochs", 1)
        require("method.centre_momentum", centre_momentum, lambda v: number(v) and 0.0 <= v <= 1.0,
                "is a momentum: it must lie in [0, 1]", "e.g. method.centre_momentum=0.9")
        head = functools.partial(dino_head, mlp=projector, num_prototypes=num_prototypes, norm_last_layer=norm_last_layer)
        super().__init__(projector=head, **base)
        self.num_prototypes, self.norm_last_layer = num_prototypes, norm_last_layer
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature
        self.warmup_teacher_temperature = warmup_teacher_temperature
        self.warmup_teacher_temperature_epochs = warmup_teacher_temperature_epochs
        self.centre_momentum, self.freeze_last_layer = centre_momentum, freeze_last_layer
        self.register_buffer("centre", torch.zeros(num_prototypes))
        self._pending: list[list[torch.Tensor]] = []  # each micro-batch's teacher scores since the last step

    def current_teacher_temperature(self) -> float:
        """τ_t of the current epoch (the trainer's; 0 outside one)."""
        return teacher_temperature_at(self.current_epoch, self.warmup_teacher_temperature, self.teacher_temperature,
                                      self.warmup_teacher_temperature_epochs)

    def embed_targets(self, views):
        scores = super().embed_targets(views)
        if self.training:
            self._pending.append([z.detach() for z in scores])
        return scores

    def loss(self, branches):
        return dino_loss(branches.embeddings, branches.targets, self.centre, self.student_temperature,
                         self.current_teacher_temperature(), collective=self.collective)

    def on_after_backward(self) -> None:
        """Drop the prototypes' gradients during the first ``freeze_last_layer`` epochs (the optimizer then skips
        them: no step, no weight decay), as solo-learn's ``on_after_backward`` and the official
        ``cancel_gradients_last_layer``."""
        if self.current_epoch < self.freeze_last_layer:
            for parameter in self.projector.last_layer.parameters():
                parameter.grad = None

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        if self._pending:
            teacher = [z for micro_batch in self._pending for z in micro_batch]
            self.centre.copy_(dino_centre_update(teacher, self.centre, self.centre_momentum, collective=GLOBAL_CENTRE))
        self._pending = []

    def log_loss(self, total, parts) -> None:
        super().log_loss(total, parts)
        self.log(f"train/{self.name}/teacher_temperature", self.current_teacher_temperature())
