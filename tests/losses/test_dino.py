"""DINO: the loss equals an independent float64 transcription of the paper's eq. 3 (teacher centred and sharpened,
cross-entropy over every (teacher large crop, other student crop) pair), the centre update eq. 4 and the teacher
temperature's warm-up equal theirs, loss and centre are exact over the global batch under DDP, the head is
weight-normalised prototypes after an L2-normalised bottleneck, the prototypes stay frozen in the first epochs, bad
values are refused before the run, and the method trains (multi-crop too) and resumes bit for bit."""

from __future__ import annotations

import csv
import functools

import numpy as np
import pytest
import torch

from frossl_lit.losses.dino import dino_centre_update, dino_loss, teacher_temperature_at
from frossl_lit.methods.dino import DINO, DINOHead
from frossl_lit.models import Projector, SmallCNN
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, tiny_fit
from tests.ddp_harness import (
    LOCAL_BATCH,
    WORLD,
    assert_global_batch_exact,
    assert_per_gpu_is_each_ranks_own,
    run_on_two_ranks,
)


# -- an independent transcription of the published formulas ---------------------------------------------------------
def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(student: list[np.ndarray], teacher: list[np.ndarray], centre: np.ndarray, ts: float, tt: float) -> float:
    """H(P_t(x_i), P_s(x_j)) averaged over the batch, then over the pairs i (teacher crop) ≠ j (student crop)."""
    terms = []
    for i, t in enumerate(teacher):
        q = _softmax((t - centre) / tt)
        for j, s in enumerate(student):
            if i != j:
                terms.append(np.mean(-(q * np.log(_softmax(s / ts))).sum(axis=1)))
    return float(np.mean(terms))


def reference_centre(teacher: list[np.ndarray], centre: np.ndarray, m: float) -> np.ndarray:
    return m * centre + (1 - m) * np.concatenate(teacher).mean(axis=0)


def _scores(views: int, n: int = 9, p: int = 7, seed: int = 3, grad: bool = False) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [(3 * torch.randn(n, p, generator=generator, dtype=torch.float64)).requires_grad_(grad) for _ in range(views)]


CENTRE = torch.linspace(-1.0, 1.5, 7, dtype=torch.float64)


@pytest.mark.parametrize("large,small,ts,tt", [(2, 0, 0.1, 0.04), (2, 0, 0.1, 0.07), (2, 3, 0.2, 0.05), (3, 1, 0.5, 1.0), (1, 2, 0.1, 0.04)])
def test_equals_the_formula_in_float64(large, small, ts, tt):
    student = _scores(large + small, grad=True)
    teacher = _scores(large, seed=5, grad=True)
    total, parts = dino_loss(student, teacher, CENTRE, ts, tt)
    as_numpy = lambda views: [v.detach().numpy() for v in views]
    expected = reference(as_numpy(student), as_numpy(teacher), CENTRE.numpy(), ts, tt)
    assert total.item() == pytest.approx(expected, rel=1e-10)
    q = [_softmax((t - CENTRE.numpy()) / tt) for t in as_numpy(teacher)]
    assert parts["teacher_entropy"].item() == pytest.approx(np.mean([-(x * np.log(x)).sum(axis=1).mean() for x in q]), rel=1e-10)
    total.backward()
    assert all(t.grad is None for t in teacher)  # the teacher is not trained
    # a student crop learns from every teacher crop but its own (one teacher crop: the student's copy of it, none)
    assert [s.grad is not None for s in student] == [large > 1 or j > 0 for j in range(large + small)]


def test_the_centre_shifts_the_teacher_only():
    student, teacher = _scores(2), _scores(2, seed=5)
    zero = torch.zeros(7, dtype=torch.float64)
    assert not torch.allclose(dino_loss(student, teacher, CENTRE)[0], dino_loss(student, teacher, zero)[0])
    # a centre constant over the prototypes changes no softmax
    torch.testing.assert_close(dino_loss(student, teacher, zero + 4.0)[0], dino_loss(student, teacher, zero)[0], rtol=1e-12, atol=0)


