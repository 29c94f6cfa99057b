"""frossl_lit.reports.stats: t intervals over seeds, paired differences, first crossings, Kendall's tau, formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from frossl_lit.reports.stats import first_crossing, format_ci, kendall_tau, mean_ci, paired_difference_ci


def test_mean_ci_of_one_two_three_matches_the_hand_computation():
    result = mean_ci([1.0, 2.0, 3.0])
    # s = 1, so the half width is t_{0.975, 2} · 1 / √3 = 4.302653 / 1.732051 = 2.484138
    assert result["mean"] == pytest.approx(2.0)
    assert result["std"] == pytest.approx(1.0)
    assert result["half_width"] == pytest.approx(4.302652729749464 / math.sqrt(3))
    assert result["half_width"] == pytest.approx(2.4841, abs=1e-4)
    assert (result["low"], result["high"]) == pytest.approx((2.0 - result["half_width"], 2.0 + result["half_width"]))
    assert result["n"] == 3
    assert mean_ci([1.0, 2.0, 3.0], confidence=0.9)["half_width"] == pytest.approx(scipy_stats.t.ppf(0.95, 2) / math.sqrt(3))


def test_mean_ci_drops_non_finite_values_and_counts_only_the_rest():
    result = mean_ci([1.0, float("nan"), 2.0, None, 3.0, float("inf")])
    assert result["n"] == 3 and result == pytest.approx(mean_ci([1.0, 2.0, 3.0]))
    assert mean_ci(np.array([[1.0, 2.0], [3.0, np.nan]]))["n"] == 3


def test_mean_ci_of_one_seed_has_no_interval_and_of_none_no_mean():
    one = mean_ci([0.9])
    assert one["mean"] == 0.9 and one["n"] == 1
    assert all(math.isnan(one[key]) for key in ("low", "high", "half_width", "std"))
    empty = mean_ci([float("nan"), None])
    assert empty["n"] == 0 and all(math.isnan(empty[key]) for key in ("mean", "low", "high", "half_width", "std"))
    assert mean_ci([])["n"] == 0
    assert mean_ci([0.5, 0.5])["half_width"] == 0.0


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_mean_ci_rejects_a_confidence_outside_zero_one(confidence):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        mean_ci([1.0, 2.0], confidence=confidence)


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time_with_three_seeds():
    rng = np.random.default_rng(0)
    samples = rng.normal(loc=0.7, scale=0.02, size=(2000, 3))
    covered = [(r := mean_ci(sample))["low"] <= 0.7 <= r["high"] for sample in samples]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_paired_difference_removes_the_shared_seed_variation_that_unpaired_intervals_keep():
    base = np.array([0.60, 0.70, 0.80, 0.65, 0.75])  # large between-seed spread shared by both methods
    a, b = base + np.array([0.011, 0.009, 0.010, 0.012, 0.008]), base
    paired = paired_difference_ci(a, b)
    assert paired["mean"] == pytest.approx(0.010) and paired["n"] == 5
    assert paired == pytest.approx({**mean_ci(a - b), "fraction_a_greater": 1.0})
    assert paired["low"] > 0  # the paired interval excludes zero ...
    unpaired_half_width = math.hypot(mean_ci(a)["half_width"], mean_ci(b)["half_width"])
    assert unpaired_half_width > 10 * paired["half_width"]  # ... while independent intervals overlap widely
    assert mean_ci(a)["low"] < mean_ci(b)["high"]


def test_paired_difference_drops_incomplete_pairs_and_counts_wins():
    result = paired_difference_ci([1.0, 2.0, float("nan"), 4.0, 5.0], [0.0, 3.0, 1.0, None, 4.0])
    assert result["n"] == 3  # pairs 0, 1 and 4
    assert result["mean"] == pytest.approx((1.0 - 1.0 + 1.0) / 3)
    assert result["fraction_a_greater"] == pytest.approx(2 / 3)
    assert paired_difference_ci([1.0, 1.0], [1.0, 1.0])["fraction_a_greater"] == 0.0  # ties are not wins
    assert math.isnan(paired_difference_ci([None], [1.0])["fraction_a_greater"])
    with pytest.raises(ValueError, match="as many values"):
        paired_difference_ci([1.0, 2.0], [1.0])


def test_first_crossing_returns_the_first_logged_x_at_or_above_the_threshold():
    xs, ys = [0, 10, 20, 30], [0.1, 0.4, 0.5, 0.45]
    assert first_crossing(xs, ys, 0.4) == 10.0  # equal counts
    assert first_crossing(xs, ys, 0.45) == 20.0  # no interpolation between 10 and 20
    assert first_crossing(xs, ys, 0.0) == 0.0
    assert first_crossing(xs, ys, 0.6) is None
    assert first_crossing([], [], 0.5) is None
    assert first_crossing([1, 2, 3], [float("nan"), None, 0.9], 0.5) == 3.0
    assert isinstance(first_crossing(xs, ys, 0.4), float)
    with pytest.raises(ValueError, match="as many xs as ys"):
        first_crossing([1, 2], [0.1], 0.5)


def test_kendall_tau_of_known_rankings():
    tau, p_value = kendall_tau([1, 2, 3, 4, 5], [10, 20, 30, 40, 50])
    assert tau == pytest.approx(1.0) and 0.0 <= p_value < 0.05
    tau, _ = kendall_tau([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert tau == pytest.approx(-1.0)
    tau, _ = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])  # one discordant pair of six: (5 - 1) / 6
    assert tau == pytest.approx(4 / 6)


def test_kendall_tau_drops_nan_pairs_and_needs_two_of_them():
    assert kendall_tau([1, 2, float("nan"), 3], [1, 2, 99, 3])[0] == pytest.approx(1.0)
    assert kendall_tau([1, float("nan")], [1, 2]) is None
    assert kendall_tau([], []) is None
    with pytest.raises(ValueError, match="as many x as y"):
        kendall_tau([1, 2, 3], [1, 2])


def test_format_ci():
    assert format_ci(mean_ci([0.9, 0.91, 0.926])) == f"0.912 ± {mean_ci([0.9, 0.91, 0.926])['half_width']:.3f}"
    assert format_ci({"mean": 0.9123, "half_width": 0.0131, "n": 3}) == "0.912 ± 0.013"
    assert format_ci(mean_ci([0.9123])) == "0.912 (1 seed)"
    assert format_ci(mean_ci([0.9123]), digits=1) == "0.9 (1 seed)"
    assert format_ci(mean_ci([])) == "—"
    assert format_ci(None) == "—"
