"""Small statistics over a handful of runs: seed intervals, paired differences, crossings, rank agreement.

Pure functions on plain sequences (lists, tuples, numpy arrays); only numpy and scipy, no torch. Every function
drops non-finite entries (NaN, ±inf, ``None``) instead of propagating them, so a job whose ``summary.json`` lacks a
figure simply does not count. Intervals are Student-t intervals over seeds, which assume the per-seed values are
independent draws from a roughly normal distribution; with three to five seeds that is the usual, honest choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["mean_ci", "paired_difference_ci", "first_crossing", "kendall_tau", "format_ci"]


def _as_float_array(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """``values`` as a 1-D float array; ``None`` becomes NaN."""
    return np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float).reshape(-1)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _t_interval(finite: np.ndarray, confidence: float) -> dict:
    n = int(finite.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "half_width": math.nan, "n": 0, "std": math.nan}
    mean = float(finite.mean())
    if n == 1:  # one seed: no interval
        return {"mean": mean, "low": math.nan, "high": math.nan, "half_width": math.nan, "n": 1, "std": math.nan}
    std = float(finite.std(ddof=1))
    half_width = float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "low": mean - half_width, "high": mean + half_width, "half_width": half_width, "n": n, "std": std}


def mean_ci(values: Sequence[float | None] | np.ndarray, confidence: float = 0.95) -> dict:
    """Mean of ``values`` (one per seed) with its two-sided Student-t confidence interval.

    The interval is ``mean ± t_{(1+confidence)/2, n-1} · s / √n`` with ``s`` the sample standard deviation
    (``ddof=1``). Non-finite entries (NaN, ±inf, ``None``) are dropped before anything is computed.

    Returns a dict with keys

    - ``mean``: mean of the finite values (NaN when there are none);
    - ``low``, ``high``: interval bounds;
    - ``half_width``: ``high - mean``;
    - ``n``: the number of finite values actually used (dropped entries are not counted);
    - ``std``: sample standard deviation (``ddof=1``).

    One seed: no interval — with ``n == 1`` the mean is that value and ``low``, ``high``, ``half_width`` and ``std``
    are NaN. With ``n == 0`` everything but ``n`` is NaN.

    >>> round(mean_ci([1.0, 2.0, 3.0])["half_width"], 4)
    2.4841
    """
    _check_confidence(confidence)
    array = _as_float_array(values)
    return _t_interval(array[np.isfinite(array)], confidence)


def paired_difference_ci(
    a: Sequence[float | None] | np.ndarray, b: Sequence[float | None] | np.ndarray, confidence: float = 0.95
) -> dict:
    """Mean of ``a - b`` paired by position (entry ``i`` of both comes from the same seed), with its t interval.

    Pairing removes the between-seed variation that ``a`` and ``b`` share, so the interval is usually much
    narrower than the difference of two independent ``mean_ci`` intervals. A pair is dropped when either side is
    non-finite. ``a`` and ``b`` must have the same length (``ValueError`` otherwise).

    Returns ``mean_ci`` of the differences (keys ``mean``, ``low``, ``high``, ``half_width``, ``n``, ``std``;
    ``n`` counts the pairs used) plus ``fraction_a_greater``: the fraction of those pairs with ``a > b`` strictly
    (NaN when no pair is left).
    """
    _check_confidence(confidence)
    first, second = _as_float_array(a), _as_float_array(b)
    if first.size != second.size:
        raise ValueError(f"paired_difference_ci needs as many values in a as in b, got {first.size} and {second.size}")
    keep = np.isfinite(first) & np.isfinite(second)
    difference = first[keep] - second[keep]
    result = _t_interval(difference, confidence)
    result["fraction_a_greater"] = float(np.mean(difference > 0)) if difference.size else math.nan
    return result


def first_crossing(
    xs: Sequence[float] | np.ndarray, ys: Sequence[float | None] | np.ndarray, threshold: float
) -> float | None:
    """The first ``x`` (in the order given) whose ``y`` is at least ``threshold``; ``None`` if no ``y`` reaches it.

    No interpolation: the answer is always one of the ``xs``, the first logged point at or above the threshold, not
    an estimate of where the curve crossed between two points. NaN or ``None`` values of ``y`` never count as a
    crossing. ``xs`` are taken in the order given (normally ascending steps or epochs) and are not sorted.
    ``xs`` and ``ys`` must have the same length (``ValueError`` otherwise).
    """
    x_array, y_array = _as_float_array(xs), _as_float_array(ys)
    if x_array.size != y_array.size:
        raise ValueError(f"first_crossing needs as many xs as ys, got {x_array.size} and {y_array.size}")
    hits = np.flatnonzero(y_array >= threshold)  # NaN >= threshold is False
    return float(x_array[hits[0]]) if hits.size else None


def kendall_tau(
    x: Sequence[float | None] | np.ndarray, y: Sequence[float | None] | np.ndarray
) -> tuple[float, float] | None:
    """Kendall's rank correlation of ``x`` and ``y`` with its two-sided p-value, via ``scipy.stats.kendalltau``.

    ``tau`` is 1 when both orderings agree, -1 when one is the reverse of the other. Pairs with a non-finite entry
    on either side are dropped; ``None`` when fewer than two valid pairs remain. A constant side gives NaN (scipy's
    answer: no ranking to compare). ``x`` and ``y`` must have the same length (``ValueError`` otherwise).
    """
    x_array, y_array = _as_float_array(x), _as_float_array(y)
    if x_array.size != y_array.size:
        raise ValueError(f"kendall_tau needs as many x as y values, got {x_array.size} and {y_array.size}")
    keep = np.isfinite(x_array) & np.isfinite(y_array)
    if int(keep.sum()) < 2:
        return None
    result = _scipy_stats.kendalltau(x_array[keep], y_array[keep])
    return float(result.statistic), float(result.pvalue)


def format_ci(stats: dict | None, digits: int = 3) -> str:
    """``mean_ci``'s result as text: ``"0.912 ± 0.013"``; ``"0.912 (1 seed)"`` for one value; ``"—"`` for none.

    ``digits`` is the number of decimals of both the mean and the half width.
    """
    if not stats or not stats.get("n") or not math.isfinite(stats.get("mean", math.nan)):
        return "—"
    mean = f"{stats['mean']:.{digits}f}"
    half_width = stats.get("half_width", math.nan)
    if stats["n"] == 1 or not math.isfinite(half_width):
        return f"{mean} (1 seed)" if stats["n"] == 1 else mean
    return f"{mean} ± {half_width:.{digits}f}"