@pytest.mark.parametrize("m", [0.0, 0.9, 0.996, 1.0])
def test_the_centre_update_equals_the_formula(m):
    teacher = _scores(3, seed=8)
    new = dino_centre_update(teacher, CENTRE, m)
    np.testing.assert_allclose(new.numpy(), reference_centre([t.numpy() for t in teacher], CENTRE.numpy(), m), rtol=1e-12, atol=1e-14)
    assert new.shape == CENTRE.shape and new.dtype == CENTRE.dtype
    centre = CENTRE.reshape(1, 7).float()  # solo-learn's (1, P) layout, a float32 buffer, half-precision scores
    assert dino_centre_update([t.to(torch.bfloat16) for t in teacher], centre, m).shape == (1, 7)


@pytest.mark.parametrize("warmup_epochs", [0, 1, 2, 5, 30])
def test_the_teacher_temperature_warms_up_as_numpy_linspace(warmup_epochs):
    epochs = 40
    schedule = np.concatenate((np.linspace(0.04, 0.07, warmup_epochs), np.ones(epochs - warmup_epochs) * 0.07))
    mine = [teacher_temperature_at(e, 0.04, 0.07, warmup_epochs) for e in range(epochs)]
    np.testing.assert_allclose(mine, schedule, rtol=1e-12, atol=0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2 student views"):
        dino_loss(_scores(1), _scores(1), CENTRE)
    with pytest.raises(ValueError, match="at least 2 student views"):
        dino_loss(_scores(2), _scores(3), CENTRE)
    with pytest.raises(ValueError, match="one shape"):
        dino_loss(_scores(2), _scores(2, p=6), CENTRE)
    with pytest.raises(ValueError, match="centre has 6 entries"):
        dino_loss(_scores(2), _scores(2), CENTRE[:6])
    with pytest.raises(ValueError, match="teacher_temperature=0"):
        dino_loss(_scores(2), _scores(2), CENTRE, 0.1, 0.0)
    with pytest.raises(ValueError, match="student_temperature=-1"):
        dino_loss(_scores(2), _scores(2), CENTRE, -1, 0.04)
    with pytest.raises(ValueError, match=r"centre momentum=1.5 must lie in \[0, 1\]"):
        dino_centre_update(_scores(2), CENTRE, 1.5)
    with pytest.raises(ValueError, match=r"needs \(N, 7\) teacher scores"):
        dino_centre_update(_scores(2, p=5), CENTRE)


# -- DDP: 2 gloo processes = one process on the concatenated batch ----------------------------------------------------
HARNESS_CENTRE = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64)


def _dino(views, collective):  # the harness's 4 views: the student sees all, the teacher the first two
    return dino_loss(views, views[:2], HARNESS_CENTRE, 0.1, 0.04, collective=collective)


LOSSES = {"dino_4views": _dino}
TEACHER = torch.randn(2, 2, WORLD * LOCAL_BATCH, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)  # (steps, crops, N, P)


def _centre_on_rank(rank: int) -> dict:
    from frossl_lit.runtime.distributed import Collective

    mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    out = {}
    for global_batch in (True, False):
        centre = HARNESS_CENTRE.clone()
        for step in TEACHER:  # two updates
            centre = dino_centre_update([crop[mine] for crop in step], centre, 0.9, collective=Collective(global_batch))
        out[f"centre_{global_batch}"] = centre
    # the method moves its centre by the global batch even with global_batch=false (both sources all-reduce it)
    module = _dino_module(global_batch=False, num_prototypes=5, centre_momentum=0.9).double()
    module._pending = [[crop[mine] for crop in TEACHER[0]]]
    module.after_optimizer_step()
    out["module_centre"] = module.centre.clone()
    return out


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES, extra=_centre_on_rank)


def test_global_batch_exact_on_two_processes(distributed_results):
    assert_global_batch_exact(distributed_results, "dino_4views", _dino)
    assert_per_gpu_is_each_ranks_own(distributed_results, "dino_4views", _dino)


