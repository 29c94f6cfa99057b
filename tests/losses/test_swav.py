"""SwAV: the loss and its Sinkhorn codes equal an independent float64 transcription of the paper's formula (the
official code's Sinkhorn-Knopp, a queue prepended), the gradient never flows through the codes, the codes, loss,
gradients and the queue are exact over the global batch on 2 processes, and the method refuses bad values before the
run, freezes its prototypes for whole epochs, trains from its config (multi-crop too) and resumes bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

from frossl_lit.losses.swav import sinkhorn_knopp, swav_loss
from frossl_lit.methods.queue import KeyQueue
from frossl_lit.runtime.distributed import Collective
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import REPO, TINY, compose_config, compose_raw
from tests.ddp_harness import (
    LOCAL_BATCH,
    WORLD,
    assert_global_batch_exact,
    assert_per_gpu_is_each_ranks_own,
    problem,
    run_on_two_ranks,
)


# -- an independent transcription (numpy, float64) -------------------------------------------------------------
def reference_codes(scores: np.ndarray, eps: float, iterations: int, queue_scores: np.ndarray | None = None) -> np.ndarray:
    """The official ``distributed_sinkhorn`` on one process, the queue's scores prepended; the batch's codes."""
    n = len(scores)
    if queue_scores is not None:
        scores = np.concatenate([queue_scores, scores])
    q = np.exp(scores / eps).T  # K × B
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q / q.sum(axis=1, keepdims=True) / k
        q = q / q.sum(axis=0, keepdims=True) / b
    return (q * b).T[-n:]


def reference(embeddings, prototypes, t, eps, iterations, assign, queue=None):
    """Loss = mean over (a, v ≠ a) of −mean_i Σ_k q_a,ik log softmax(z_v,i·c_k / t); and dL/dC by hand (the codes are
    constants: dℓ/ds = (softmax − q) / t)."""
    z = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in embeddings]
    scores = [x @ prototypes.T for x in z]
    n, views = len(z[0]), len(z)
    codes = [reference_codes(scores[a], eps, iterations, None if queue is None else queue[a] @ prototypes.T) for a in range(assign)]
    loss, grad = 0.0, np.zeros_like(prototypes)
    for a in range(assign):
        for v in range(views):
            if v == a:
                continue
            logits = scores[v] / t
            logits = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            loss += -np.mean(np.sum(codes[a] * np.log(p), axis=1))
            grad += (p - codes[a]).T @ z[v] / (t * n)
    pairs = assign * (views - 1)
    return loss / pairs, grad / pairs, codes


def _inputs(n=10, d=6, k=7, views=2, seed=3):
    generator = torch.Generator().manual_seed(seed)
    embeddings = [torch.randn(n, d, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(views)]
    prototypes = F.normalize(torch.randn(k, d, generator=generator, dtype=torch.float64), dim=1).requires_grad_(True)
    return embeddings, prototypes


@pytest.mark.parametrize("t,eps,iterations,views,assign,queue_length", [
    (0.1, 0.05, 3, 2, 2, 0),      # solo-learn's and the paper's values, 2 views
    (0.1, 0.05, 3, 4, 2, 0),      # multi-crop: 2 large crops assign, 2 small ones only predict
    (0.2, 0.1, 1, 3, 3, 0),
    (0.5, 0.03, 10, 2, 1, 0),
    (0.1, 0.05, 3, 3, 2, 9),      # a queue of 9 stored embeddings per large crop
    (1.0, 0.5, 2, 2, 2, 20),
])
def test_equals_the_formula_in_float64(t, eps, iterations, views, assign, queue_length):
    embeddings, prototypes = _inputs(views=views)
    queue = F.normalize(torch.randn(assign, queue_length, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64), dim=-1) if queue_length else None
    total, parts = swav_loss(embeddings, prototypes, queue, t, eps, iterations, assign)
    expected, expected_grad, codes = reference([e.detach().numpy() for e in embeddings], prototypes.detach().numpy(), t, eps,
                                               iterations, assign, None if queue is None else queue.numpy())
    assert total.item() == pytest.approx(expected, rel=1e-10)
    entropy = np.mean([-np.sum(q * np.log(q), axis=1).mean() for q in codes])
    assert parts["code_entropy"].item() == pytest.approx(entropy, rel=1e-10)
    total.backward()
    np.testing.assert_allclose(prototypes.grad.numpy(), expected_grad, rtol=1e-9, atol=1e-12)  # none through the codes


def test_the_codes_are_the_sinkhorn_transport_and_carry_no_gradient():
    scores = torch.randn(12, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    codes = sinkhorn_knopp(scores, 0.05, 3)
    assert not codes.requires_grad
    np.testing.assert_allclose(codes.numpy(), reference_codes(scores.detach().numpy(), 0.05, 3), rtol=1e-10)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(12, dtype=torch.float64))  # each sample's code sums to 1
    converged = sinkhorn_knopp(scores, 0.5, 100)
    torch.testing.assert_close(converged.sum(dim=0), torch.full((5,), 12 / 5, dtype=torch.float64))  # equipartition
    # the shift by the maximum is exact, and keeps a small epsilon finite in float32 (exp(0.95 / 0.01) overflows it)
    close = 0.9 + 0.1 * torch.rand(12, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    np.testing.assert_allclose(sinkhorn_knopp(close.float(), 0.01, 3).numpy(), reference_codes(close.numpy(), 0.01, 3), rtol=1e-4)


def test_bad_inputs_are_refused():
    embeddings, prototypes = _inputs(views=2)
    with pytest.raises(ValueError, match="at least 2 views"):
        swav_loss(embeddings[:1], prototypes)
    with pytest.raises(ValueError, match="temperature=0"):
        swav_loss(embeddings, prototypes, temperature=0)
    with pytest.raises(ValueError, match="epsilon=-1"):
        swav_loss(embeddings, prototypes, epsilon=-1)
    with pytest.raises(ValueError, match="iterations=0"):
        swav_loss(embeddings, prototypes, iterations=0)
    with pytest.raises(ValueError, match="assign_views=3"):
        swav_loss(embeddings, prototypes, assign_views=3)
    with pytest.raises(ValueError, match=r"prototypes \(7, 5\)"):
        swav_loss(embeddings, prototypes[:, :5])
    with pytest.raises(ValueError, match=r"queue \(1, 4, 6\)"):
        swav_loss(embeddings, prototypes, torch.zeros(1, 4, 6, dtype=torch.float64))


def test_half_precision_embeddings_are_computed_in_float32():
    embeddings, prototypes = _inputs(views=2)
    half = [e.detach().bfloat16() for e in embeddings]
    total, _ = swav_loss(half, prototypes.detach().float())
    assert total.dtype == torch.float32 and torch.isfinite(total)


# -- 2 processes = one process on the concatenated batch --------------------------------------------------------
PROTOTYPES = F.normalize(torch.randn(7, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64), dim=1)
QUEUE = F.normalize(torch.randn(2, 16, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64), dim=-1)


def _swav(views, collective):
    return swav_loss(views, PROTOTYPES, None, 0.1, 0.05, 3, collective=collective)


def _swav_multicrop_queue(views, collective):  # 4 views: 2 large crops assign, with a queue, 2 small ones predict
    return swav_loss(views, PROTOTYPES, QUEUE, 0.1, 0.05, 3, 2, collective=collective)


LOSSES = {"swav": _swav, "swav_4views_queue": _swav_multicrop_queue}


def _state_on_rank(rank: int) -> dict:
    """The prototypes' gradient and the codes (this rank's rows) with the global batch, and a queue of the large
    crops filled from the global batch."""
    mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    inputs, weight = problem("swav_4views_queue")
    prototypes = PROTOTYPES.clone().requires_grad_(True)
    total, _ = swav_loss([x[mine] @ weight for x in inputs], prototypes, QUEUE, 0.1, 0.05, 3, 2, collective=Collective(True))
    total.backward()
    grad = prototypes.grad.clone()
    dist.all_reduce(grad)
    codes = sinkhorn_knopp(inputs[0][mine] @ weight @ PROTOTYPES.T, 0.05, 3, QUEUE[0] @ PROTOTYPES.T, Collective(True))
    queue = KeyQueue(2, 40, 5, init="zeros").double()
    for _ in range(2):
        queue.push([F.normalize(inputs[0][mine] @ weight, dim=1), F.normalize(inputs[1][mine] @ weight, dim=1)])
    return {"prototype_grad": grad / WORLD, "codes": codes, "queue_keys": queue.keys.clone(), "queue_pointer": queue.pointer.clone()}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES, extra=_state_on_rank)


def test_global_batch_exact_on_two_processes(distributed_results):
    for name, loss in LOSSES.items():
        assert_global_batch_exact(distributed_results, name, loss)
        assert_per_gpu_is_each_ranks_own(distributed_results, name, loss)


def test_codes_prototype_gradient_and_queue_are_those_of_the_global_batch(distributed_results):
    inputs, weight = problem("swav_4views_queue")
    prototypes = PROTOTYPES.clone().requires_grad_(True)
    total, _ = swav_loss([x @ weight for x in inputs], prototypes, QUEUE, 0.1, 0.05, 3, 2)
    total.backward()
    codes = sinkhorn_knopp(inputs[0] @ weight @ PROTOTYPES.T, 0.05, 3, QUEUE[0] @ PROTOTYPES.T)
    single = KeyQueue(2, 40, 5, init="zeros").double()
    for _ in range(2):
        single.push([F.normalize(inputs[0] @ weight, dim=1), F.normalize(inputs[1] @ weight, dim=1)])
    for rank in range(WORLD):
        result = distributed_results[rank]
        torch.testing.assert_close(result["prototype_grad"], prototypes.grad, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(result["codes"], codes[rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(result["queue_keys"], single.keys, rtol=0, atol=0)
        assert int(result["queue_pointer"]) == int(single.pointer) == 48 % 40


def test_a_zero_initialised_queue_starts_empty_and_fills_in_order():
    queue = KeyQueue(2, 5, 3, init="zeros")
    assert torch.equal(queue.keys, torch.zeros(2, 5, 3))
    queue.push([torch.ones(2, 3), -torch.ones(2, 3)])
    assert queue.keys[0, :2].eq(1).all() and queue.keys[1, :2].eq(-1).all() and queue.keys[:, 2:].eq(0).all()
    with pytest.raises(ValueError, match="init='ones'"):
        KeyQueue(2, 5, 3, init="ones")


# -- the method, from its config ----------------------------------------------------------------------------------
SMALL = [*TINY, "method=swav", "method.num_prototypes=64"]


def _state(path):
    return torch.load(path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_trains_from_its_config_with_a_queue_and_frozen_then_unit_prototypes(tmp_path):
    summary = train(compose_config([*SMALL, "method.queue_size=256", "method.epoch_queue_starts=0", "trainer.max_steps=3"], tmp_path))
    assert summary["method"] == "swav" and summary["global_step"] == 3
    state = _state(tmp_path)
    assert state["queue.pointer"].item() == 3 * 64 and state["queue.keys"].shape == (2, 256, 32)
    torch.testing.assert_close(state["queue.keys"][:, :192].norm(dim=-1), torch.ones(2, 192))  # unit embeddings ...
    assert state["queue.keys"][:, 192:].eq(0).all()  # ... and the zeros not yet overwritten
    # frozen for the first epoch: no gradient, no weight decay, so they stay the unit prototypes of the first step
    assert state["prototypes.weight"].shape == (64, 32)
    torch.testing.assert_close(state["prototypes.weight"].norm(dim=1), torch.ones(64), rtol=0, atol=1e-6)


def test_solo_learns_weight_norm_prototypes_are_unit_rows_with_a_projected_gradient():
    """prototype_norm=weight_norm: w = v/‖v‖ per row (gain fixed at 1), so dL/dv = (I − w wᵀ) dL/dw / ‖v‖."""
    from frossl_lit.methods.swav import SwAV
    from tests.conftest import tiny_method

    model = tiny_method(SwAV, num_prototypes=5, prototype_norm="weight_norm").double()
    v = model.prototypes.parametrizations.weight.original1
    with torch.no_grad():
        v.mul_(torch.linspace(0.5, 3.0, 5, dtype=torch.float64)[:, None])  # rows of several norms
    w = model.prototypes.weight
    torch.testing.assert_close(w, F.normalize(v.detach(), dim=1))
    embeddings = [torch.randn(8, 16, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(2)]
    total, _ = swav_loss(embeddings, w, None, 0.1, 0.05, 3)
    total.backward()
    unit = F.normalize(v.detach(), dim=1)
    plain = unit.clone().requires_grad_(True)  # the same loss on the unit weights themselves
    swav_loss(embeddings, plain, None, 0.1, 0.05, 3)[0].backward()
    projected = (plain.grad - (plain.grad * unit).sum(1, keepdim=True) * unit) / v.detach().norm(dim=1, keepdim=True)
    torch.testing.assert_close(v.grad, projected, rtol=1e-10, atol=1e-12)
    assert not model.prototypes.parametrizations.weight.original0.requires_grad  # the gain stays 1


def test_weight_norm_prototypes_train_once_unfrozen_and_no_queue_means_no_queue_state(tmp_path):
    train(compose_config([*SMALL, "method.prototype_norm=weight_norm", "method.freeze_prototypes_epochs=0", "method.queue_size=0",
                          "trainer.max_steps=2", "callbacks.knn=null"], tmp_path))
    state = _state(tmp_path)
    assert not any(key.startswith("queue.") for key in state)
    assert state["prototypes.parametrizations.weight.original0"].eq(1).all()  # the gain stays 1 ...
    direction = state["prototypes.parametrizations.weight.original1"]
    assert direction.shape == (64, 32) and (direction.norm(dim=1) - 1).abs().max() > 1e-6  # ... v trains off the sphere


def test_multi_crop_with_gradient_accumulation_queues_the_large_crops_of_every_micro_batch(tmp_path):
    summary = train(compose_config([*SMALL, "augment.small_views=2", "augment.small_recipe={size: 8, scale: [0.1, 0.4]}",
                                    "method.queue_size=192", "method.epoch_queue_starts=0", "trainer.max_steps=1",
                                    "+trainer.accumulate_grad_batches=2", "callbacks.knn=null"], tmp_path))
    assert summary["global_step"] == 1
    state = _state(tmp_path)
    assert state["queue.keys"].shape == (2, 192, 32) and state["queue.pointer"].item() == 2 * 64  # the large crops only


@pytest.mark.slow  # 15 s: two real DDP processes (codes, loss and queue are pinned on 2 ranks above)
def test_two_ddp_processes_fill_one_queue_from_the_global_batch(tmp_path):
    from tests.conftest import run_cli

    result = run_cli([*SMALL, "method.queue_size=1024", "method.epoch_queue_starts=0", "trainer=ddp", "trainer.devices=2",
                      "trainer.max_steps=4", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["queue.pointer"].item() == 4 * 2 * 64  # four steps of the global batch
    torch.testing.assert_close(state["queue.keys"][:, :512].norm(dim=-1), torch.ones(2, 512))


@pytest.mark.parametrize("overrides,message", [
    (["method.temperature=0"], r"^method.temperature=0 must be a temperature > 0"),
    (["method.sinkhorn_epsilon=-0.05"], r"^method.sinkhorn_epsilon=-0.05 must be Sinkhorn's entropy weight > 0"),
    (["method.sinkhorn_iterations=0"], r"^method.sinkhorn_iterations=0 must be a whole number of iterations >= 1"),
    (["method.sinkhorn_iterations=1.5"], r"^method.sinkhorn_iterations=1.5 must be"),
    (["method.num_prototypes=0"], r"^method.num_prototypes=0 must be a whole number of prototypes"),
    (["method.queue_size=32"], r"^method.queue_size=32 must be a whole number of keys of at least one global batch \(64\), or 0"),
    (["method.queue_size=-1"], r"^method.queue_size=-1 must be"),
    (["method.epoch_queue_starts=-1"], r"^method.epoch_queue_starts=-1 must be an epoch >= 0"),
    (["method.freeze_prototypes_epochs=-2"], r"^method.freeze_prototypes_epochs=-2 must be a whole number of epochs >= 0"),
    (["method.prototype_norm=batch"], r"^method.prototype_norm='batch' must be step or weight_norm"),
    (["augment.num_views=1"], r"^augment.num_views=1 gives 1 views in all, but SwAV takes at least 2"),
])
def test_bad_values_are_one_line_before_the_run(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(compose_config([*SMALL, *overrides], tmp_path))


def test_a_queue_smaller_than_the_real_global_batch_is_refused_at_setup():
    from frossl_lit.methods.swav import SwAV
    from tests.conftest import tiny_method

    model = tiny_method(SwAV, queue_size=100, batch_size=64)
    model._trainer = type("T", (), {"world_size": 2})()
    with pytest.raises(UserError, match=r"^method.queue_size=100 is smaller than the global batch \(128\)"):
        model.setup("fit")


@pytest.mark.parametrize("prototype_norm", ["step", "weight_norm"])
def test_stopped_mid_second_epoch_resumes_to_the_same_state_bit_for_bit(prototype_norm, tmp_path):
    """Frozen prototypes in epoch 0, the queue joining in epoch 1, a crash after step 16 (mid-epoch 2)."""
    from tests.runtime.test_resume import SHORT, STEPS, assert_resumes_bit_for_bit

    run = [*SHORT, "method=swav", "method.num_prototypes=64", f"method.prototype_norm={prototype_norm}", "method.queue_size=256", "method.epoch_queue_starts=1",
           "method.freeze_prototypes_epochs=1", "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null",
           "callbacks.spectrum=null", "callbacks.plots=null"]  # what the resume touches, without the diagnostics' cost
    _, state = assert_resumes_bit_for_bit(run, tmp_path)
    assert {"queue.keys", "queue.pointer"} <= set(state["state_dict"])
    assert any(key.startswith("prototypes.") for key in state["state_dict"])
    assert state["state_dict"]["queue.pointer"].item() == (STEPS * 128) % 256


# -- presets: what the generic comparison (tests/test_presets.py) cannot express ------------------------------
TRANSCRIPTION = REPO / "tests" / "reference" / "methods" / "swav.yaml"
SMALL_KEYS = {"crop_size": "size", "rrc_scale": "scale", "color_jitter_prob": "jitter_prob", "brightness": "brightness",
              "contrast": "contrast", "saturation": "saturation", "hue": "hue", "grayscale_prob": "grayscale_prob",
              "gaussian_blur_prob": "blur_prob", "solarization_prob": "solarize_prob", "horizontal_flip_prob": "hflip_prob"}


def test_the_multicrop_preset_has_the_sources_small_crops_and_final_lr():
    cfg = compose_raw(["experiment=swav_cifar10_multicrop"])
    entry, variant = cfg.preset.source.split(".")
    source = yaml.safe_load(TRANSCRIPTION.read_text())[entry][variant]
    small = [aug for aug in source["augmentations"] if aug["crop_size"] != source["augmentations"][0]["crop_size"]]
    assert len(small) == 1 and cfg.augment.small_views == small[0]["num_crops"]
    for theirs, ours in SMALL_KEYS.items():
        value = cfg.augment.small_recipe[ours]
        assert (list(value) if theirs == "rrc_scale" else value) == small[0][theirs], theirs
    assert cfg.schedule.lr_scheduler.min_lr == source["scheduler"]["min_lr"]


@pytest.mark.parametrize("preset", ["swav_cifar10", "swav_cifar100", "swav_cifar10_multicrop", "swav_imagenet100", "swav_stl10"])
def test_the_solo_family_presets_parametrise_the_prototypes_as_solo_learn(preset):
    assert "weight_norm" in yaml.safe_load(TRANSCRIPTION.read_text())["_meta"]["method_code_defaults"]["prototypes"]
    assert compose_raw([f"experiment={preset}"]).method.prototype_norm == "weight_norm"


def test_a_quiet_swav_step_with_its_queue_in_use_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """tests/test_step_syncs.py's counter on SwAV with the queue in use and multi-crop: Sinkhorn, the queue's scores and
    the push read nothing back."""
    from tests import test_step_syncs as syncs

    compose = syncs.compose_config
    extra = ["method.num_prototypes=64", "method.queue_size=256", "method.epoch_queue_starts=0", "augment.small_views=2",
             "augment.small_recipe={size: 8, scale: [0.1, 0.4]}"]
    monkeypatch.setattr(syncs, "compose_config", lambda overrides, path: compose([*overrides, *extra], path))
    trainer, counter, model = syncs._count_reads(tmp_path, monkeypatch, method="swav")
    assert model.queue_in_use() and model.queue.keys.shape == (2, 256, 32)
    assert trainer.global_step == 13 and counter.quiet_steps == [1, 2, 3, 6, 7, 8, 11, 12]
    assert counter.reads == [], "host reads in quiet steps:\n" + "\n".join(map(str, counter.reads))
