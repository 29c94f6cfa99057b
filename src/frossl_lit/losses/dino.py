"""DINO (Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin; ICCV 2021, arXiv 2104.14294): self-distillation
with no labels.

A student network g_s (backbone + DINO head: MLP, L2 normalisation, weight-normalised prototypes) and a teacher
g_t (the EMA of the student, no gradient) each map a crop x to P prototype scores. The teacher's scores are centred
by c and sharpened at the teacher temperature τ_t, the student's softened at τ_s:

    P_t(x) = softmax( (g_t(x) − c) / τ_t ),        log P_s(x) = log_softmax( g_s(x) / τ_s )

The teacher sees the T large (global) crops, the student all V crops (large ones first, then the small ones of
multi-crop). The loss is the cross-entropy H(a, b) = −Σ_p a_p log b_p of every pair (teacher crop i, student crop
j ≠ i), each averaged over the batch, and averaged over the T·V − T pairs (the paper's eq. 3, the official code's
``total_loss / n_loss_terms``):

    loss = 1 / (T·V − T) · Σ_{i < T} Σ_{j < V, j ≠ i} mean_n H( P_t(x_i^n), P_s(x_j^n) )

The centre c is the method's state (a buffer), moved by :func:`dino_centre_update` with momentum m towards the mean
of the teacher's (raw, uncentred) scores over the batch and the T large crops (the paper's eq. 4):

    c ← m · c + (1 − m) · 1/(T·N) · Σ_{i < T} Σ_n g_t(x_i^n)

The teacher temperature warms up linearly per epoch (:func:`teacher_temperature_at`).

The batch means run over the global batch under DDP through the :class:`Collective` (``global_batch=False``: each
rank's own batch, as solo-learn's per-GPU loss). The centre's batch mean does too; solo-learn
(solo/losses/dino.py ``update_center``) and the official code (facebookresearch/dino main_dino.py) always
``all_reduce`` it, so their centre is the global batch's even where their loss is per-GPU: ``global_batch=False``
here keeps each rank's own centre instead (the ranks' centres then differ; the checkpoint holds rank 0's).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from frossl_lit.losses.common import float32_maths
from frossl_lit.runtime.distributed import LOCAL, Collective


def teacher_temperature_at(epoch: int, warmup_temperature: float, temperature: float, warmup_epochs: int) -> float:
    """τ_t in ``epoch`` (from 0): ``warmup_epochs`` values evenly spaced from ``warmup_temperature`` to
    ``temperature`` inclusive (numpy's ``linspace``, as solo-learn's and the official ``teacher_temp_schedule``: the
    warm-up reaches ``temperature`` in its last epoch), then ``temperature``."""
    if epoch >= warmup_epochs:
        return float(temperature)
    if warmup_epochs == 1:
        return float(warmup_temperature)
    return float(warmup_temperature + (temperature - warmup_temperature) * epoch / (warmup_epochs - 1))


def _check(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], centre: torch.Tensor) -> None:
    if len(teacher) < 1 or len(student) < 2 or len(teacher) > len(student):
        raise ValueError(f"DINO needs at least 2 student views and 1 to {len(student)} teacher (large) views, got "
                         f"{len(student)} student and {len(teacher)} teacher views; set augment.num_views=2")
    shapes = {tuple(z.shape) for z in [*student, *teacher]}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"DINO's student and teacher views must all be (N, P) scores of one shape, got {sorted(shapes)}")
    prototypes = student[0].shape[1]
    if centre.numel() != prototypes:
        raise ValueError(f"DINO's centre has {centre.numel()} entries, the views {prototypes} prototypes")


@float32_maths
def dino_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    centre: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
    collective: Collective = LOCAL,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DINO's loss (see the module docstring) of the student's scores of all V views (N, P), the teacher's of the
    T large views (N, P; detached here) and the centre (P,) or (1, P) (detached). Returns
    ``(total, {"teacher_entropy"})``: the mean entropy of the teacher's sharpened distributions (log P when they are
    uniform, 0 when one-hot: the two collapses DINO balances with centring and sharpening)."""
    _check(student, teacher, centre)
    for name, value in (("student_temperature", student_temperature), ("teacher_temperature", teacher_temperature)):
        if not value > 0:
            raise ValueError(f"DINO's {name}={value} must be > 0")
    n = student[0].shape[0] * collective.world_size
    centre = centre.detach().reshape(1, -1)
    log_student = [F.log_softmax(z / student_temperature, dim=-1) for z in student]
    log_teacher = [F.log_softmax((z.detach() - centre) / teacher_temperature, dim=-1) for z in teacher]
    probabilities = [log_q.exp() for log_q in log_teacher]
    total = student[0].new_zeros(())
    terms = 0
    for i, q in enumerate(probabilities):
        for j, log_p in enumerate(log_student):
            if j == i:  # a teacher crop is not its own student target
                continue
            cross_entropy = -(q * log_p).sum(dim=-1)  # (N,)
            total = total + collective.sum(cross_entropy.sum()) / n
            terms += 1
    entropy = sum(collective.sum(-(q * log_q).sum()) for q, log_q in zip(probabilities, log_teacher)) / (n * len(teacher))
    return total / terms, {"teacher_entropy": entropy.detach()}


@float32_maths
@torch.no_grad()
def dino_centre_update(
    teacher: Sequence[torch.Tensor], centre: torch.Tensor, momentum: float = 0.9, collective: Collective = LOCAL
) -> torch.Tensor:
    """The next centre: ``momentum · centre + (1 − momentum) ·`` the mean of the teacher's scores over every row of
    ``teacher`` (the T large crops of a batch, or of every micro-batch of one optimizer step: each (N, P)) and over
    the ranks (the global batch; ``global_batch=False``: this rank's own). A new tensor of ``centre``'s shape and
    dtype; the caller stores it."""
    if not teacher or any(z.ndim != 2 or z.shape[1] != centre.numel() for z in teacher):
        raise ValueError(f"DINO's centre update needs (N, {centre.numel()}) teacher scores, got {[tuple(z.shape) for z in teacher]}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"DINO's centre momentum={momentum} must lie in [0, 1]")
    rows = sum(z.shape[0] for z in teacher) * collective.world_size
    batch_sum = torch.stack([z.detach().sum(dim=0) for z in teacher]).sum(dim=0)
    batch_centre = collective.sum(batch_sum.to(centre.dtype)) / rows
    return centre * momentum + batch_centre.reshape(centre.shape) * (1.0 - momentum)