def test_the_centre_moves_by_the_global_batch_or_each_ranks_own(distributed_results):
    single = HARNESS_CENTRE.clone()
    for step in TEACHER:
        single = dino_centre_update(list(step), single, 0.9)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank]["centre_True"], single, rtol=1e-12, atol=1e-14)
        own = HARNESS_CENTRE.clone()
        for step in TEACHER:
            own = dino_centre_update([crop[rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH] for crop in step], own, 0.9)
        torch.testing.assert_close(distributed_results[rank]["centre_False"], own, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(distributed_results[0]["centre_False"], distributed_results[1]["centre_False"])


def test_the_methods_centre_is_the_global_batchs_even_with_per_gpu_losses(distributed_results):
    whole = dino_centre_update(list(TEACHER[0]), torch.zeros(5, dtype=torch.float64), 0.9)
    for rank in range(WORLD):
        torch.testing.assert_close(distributed_results[rank]["module_centre"], whole, rtol=1e-12, atol=1e-14)


# -- the module -------------------------------------------------------------------------------------------------------
def _dino_module(**kwargs) -> DINO:
    mlp = functools.partial(Projector, hidden_dims=[32, 32], out_dim=16, hidden_norm=False, activation="gelu")
    return DINO(backbone=SmallCNN([8, 16]), projector=mlp, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
                **{"num_prototypes": 40, **kwargs})


def test_the_head_scores_cosines_to_unit_prototypes_and_the_teacher_copies_it():
    module = _dino_module()
    head = module.projector
    assert isinstance(head, DINOHead) and head.out_dim == 40 and head.last_layer.bias is None
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad and torch.equal(magnitude, torch.ones(40, 1))
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(40))
    x = torch.randn(5, module.backbone.out_dim)
    with torch.no_grad():
        bottleneck = torch.nn.functional.normalize(head.mlp(x), dim=-1)
        torch.testing.assert_close(head(x), bottleneck @ torch.nn.functional.normalize(head.last_layer.parametrizations.weight.original1, dim=1).T)
        assert head(x).abs().max() <= 1 + 1e-6
    assert all(isinstance(m, torch.nn.GELU) for m in head.mlp.net if not isinstance(m, torch.nn.Linear))
    # the teacher is an EMA copy of the whole head; the frozen magnitude is in no parameter group
    assert isinstance(module.target.projector, DINOHead)
    trained = {id(p) for group in module.param_groups() for p in group["params"]}
    assert id(magnitude) not in trained and id(head.last_layer.parametrizations.weight.original1) in trained
    assert _dino_module(norm_last_layer=False).projector.last_layer.parametrizations.weight.original0.requires_grad


def test_the_centre_moves_once_per_optimizer_step_by_every_micro_batch():
    module = _dino_module(centre_momentum=0.8)
    module.train()
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16), torch.randn(6, 3, 8, 8)]
    first = module.embed_views(views)
    second = module.embed_views([v.flip(0) for v in views])  # two micro-batches, one step
    assert len(first.targets) == 2 and len(first.embeddings) == 3
    module.loss(first)
    assert torch.equal(module.centre, torch.zeros(40))  # the loss does not move it
    module.after_optimizer_step()
    teacher = torch.cat([*first.targets, *second.targets])
    torch.testing.assert_close(module.centre, 0.2 * teacher.mean(dim=0), rtol=1e-6, atol=1e-7)
    assert module._pending == []


@pytest.mark.parametrize("freeze", [1, 0])
def test_the_prototypes_stay_frozen_during_the_first_epochs(freeze, tmp_path):
    module = _dino_module(freeze_last_layer=freeze)
    prototypes = module.projector.last_layer.parametrizations.weight.original1
    before, mlp_before = prototypes.detach().clone(), module.projector.mlp.net[0].weight.detach().clone()
    tiny_fit(tmp_path, [], module=module, max_steps=2)
    assert torch.equal(prototypes, before) == bool(freeze)
    assert not torch.equal(module.projector.mlp.net[0].weight, mlp_before)


@pytest.mark.parametrize("overrides,message", [
    (["method.num_prototypes=0"], r"method.num_prototypes=0 must be a whole number of prototypes >= 1"),
    (["method.num_prototypes=1.5"], r"method.num_prototypes=1.5 must be"),
    (["method.student_temperature=0"], r"method.student_temperature=0 must be a temperature > 0"),
    (["method.teacher_temperature=-0.07"], r"method.teacher_temperature=-0.07 must be a temperature > 0"),
    (["method.warmup_teacher_temperature=abc"], r"method.warmup_teacher_temperature='abc' must be a temperature > 0"),
    (["method.warmup_teacher_temperature_epochs=-1"], r"method.warmup_teacher_temperature_epochs=-1 must be a whole number of epochs >= 0"),
    (["method.freeze_last_layer=true"], r"method.freeze_last_layer=True must be a whole number of epochs >= 0"),
    (["method.centre_momentum=1.1"], r"method.centre_momentum=1.1 is a momentum: it must lie in \[0, 1\]"),
    (["method.norm_last_layer=2"], r"method.norm_last_layer=2 must be true or false"),
    (["method.momentum_start=-0.5"], r"method.momentum_start=-0.5 is a momentum"),
    (["augment.num_views=1"], r"augment.num_views=1 gives 1 views in all, but DINO takes at least 2"),
])
def test_bad_values_are_one_line_before_the_run(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message) as info:
        train(compose_config([*TINY, "method=dino", *overrides], tmp_path))
    assert "\n" not in str(info.value)


