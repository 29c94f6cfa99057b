"""SpectrumDiagnostics, ThroughputMonitor, StepCheckpoint and RunPlots on a real fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frossl_lit.callbacks import (
    RunPlots,
    SpectrumDiagnostics,
    StepCheckpoint,
    ThroughputMonitor,
    effective_rank,
    plot_run,
)
from tests.conftest import tiny_fit


def test_effective_rank_counts_equal_eigenvalues():
    assert effective_rank(torch.ones(16)).item() == pytest.approx(16.0)
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(1.0)
    assert 1.0 < effective_rank(torch.tensor([4.0, 1.0])).item() < 2.0


def test_spectrum_throughput_step_checkpoint_and_plots_in_one_fit(tmp_path):
    spectrum = SpectrumDiagnostics(every_n_steps=2)
    checkpoint = StepCheckpoint(dirpath=str(tmp_path / "checkpoints"), every_n_steps=2)
    throughput = ThroughputMonitor(every_n_steps=2)
    trainer, _ = tiny_fit(tmp_path, [spectrum, throughput, checkpoint, RunPlots()], max_steps=5)
    saved = np.load(tmp_path / "spectrum.npz")
    assert list(saved["steps"]) == [2, 4] and saved["eigenvalues"].shape == (2, 16)
    assert (np.diff(saved["eigenvalues"], axis=1) <= 1e-6).all()  # decreasing order
    assert trainer.callback_metrics["train/images_per_second"] > 0
    # windows close at steps 2 and 4 and at the end (step 5): the first is left out as warm-up
    assert [steps for _, steps, _ in throughput.windows] == [2, 2, 1]
    summary = throughput.summary()
    expected = sorted(seconds / steps for seconds, steps, _ in throughput.windows[1:])
    assert summary["step_seconds"] == pytest.approx(sum(expected) / 2, abs=1e-5)  # the median of two
    assert summary["peak_memory_kind"] == "host_rss" and 0.1 < summary["peak_memory_gib"] < 64
    resumed = ThroughputMonitor()
    resumed.load_state_dict(throughput.state_dict())
    assert resumed.summary()["step_seconds"] == summary["step_seconds"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    assert {p.name for p in plot_run(tmp_path)} == {"curves.png", "spectrum.png"}
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_step_checkpoint_refuses_a_zero_interval(tmp_path):
    with pytest.raises(ValueError, match="every_n_steps=0 must be >= 1"):
        StepCheckpoint(dirpath=str(tmp_path), every_n_steps=0)


def test_a_spectrum_wider_than_the_batch_comes_from_the_gram_matrix():
    """N < D (DINO's 65536 prototype scores): the N×N Gram matrix's eigenvalues are the covariance's non-zero
    ones, so the callback decomposes that and keeps min(N, D) values, never a D×D matrix."""
    import types

    import torch

    from frossl_lit.callbacks.spectrum import SpectrumDiagnostics
    from frossl_lit.methods.step import StepOutput

    z = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))  # float32, as the callback computes
    callback, logged = SpectrumDiagnostics(every_n_steps=1), {}
    trainer = types.SimpleNamespace(global_step=1, world_size=1, loggers=[])
    module = types.SimpleNamespace(log=lambda name, value: logged.__setitem__(name, value))
    output = StepOutput(loss=z.sum(), parts={}, features=z, embeddings=z, labels=torch.zeros(6, dtype=torch.long),
                        method="test").for_lightning(z.sum())
    callback.on_train_batch_end(trainer, module, output, None, 0)
    centred = z.double() - z.double().mean(dim=0)
    full = torch.linalg.eigvalsh(centred.T @ centred / 5).flip(0).clamp_min(0)  # the 40×40 covariance, in float64
    assert callback.spectra[0].shape == (6,) and full[5:].max() < 1e-10  # rank N − 1: the rest are zeros
    torch.testing.assert_close(torch.from_numpy(callback.spectra[0]).double(), full[:6], atol=1e-4, rtol=1e-5)
    assert abs(float(logged["train/top_eigenvalue_fraction"]) - float(full[0] / full.sum())) < 1e-5
