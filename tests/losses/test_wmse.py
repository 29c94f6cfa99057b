"""W-MSE: the loss equals an independent float64 transcription of the paper's whitening MSE (Cholesky whitening of
each view of each sub-batch, 2 − 2 cos over all pairs, averaged over pairs and whitening iterations), its gradient
equals finite differences of that transcription, solo-learn's stop-gradient variant is what it says, it is exact
under DDP (2 ranks = one process on the concatenated batch; per-GPU = each rank's own), the permutations are a
function of (seed, step), bad values are one line before the run, and the method trains, takes small crops and
resumes bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frossl_lit.losses.wmse import whiten, wmse_loss
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config
from tests.ddp_harness import (
    LOCAL_BATCH,
    WORLD,
    assert_global_batch_exact,
    assert_per_gpu_is_each_ranks_own,
    run_on_two_ranks,
)

W64 = ["method=wmse", "method.whitening_size=64"]  # TINY: batch 64, projector out_dim 32


def reference(views: list[np.ndarray], permutations: np.ndarray, w: int, eps: float) -> float:
    """For each permutation, each block of w samples and each view: centre, C = x̄ᵀx̄/(w − 1), shrink, Cholesky
    C = LLᵀ, whiten x̄ (L⁻¹)ᵀ; then per pair of views i < j the mean over samples of ‖x̂_i/|x̂_i| − x̂_j/|x̂_j|‖²;
    the mean over pairs and permutations."""
    num_views, (n, dim) = len(views), views[0].shape
    losses = []
    for perm in permutations:
        whitened = [np.empty((n, dim)) for _ in range(num_views)]
        for start in range(0, n, w):
            rows = perm[start:start + w]
            for v in range(num_views):
                x = views[v][rows]
                xc = x - x.mean(axis=0)
                cov = (1 - eps) * (xc.T @ xc) / (w - 1) + eps * np.eye(dim)
                inverse = np.linalg.inv(np.linalg.cholesky(cov))
                whitened[v][rows] = xc @ inverse.T
        unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in whitened]
        for i in range(num_views):
            for j in range(i + 1, num_views):
                losses.append(np.mean(np.sum((unit[i] - unit[j]) ** 2, axis=1)))
    return float(np.mean(losses))


def _problem(num_views, n, dim, iters, seed=0):
    generator = torch.Generator().manual_seed(seed)
    views = [torch.randn(n, dim, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(num_views)]
    permutations = torch.stack([torch.randperm(n, generator=generator) for _ in range(iters)])
    return views, permutations


CASES = [(2, 16, 0.0, 1, 5), (3, 8, 0.1, 2, 6), (4, 32, 0.0, 3, 4), (2, 12, 0.5, 2, 12), (8, 96, 0.0, 4, 20)]


@pytest.mark.parametrize("num_views,w,eps,iters,dim", CASES)
def test_equals_the_formula_in_float64(num_views, w, eps, iters, dim):
    views, permutations = _problem(num_views, 96, dim, iters)
    total, parts = wmse_loss(views, permutations, w, eps)
    expected = reference([v.detach().numpy() for v in views], permutations.numpy(), w, eps)
    assert total.dtype == torch.float64
    assert total.item() == pytest.approx(expected, rel=1e-10)
    assert parts["cosine_similarity"].item() == pytest.approx(1 - expected / 2, rel=1e-10)
    assert parts["cholesky_failures"].item() == 0


@pytest.mark.parametrize("num_views,eps", [(2, 0.0), (3, 0.2)])
def test_gradient_equals_finite_differences_of_the_formula(num_views, eps):
    views, permutations = _problem(num_views, 24, 3, 2, seed=1)
    total, _ = wmse_loss(views, permutations, 8, eps)
    total.backward()
    arrays, h = [v.detach().numpy().copy() for v in views], 1e-6
    for v in range(num_views):
        numeric = np.zeros_like(arrays[v])
        for index in np.ndindex(*arrays[v].shape):
            saved = arrays[v][index]
            arrays[v][index] = saved + h
            up = reference(arrays, permutations.numpy(), 8, eps)
            arrays[v][index] = saved - h
            down = reference(arrays, permutations.numpy(), 8, eps)
            arrays[v][index] = saved
            numeric[index] = (up - down) / (2 * h)
        np.testing.assert_allclose(views[v].grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("num_views", [2, 3])
def test_solo_learns_stop_gradient_reaches_only_the_first_view_of_each_pair(num_views):
    views, permutations = _problem(num_views, 32, 4, 2)
    plain, _ = wmse_loss(views, permutations, 16)
    plain_grads = torch.autograd.grad(plain, views)
    detached, _ = wmse_loss(views, permutations, 16, detach_second_view=True)
    assert detached.item() == pytest.approx(plain.item(), rel=1e-12)  # the same value
    grads = torch.autograd.grad(detached, views, allow_unused=True)
    torch.testing.assert_close(grads[0], plain_grads[0], rtol=1e-10, atol=1e-12)  # view 0 is first in all its pairs
    assert grads[-1] is None or torch.all(grads[-1] == 0)  # the last view is second in all its pairs
    assert not torch.allclose(plain_grads[-1], torch.zeros_like(plain_grads[-1]))


def test_whitening_gives_an_identity_covariance_and_marks_a_failed_factorisation():
    x = torch.randn(3, 40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) @ torch.randn(6, 6, dtype=torch.float64)
    whitened, failures = whiten(x)
    centred_cov = whitened.mT @ whitened / 39
    torch.testing.assert_close(centred_cov, torch.eye(6, dtype=torch.float64).expand(3, 6, 6), rtol=0, atol=1e-10)
    assert failures.item() == 0
    x[1, :, 2] = 1.0  # a constant dimension: a singular covariance
    whitened, failures = whiten(x)
    assert failures.item() == 1 and torch.isnan(whitened[1]).all() and torch.isfinite(whitened[[0, 2]]).all()
    views, permutations = _problem(2, 16, 4, 1)
    with torch.no_grad():
        views[0][:, 1] = 3.0
    total, parts = wmse_loss(views, permutations, 8)
    assert torch.isnan(total) and parts["cholesky_failures"].item() == 2  # both sub-batches of view 0


def test_bad_inputs_are_refused():
    views, permutations = _problem(2, 16, 4, 1)
    with pytest.raises(ValueError, match="at least 2 views"):
        wmse_loss(views[:1], permutations, 8)
    with pytest.raises(ValueError, match="whitening_size=1 must be"):
        wmse_loss(views, permutations, 1)
    with pytest.raises(ValueError, match="eps=-0.1 must be"):
        wmse_loss(views, permutations, 8, eps=-0.1)
    with pytest.raises(ValueError, match=r"batch \(16\) must be a multiple of whitening_size=6"):
        wmse_loss(views, permutations, 6)
    with pytest.raises(ValueError, match=r"permutations must be \(iters >= 1, 16\)"):
        wmse_loss(views, permutations[:, :8], 8)


# -- DDP: 2 gloo ranks of 12 samples (tests/ddp_harness.py: out_dim 5) -------------------------------------------


def _permutations(samples: int, iters: int) -> torch.Tensor:
    """What the method does: the same permutations on every rank, drawn for the samples the loss whitens."""
    generator = torch.Generator().manual_seed(7)
    return torch.stack([torch.randperm(samples, generator=generator) for _ in range(iters)])


def _wmse(views, collective):
    samples = views[0].shape[0] * collective.world_size
    return wmse_loss(views, _permutations(samples, 2), 12, collective=collective)


def _wmse_detached(views, collective):
    samples = views[0].shape[0] * collective.world_size
    return wmse_loss(views, _permutations(samples, 3), 6, 0.05, detach_second_view=True, collective=collective)


LOSSES = {"wmse": _wmse, "wmse_4views_detached": _wmse_detached}


@pytest.fixture(scope="module")
def distributed_results():
    return run_on_two_ranks(LOSSES)


@pytest.mark.parametrize("name", list(LOSSES))
def test_global_batch_exact_on_two_processes_and_per_gpu_each_ranks_own(distributed_results, name):
    assert WORLD * LOCAL_BATCH == 24
    assert_global_batch_exact(distributed_results, name, LOSSES[name])
    assert_per_gpu_is_each_ranks_own(distributed_results, name, LOSSES[name])


# -- the method ------------------------------------------------------------------------------------------------


def _module(tmp_path, overrides=()):
    from frossl_lit.train import build

    return build(compose_config([*TINY, *W64, *overrides], tmp_path))[1]


def test_permutations_are_a_function_of_seed_and_step(tmp_path):
    model = _module(tmp_path, ["method.whitening_iters=3"])
    first = model.permutations(64, step=5)
    assert first.shape == (3, 64) and all(torch.equal(torch.sort(p).values, torch.arange(64)) for p in first)
    assert torch.equal(first, model.permutations(64, step=5))
    assert not torch.equal(first, model.permutations(64, step=6))
    assert not torch.equal(first[0], first[1])  # fresh splits per whitening iteration
    other = _module(tmp_path / "other", ["method.whitening_iters=3", "seed=1"])
    assert not torch.equal(first, other.permutations(64, step=5))


def test_small_crops_pass_forward_and_stay_out_of_the_loss(tmp_path):
    model = _module(tmp_path)
    generator = torch.Generator().manual_seed(0)
    large = [torch.randn(64, 3, 16, 16, generator=generator) for _ in range(2)]
    small = [torch.randn(64, 3, 8, 8, generator=generator) for _ in range(3)]
    torch.manual_seed(0)
    with_small = model.embed_views([*large, *small])
    assert len(with_small.embeddings) == 5
    total, _ = model.loss(with_small)
    alone, _ = model.loss(model.embed_views(large))
    torch.testing.assert_close(total, alone, rtol=0, atol=0)


def test_trains_from_its_config(tmp_path):
    summary = train(compose_config([*TINY, *W64, "trainer.max_steps=3", "method.whitening_iters=2"], tmp_path))
    assert summary["method"] == "wmse" and summary["global_step"] == 3
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    assert state["projector.net.3.weight"].shape == (32, 64)  # 64 -> 32, the last Linear after Linear-BN-ReLU
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())
    assert checkpoint["global_step"] == 3


def test_trains_with_four_large_and_two_small_crops(tmp_path):
    summary = train(compose_config([*TINY, *W64, "trainer.max_steps=2", "augment.num_views=4", "augment.small_views=2",
                                    "augment.small_recipe={size:8,scale:[0.2,0.5]}", "callbacks.knn=null",
                                    "callbacks.probe=null", "callbacks.checkpoint_best=null"], tmp_path))
    assert summary["global_step"] == 2


@pytest.mark.parametrize("overrides,message", [
    (["method.whitening_size=1"], r"method.whitening_size=1 must be a whole number of samples >= 2"),
    (["method.whitening_size=abc"], r"method.whitening_size='abc' must be a whole number"),
    (["method.whitening_size=128"], r"method.whitening_size=128 is larger than the global batch \(data.batch_size × devices\) \(64\)"),
    (["method.whitening_size=48"], r"method.whitening_size=48 does not divide the global batch .* \(64\)"),
    (["method.whitening_size=48", "method.global_batch=false"], r"method.whitening_size=48 does not divide data.batch_size"),
    (["method.projector.out_dim=64"], r"method.projector.out_dim=64 must be < method.whitening_size=64"),
    (["method.whitening_iters=0"], r"method.whitening_iters=0 must be a whole number >= 1"),
    (["method.whitening_eps=-0.1"], r"method.whitening_eps=-0.1 must be a covariance shrinkage weight in \[0, 1\]"),
    (["method.whitening_eps=1.5"], r"method.whitening_eps=1.5 must be"),
    (["method.detach_second_view=maybe"], r"method.detach_second_view='maybe' must be true or false"),
    (["augment.num_views=1"], r"augment.num_views=1 gives 1 views in all, but WMSE takes at least 2"),
])
def test_bad_values_are_one_line_before_the_run(overrides, message, tmp_path):
    with pytest.raises(UserError, match=message):
        train(compose_config([*TINY, *W64, *overrides], tmp_path))


def test_the_sub_batch_is_checked_against_the_global_batch_of_every_device(tmp_path):
    from frossl_lit.config.checks import check_config

    two = ["trainer.devices=2", "trainer.accelerator=cpu", "trainer.strategy=ddp"]
    check_config(compose_config([*TINY, *W64, *two, "method.whitening_size=128"], tmp_path / "a"))  # 2 × 64 = 128
    with pytest.raises(UserError, match=r"method.whitening_size=96 does not divide the global batch .* \(128\)"):
        check_config(compose_config([*TINY, *W64, *two, "method.whitening_size=96"], tmp_path / "b"))
    with pytest.raises(UserError, match=r"method.whitening_size=128 is larger than data.batch_size"):  # per GPU: 64
        check_config(compose_config([*TINY, *W64, *two, "method.whitening_size=128", "method.global_batch=false"], tmp_path / "c"))


def test_out_dim_equal_to_the_sub_batch_is_accepted_with_shrinkage(tmp_path):
    model = _module(tmp_path, ["method.projector.out_dim=64", "method.whitening_eps=0.1"])
    assert model.projector.out_dim == 64 == model.whitening_size


# in make test (about 4 s on 2 cores): the acceptance asks for every new method's resume there
def test_stopped_mid_epoch_resumes_to_the_same_state_bit_for_bit(tmp_path):
    from tests.runtime.test_resume import SHORT, assert_resumes_bit_for_bit

    run = [*SHORT, *W64, "method.whitening_iters=2", "callbacks.knn=null", "callbacks.probe=null",
           "callbacks.checkpoint_best=null"]
    assert_resumes_bit_for_bit(run, tmp_path)


# -- what the generic preset comparison (tests/test_presets.py) cannot express -----------------------------------


@pytest.mark.parametrize("preset", ["wmse_cifar10", "wmse_cifar100", "wmse_imagenet100"])
def test_solo_learn_presets_train_with_torchs_adam_as_solo_learn_builds_it(preset):
    from hydra.utils import instantiate

    from tests.conftest import compose_raw
    from tests.test_presets import source_block

    cfg = compose_raw([f"experiment={preset}"])
    source = source_block(cfg.preset.source)
    assert source["optimizer"]["name"] == "adam" and cfg.schedule.optimizer._target_ == "torch.optim.Adam"
    weight, bias = torch.nn.Parameter(torch.zeros(3, 3)), torch.nn.Parameter(torch.zeros(3))
    optimizer = instantiate(cfg.schedule.optimizer)([{"params": [weight]}, {"params": [bias]}])
    assert type(optimizer) is torch.optim.Adam
    for group in optimizer.param_groups:  # solo-learn passes no kwargs for adam: torch's defaults
        assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and group["lr"] == source["optimizer"]["lr_effective"]
        assert group["weight_decay"] == source["optimizer"]["weight_decay"]
    assert cfg.schedule.decay_bias_and_norm is True  # exclude_bias_n_norm_wd off: decay on every parameter


def test_the_imagenet100_small_crops_are_the_transcribed_ones():
    from frossl_lit.data.augment import ViewRecipe
    from tests.conftest import compose_raw
    from tests.test_presets import AUGMENT_KEYS, source_block

    cfg = compose_raw(["experiment=wmse_imagenet100"])
    small = source_block(cfg.preset.source)["augmentations"][1]
    assert cfg.augment.small_views == small["num_crops"] == 6
    recipe = vars(ViewRecipe(**cfg.augment.small_recipe))
    for theirs, ours in AUGMENT_KEYS.items():
        expected = small[theirs]
        assert (list(recipe[ours]) if ours == "scale" else recipe[ours]) == expected, theirs


@pytest.mark.slow  # ~15 s: a 13-step fit with every read of a tensor counted
def test_a_quiet_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """As tests/test_step_syncs.py for the built-in methods: the permutations are drawn on the host from a seeded
    generator and the Cholesky factorisations are not checked there, so no step waits on the device."""
    from tests.test_step_syncs import _count_reads

    trainer, counter, _ = _count_reads(tmp_path, monkeypatch, method="wmse", overrides=[*W64[1:], "method.whitening_iters=2"])
    assert trainer.global_step == 13 and counter.quiet_steps == [1, 2, 3, 6, 7, 8, 11, 12]
    assert counter.reads == [], "host reads in quiet steps:\n" + "\n".join(map(str, counter.reads))


@pytest.mark.slow  # ~20 s: two real DDP processes (the loss itself is pinned on 2 ranks above)
def test_two_ddp_processes_whiten_sub_batches_of_the_global_batch(tmp_path):
    from tests.conftest import run_cli

    # 2 × 64 = 128 samples: a sub-batch of 128 exists only in the global batch
    result = run_cli([*TINY, "method=wmse", "method.whitening_size=128", "trainer=ddp", "trainer.devices=2",
                      "trainer.max_steps=3", "callbacks.knn=null", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