def _logged(run_dir, metric):
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [float(row[metric]) for row in csv.DictReader(handle) if row.get(metric)]


def test_trains_from_its_config_with_the_teacher_temperature_warming_up_per_epoch(tmp_path):
    # 2 epochs of 2 steps (1437 images at batch 512), warm-up 0.04 -> 0.07 over 3 epochs: 0.04, 0.055 (then 0.07)
    summary = train(compose_config([*TINY, "method=dino", "data.batch_size=512", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
                                    "method.warmup_teacher_temperature_epochs=3", "method.num_prototypes=64",
                                    "callbacks.knn=null", "callbacks.checkpoint_best=null"], tmp_path))
    assert summary["method"] == "dino" and summary["global_step"] == 4
    np.testing.assert_allclose(_logged(tmp_path, "train/dino/teacher_temperature"), [0.04, 0.04, 0.055, 0.055], rtol=1e-6)
    assert len(_logged(tmp_path, "train/dino/teacher_entropy")) == 4
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["centre"].shape == (64,) and torch.isfinite(state["centre"]).all() and state["centre"].abs().sum() > 0
    assert "target.projector.last_layer.parametrizations.weight.original1" in state and "target_momentum" in state


def test_multi_crop_and_gradient_accumulation_train(tmp_path):
    summary = train(compose_config([*TINY, "method=dino", "augment.small_views=2", "augment.small_recipe={size:8,scale:[0.2,0.5]}",
                                    "trainer.max_steps=2", "+trainer.accumulate_grad_batches=2", "method.num_prototypes=64",
                                    "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null"], tmp_path))
    assert summary["global_step"] == 2
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert torch.isfinite(state["centre"]).all() and state["centre"].abs().sum() > 0


# in make test (about 4 s on 2 cores): the acceptance asks for every new method's resume there
def test_stopped_mid_epoch_it_resumes_to_the_same_state_bit_for_bit(tmp_path):
    from tests.runtime.test_resume import SHORT, assert_resumes_bit_for_bit

    # the crash falls in epoch 2, after the prototypes thawed and while the teacher temperature still warms up
    run = [*SHORT, "method=dino", "method.momentum_start=0.9", "method.warmup_teacher_temperature_epochs=3",
           "method.num_prototypes=64", "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null"]
    _, state = assert_resumes_bit_for_bit(run, tmp_path)
    assert {"centre", "target_momentum", "target.projector.last_layer.parametrizations.weight.original1"} <= set(state["state_dict"])


# -- the presets: what the generic comparison (tests/test_presets.py) has no field for -------------------------------
@pytest.mark.parametrize("preset", ["dino_cifar10", "dino_cifar100", "dino_imagenet100", "dino_stl10"])
def test_the_presets_head_activation_and_clipping_are_the_sources(preset):
    from omegaconf import OmegaConf

    from tests.conftest import compose_raw
    from tests.test_presets import source_block

    cfg = compose_raw([f"experiment={preset}"])
    source = source_block(cfg.preset.source)
    assert "GELU" in source["projector"]["structure"] and cfg.method.projector.activation == "gelu"
    assert cfg.method.projector.hidden_norm is source["loss"]["use_bn_in_head"] is False
    assert source["loss"]["clip_grad"] == 0 and OmegaConf.select(cfg, "trainer.gradient_clip_val") is None  # no clipping
    assert cfg.method._target_ == "frossl_lit.methods.DINO"


@pytest.mark.slow  # ~20 s: two real DDP processes (the loss and the centre are pinned on 2 ranks above)
def test_two_ddp_processes_train_and_move_one_centre(tmp_path):
    from tests.conftest import run_cli

    result = run_cli([*TINY, "method=dino", "method.num_prototypes=64", "trainer=ddp", "trainer.devices=2", "trainer.max_steps=3",
                      "callbacks.knn=null", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert torch.isfinite(state["centre"]).all() and state["centre"].abs().sum() > 0
