"""experiments/bench_losses.py's arithmetic: the fitted V exponent and the tables it records (the measurement itself
runs in tests/experiments/test_scripts.py's smoke)."""

from __future__ import annotations

import pytest

from experiments import bench_losses


@pytest.mark.parametrize("k", [1.0, 2.0, 0.5])
def test_the_fitted_exponent_recovers_a_power_law(k):
    assert bench_losses.fitted_exponent({v: 3.0 * v**k for v in (2, 4, 8)}) == pytest.approx(k)
    assert bench_losses.fitted_exponent({2: 1.0}) is None


def test_every_loss_is_measured_and_tabled_with_its_memory_and_exponents():
    results = {}
    for name, loss in bench_losses.LOSSES.items():
        for views in ((2, 4, 8) if loss.views is None else (loss.views,)):
            results[(name, 8, 16, views)] = bench_losses.measure(loss.build(8, 16), 8, 16, views)
    body = bench_losses.tables(results, list(bench_losses.LOSSES), [8], [16], [2, 4, 8])
    assert "| FroSSL |" in body and "| 8 | 16 | 8 |" in body and "MiB" in body
    for name in bench_losses.HEAVY:
        assert name in bench_losses.LOSSES, name
    assert all(seconds > 0 for seconds, _ in results.values())
