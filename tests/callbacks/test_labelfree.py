"""Label-free metrics (RankMe, α-ReQ, LiDAR): pinned to independent numpy/scipy transcriptions of each formula, known
cases, bad inputs, and the callback on a real tiny run on digits."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from frossl_lit.callbacks import LabelFreeEvaluation
from frossl_lit.evaluation import extract_features
from frossl_lit.evaluation.labelfree import alpha_req, lidar, rankme
from tests.conftest import tiny_digits, tiny_fit


# -- independent transcriptions (numpy / scipy, loops where the formula has sums) ---------------------------------
def rankme_reference(z: np.ndarray, eps: float = 1e-7) -> float:
    sigma = np.linalg.svd(z, compute_uv=False)
    p = sigma / np.abs(sigma).sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def alpha_reference(z: np.ndarray) -> float:
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    ranks = np.arange(1, len(eigenvalues) + 1)
    slope, _ = np.polyfit(np.log(ranks), np.log(eigenvalues), 1)
    return float(-slope)


def lidar_reference(z: np.ndarray, delta: float = 1e-4, eps: float = 1e-8) -> float:
    n, q, d = z.shape
    class_means = np.array([z[i].mean(axis=0) for i in range(n)])
    grand_mean = class_means.mean(axis=0)
    between = sum(np.outer(m - grand_mean, m - grand_mean) for m in class_means) / (n - 1)
    within = sum(np.outer(z[i, j] - class_means[i], z[i, j] - class_means[i]) for i in range(n) for j in range(q))
    within = within / (n * (q - 1)) + delta * np.eye(d)
    inverse_root = scipy.linalg.fractional_matrix_power(within, -0.5)
    assert np.abs(np.imag(inverse_root)).max() < 1e-12
    inverse_root = np.real(inverse_root)
    matrix = inverse_root @ between @ inverse_root
    eigenvalues = np.clip(np.linalg.eigvalsh((matrix + matrix.T) / 2), 0.0, None)
    p = eigenvalues / np.abs(eigenvalues).sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def planted_spectrum(n: int, d: int, eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, d) features whose covariance (1/(n−1), centred) has exactly ``eigenvalues``, plus a mean offset."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    basis, _ = np.linalg.qr(x - x.mean(axis=0))  # orthonormal columns, each orthogonal to the ones vector
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return math.sqrt(n - 1) * (basis * np.sqrt(eigenvalues)) @ rotation.T + 3.0 * rng.standard_normal(d)


# -- (a) each function against its transcription, float64, rel 1e-10 -----------------------------------------------
@pytest.mark.parametrize("shape", [(50, 12), (9, 30), (200, 64)])
def test_rankme_equals_the_numpy_transcription(shape):
    z = np.random.default_rng(1).standard_normal(shape) @ np.diag(np.linspace(0.1, 3.0, shape[1])) + 0.5
    assert float(rankme(torch.from_numpy(z))) == pytest.approx(rankme_reference(z), rel=1e-10)
    assert float(rankme(torch.from_numpy(z), eps=0.0)) == pytest.approx(rankme_reference(z, eps=0.0), rel=1e-10)


@pytest.mark.parametrize("shape", [(60, 10), (300, 40)])
def test_alpha_req_equals_the_polyfit_transcription(shape):
    z = np.random.default_rng(2).standard_normal(shape) * np.linspace(0.2, 4.0, shape[1]) + 1.0
    assert float(alpha_req(torch.from_numpy(z))) == pytest.approx(alpha_reference(z), rel=1e-10)


@pytest.mark.parametrize("shape, delta", [((40, 5, 12), 1e-4), ((10, 3, 24), 1e-4), ((30, 2, 8), 0.3)])
def test_lidar_equals_the_scipy_transcription(shape, delta):
    rng = np.random.default_rng(3)
    n, q, d = shape
    z = rng.standard_normal((n, 1, d)) * 2.0 + 0.7 * rng.standard_normal((n, q, d)) @ rng.standard_normal((d, d)) / d**0.5
    assert float(lidar(torch.from_numpy(z), delta=delta)) == pytest.approx(lidar_reference(z, delta), rel=1e-10)


def test_float32_input_is_computed_in_float64_and_returns_a_0d_tensor():
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    for value, expected in ((rankme(z), rankme(z.double())), (alpha_req(z.double()), alpha_req(z.double())),
                            (lidar(z.view(16, 4, 16)), lidar(z.double().view(16, 4, 16)))):
        assert value.dtype == torch.float64 and value.ndim == 0
        assert float(value) == pytest.approx(float(expected), rel=1e-12)


# -- (b) known cases -----------------------------------------------------------------------------------------------
def test_rankme_of_an_isotropic_matrix_is_its_dimension_and_of_a_rank_one_matrix_one():
    d = 32
    orthonormal, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((500, d)))
    assert float(rankme(torch.from_numpy(7.0 * orthonormal))) == pytest.approx(d, rel=1e-4)
    gaussian = torch.randn(4096, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert d * 0.99 < float(rankme(gaussian)) <= d
    rank_one = torch.randn(100, 1, dtype=torch.float64) @ torch.randn(1, 20, dtype=torch.float64)
    assert float(rankme(rank_one)) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.5])
def test_alpha_req_recovers_a_planted_power_law(alpha):
    d = 48
    z = planted_spectrum(400, d, np.arange(1, d + 1, dtype=float) ** -alpha)
    assert float(alpha_req(torch.from_numpy(z))) == pytest.approx(alpha, abs=1e-10)
    assert float(alpha_req(torch.from_numpy(z), fit_range=(6, 30))) == pytest.approx(alpha, abs=1e-10)


def test_alpha_req_drops_numerically_zero_eigenvalues():
    d, rank = 40, 25
    eigenvalues = np.concatenate([np.arange(1, rank + 1, dtype=float) ** -1.5, np.zeros(d - rank)])
    z = torch.from_numpy(planted_spectrum(300, d, eigenvalues))
    assert float(alpha_req(z)) == pytest.approx(1.5, abs=1e-8)  # the zeros (about 1e-30 after rounding) are left out
    assert math.isnan(float(alpha_req(torch.ones(10, 4, dtype=torch.float64))))  # no spectrum to fit


def test_lidar_is_invariant_to_an_invertible_linear_map_of_the_embedding():
    rng = np.random.default_rng(5)
    n, q, d = 60, 4, 10
    z = rng.standard_normal((n, 1, d)) + 0.5 * rng.standard_normal((n, q, d))
    mixing = rng.standard_normal((d, d)) + 3.0 * np.eye(d)  # invertible, not orthogonal
    before = float(lidar(torch.from_numpy(z), delta=0.0))
    after = float(lidar(torch.from_numpy(z @ mixing.T), delta=0.0))
    assert after == pytest.approx(before, rel=1e-9)
    # and a scaled embedding keeps its LiDAR whatever δ once the ridge is negligible against Σ_w
    assert float(lidar(torch.from_numpy(1e3 * z))) == pytest.approx(before, rel=1e-6)


def test_lidar_is_larger_when_samples_are_separated_along_more_directions():
    """The views of each sample scatter a little in every direction; the samples' centres differ along all D
    directions (well separated) or along only 2 of them (the rest indistinguishable): LiDAR counts the directions
    that tell samples apart."""
    rng = np.random.default_rng(6)
    n, q, d = 200, 4, 16
    noise = 0.01 * rng.standard_normal((n, q, d))
    centres = rng.standard_normal((n, 1, d))
    separated = float(lidar(torch.from_numpy(centres + noise)))
    centres[:, :, 2:] = 0.0
    overlapping = float(lidar(torch.from_numpy(centres + noise)))
    assert separated > 0.9 * d and overlapping < 2.1
    assert separated > overlapping
    collapsed = float(lidar(torch.from_numpy(np.repeat(centres, q, axis=1))))  # no within-class spread: δ whitens
    assert collapsed == pytest.approx(2.0, rel=0.05)


def test_degenerate_inputs_give_nan_not_an_exception():
    assert math.isnan(float(rankme(torch.zeros(5, 3))))
    assert math.isnan(float(rankme(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))))
    assert math.isnan(float(lidar(torch.ones(4, 3, 2))))  # every sample the same: Σ_b = 0
    assert math.isnan(float(lidar(torch.randn(3, 2, 8), delta=0.0)))  # singular Σ_w without a ridge


# -- (d) bad inputs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: rankme(torch.randn(10)), r"rankme: expected a 2-d tensor of shape \(N samples, D features\), got shape \(10,\)"),
    (lambda: rankme(torch.randn(2, 3, 4)), r"rankme: expected a 2-d tensor"),
    (lambda: alpha_req(torch.randn(1, 5)), r"alpha_req: need at least 2 samples"),
    (lambda: alpha_req(torch.randn(5, 5), fit_range=(0, 3)), r"alpha_req: fit_range=\(0, 3\) must be"),
    (lambda: lidar(torch.randn(10, 8)), r"lidar: expected a 3-d tensor of shape \(N samples, Q views, D features\)"),
    (lambda: lidar(torch.randn(10, 1, 8)), r"lidar: need N >= 2 samples .* Q >= 2 views .* got shape \(10, 1, 8\)"),
    (lambda: lidar(torch.randn(1, 4, 8)), r"lidar: need N >= 2"),
    (lambda: lidar(torch.randn(4, 4, 8), delta=-1.0), r"lidar: delta=-1.0"),
    (lambda: LabelFreeEvaluation(num_views=1), r"labelfree: need .* num_views >= 2"),
    (lambda: LabelFreeEvaluation(num_samples=1), r"labelfree: need num_samples >= 2"),
])
def test_bad_inputs_are_refused_with_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- (c) the callback on a real tiny run -----------------------------------------------------------------------------
def test_callback_publishes_finite_figures_deterministically_without_touching_any_rng(tmp_path):
    callback = LabelFreeEvaluation(num_samples=256, num_views=3)
    datamodule = tiny_digits()
    trainer, module = tiny_fit(tmp_path, [callback], datamodule=datamodule)

    summary = callback.summary()
    assert set(summary) == {"rankme", "alpha_req", "lidar"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in summary.values()), summary
    assert callback.initial is not None and callback.last_step == trainer.global_step == 6
    assert callback.samples_used == 256
    for name in summary:
        assert float(trainer.callback_metrics[f"val/{name}"]) == pytest.approx(summary[name])
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    logged = {int(r["step"]): float(r["val/lidar"]) for r in rows if r.get("val/lidar")}
    assert 0 in logged and logged[0] == pytest.approx(callback.initial["lidar"])  # at_start, at step 0

    # RankMe / α-ReQ are those of the eval-transform features of the seeded subset of the training images
    bank = datamodule.bank_set
    index = torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[:256].sort().values
    images, labels = bank[index]
    features, _ = extract_features(module.backbone, [(images, labels)], datamodule.augment.eval_transform, torch.device("cpu"))
    assert summary["rankme"] == pytest.approx(float(rankme(features)), rel=1e-9)
    assert summary["alpha_req"] == pytest.approx(float(alpha_req(features)), rel=1e-9)

    # the same figures again; no global RNG drawn; the run's augmenter and the model's train mode untouched
    module.train()
    rng_state, augment_seed = torch.get_rng_state(), datamodule.augment.seed
    again = callback.evaluate(trainer, module)
    assert torch.equal(torch.get_rng_state(), rng_state) and datamodule.augment.seed == augment_seed
    assert module.backbone.training
    assert again == pytest.approx({f"val/{name}": value for name, value in summary.items()}, rel=1e-12)


def test_state_survives_a_checkpoint_and_a_resumed_run_does_not_measure_again(tmp_path):
    callback = LabelFreeEvaluation(num_samples=64)
    trainer, module = tiny_fit(tmp_path, [callback], max_steps=2)
    state = callback.state_dict()
    restored = LabelFreeEvaluation(num_samples=64)
    restored.load_state_dict(torch.load(_saved(tmp_path, state), weights_only=True))
    assert restored.summary() == callback.summary() and restored.initial == callback.initial
    assert restored.last_step == callback.last_step and restored.eval_seconds == pytest.approx(callback.eval_seconds)

    restored.evaluate = lambda *args: pytest.fail("a resumed run re-measured")  # at_start and on_train_end skip
    restored.on_train_start(trainer, module)
    restored.on_train_end(trainer, module)


def _saved(tmp_path, state):
    path = tmp_path / "labelfree_state.pt"
    torch.save(state, path)
    return path
