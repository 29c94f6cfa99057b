"""The losses' own cost: forward + backward seconds and peak memory of every loss on CPU, and how each multiview
loss's time grows with the number of views.

    python -m experiments.bench_losses [--batches 256 1024] [--dims 1024 2048 8192] [--views 2 4 8] [--queue 16384]
                                       [--prototypes 3000] [--methods FroSSL SwAV …]

Random embeddings (N, D) per view with requires_grad, each loss called as training calls it (single process,
float32), then ``backward()``; the median of at least 3 repetitions (more while under a second). The peak memory is
that of the first forward + backward (``harness.PeakMemory``, with glibc's mmap threshold fixed).

What each loss is given, and so what its cost counts:
- FroSSL and MMCR take every V; FroSSL uses the smaller of its D×D and N×N Gram matrices (same Frobenius norm), so it
  grows with min(N, D)² · max(N, D) per view; MMCR's SVD of the N×D centroid matrix is skipped above
  ``--skip-mmcr-above``. VICReg's covariances and Barlow Twins' cross-correlation (2 views) are D×D, grown with D² · N.
- SimCLR (every V) contrasts N·V anchors with N·V keys; MoCo v2+ (2 views) each query with a queue of ``--queue`` keys
  per view (the targets' keys are inputs without gradient, as the EMA network's are); BYOL (every V, each view its
  own target) and SimSiam (2 views) are V·(V − 1) cosine similarities: the cost of a loss, not of the extra target
  or predictor network these methods run.
- SwAV (every V, the first two large) and DINO (every V, the first two the teacher's) include their last layer: the
  D → K prototypes (``--prototypes`` K; the Sinkhorn codes of the two large views; DINO's teacher logits are inputs
  without gradient, as its EMA teacher's are).
- W-MSE (every V, all pairs) whitens each view's batch as one sub-batch (w_size = N, one iteration) by Cholesky:
  D ≥ N leaves the covariance singular, so the runs here add the shrinkage ``eps = 1e-3`` to its diagonal, which the
  source's w_size (128 or 256) and D (64) never need; that still makes its cost the D³ of a Cholesky factorisation.
- CorInfoMax (2 views) pays a D×D log-determinant per view against its running covariance (given, detached), in
  float64 as its sources (and the method) compute it.
- W-MSE and CorInfoMax are skipped above ``--skip-cubic-above`` (2048): their D³ factorisations take about a minute
  per call at D = 8192 on 2 cores.

``--smoke``: N = 32, D = 64, V = 2, a queue of 128, 16 prototypes.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from experiments import harness
from frossl_lit.losses import (
    barlow_twins_loss,
    byol_loss,
    corinfomax_loss,
    dino_loss,
    frossl_loss,
    mmcr_loss,
    mocov2_loss,
    simclr_loss,
    simsiam_loss,
    swav_loss,
    vicreg_loss,
    wmse_loss,
)

SIZES = {"queue": 16384, "prototypes": 3000}  # MoCo's keys per view (--queue); SwAV's and DINO's K (--prototypes)


@dataclass(frozen=True)
class Loss:
    """``build(n, dim)`` → ``loss(views) -> (total, parts)`` (what it needs besides the views built once, outside the
    clock); ``views``: the one view count it takes, or None for every V."""

    build: Callable[[int, int], Callable]
    views: int | None = None


def _plain(loss):
    return lambda n, dim: loss


def _mocov2(n: int, dim: int):
    generator = torch.Generator().manual_seed(1)
    keys = [torch.randn(n, dim, generator=generator) for _ in range(2)]
    queues = torch.nn.functional.normalize(torch.randn(2, SIZES["queue"], dim, generator=generator), dim=-1)
    return lambda views: mocov2_loss(views, keys, queues)


def _unit_prototypes(dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(SIZES["prototypes"], dim, generator=generator), dim=-1)


def _swav(n: int, dim: int):
    """SwAV with K unit prototypes (a parameter: their gradient is part of the cost), codes of the first 2 views."""
    prototypes = _unit_prototypes(dim, torch.Generator().manual_seed(1)).requires_grad_(True)
    return lambda views: swav_loss(views, prototypes, assign_views=2)


def _dino(n: int, dim: int):
    """DINO's last layer (unit prototypes: ``norm_last_layer``) on the normalised bottleneck, then the loss against
    the teacher's scores of the first 2 views (inputs without gradient) and a centre."""
    generator = torch.Generator().manual_seed(1)
    prototypes = _unit_prototypes(dim, generator).requires_grad_(True)
    teacher = [torch.randn(n, SIZES["prototypes"], generator=generator) for _ in range(2)]
    centre = torch.zeros(1, SIZES["prototypes"])

    def loss(views):
        student = [torch.nn.functional.normalize(z, dim=-1) @ prototypes.T for z in views]
        return dino_loss(student, teacher[: len(views)], centre)
    return loss


def _wmse(n: int, dim: int):
    """One whitening sub-batch of the whole batch (w_size = N, one iteration), shrinkage 1e-3 (D ≥ N is singular)."""
    permutations = torch.randperm(n, generator=torch.Generator().manual_seed(1))[None]
    return lambda views: wmse_loss(views, permutations, n, eps=1e-3)


def _corinfomax(n: int, dim: int):
    """The running covariances and means as a training step reads them (float64, as the method keeps them)."""
    covariances = torch.eye(dim, dtype=torch.float64).expand(2, dim, dim).clone()
    means = torch.zeros(2, dim, dtype=torch.float64)
    return lambda views: corinfomax_loss(views, covariances, means)[:2]


LOSSES: dict[str, Loss] = {
    "FroSSL": Loss(_plain(frossl_loss)), "VICReg": Loss(_plain(vicreg_loss), 2),
    "Barlow Twins": Loss(_plain(barlow_twins_loss), 2), "MMCR": Loss(_plain(mmcr_loss)),
    "SimCLR": Loss(_plain(simclr_loss)), "MoCo v2+": Loss(_mocov2, 2),
    "BYOL": Loss(_plain(lambda views: byol_loss(views, [v.detach() for v in views]))),
    "SimSiam": Loss(_plain(lambda views: simsiam_loss(views, [v.detach() for v in views])), 2),
    "SwAV": Loss(_swav), "DINO": Loss(_dino), "W-MSE": Loss(_wmse), "CorInfoMax": Loss(_corinfomax, 2),
}
# the multiview losses the paper's efficiency argument is about: how far below these FroSSL stays at the most views
HEAVY = ("W-MSE", "CorInfoMax", "MMCR")
CUBIC = ("W-MSE", "CorInfoMax")  # D³ factorisations of D×D matrices: --skip-cubic-above


# -- measuring -----------------------------------------------------------------------------------------------------
def _once(loss, inputs) -> float:
    embeddings = [x.clone().requires_grad_(True) for x in inputs]
    started = time.perf_counter()
    total, _ = loss(embeddings)
    total.backward()
    return time.perf_counter() - started


def measure(loss, n: int, dim: int, views: int) -> tuple[float, float | None]:
    """(median seconds, peak MiB of the first call above the memory before it: None where /proc cannot tell)."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(n, dim, generator=generator) for _ in range(views)]
    with harness.PeakMemory() as peak:
        times = [_once(loss, inputs)]
    while len(times) < 3 or (sum(times) < 1.0 and len(times) < 20):
        times.append(_once(loss, inputs))
    return statistics.median(times), peak.mib


def fitted_exponent(times: dict[int, float]) -> float | None:
    """k of time ∝ V^k, least squares on log time against log V (None with fewer than two view counts)."""
    if len(times) < 2:
        return None
    xs, ys = [math.log(v) for v in times], [math.log(t) for t in times.values()]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


# -- the tables ----------------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)])


def _cell(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "—" if value is None else f"{value * scale:,.{digits}f}"


def tables(results: dict, names: list[str], batches, dims, views) -> str:
    """The time and memory tables (a row per N, D, V), the fitted V exponents and the ratios at the most views."""
    keys = [(n, d, v) for n in batches for d in dims for v in views]
    time_rows = [[str(n), str(d), str(v)] + [_cell(results.get((name, n, d, v), (None,))[0], 1000) for name in names] for n, d, v in keys]
    memory_rows = [[str(n), str(d), str(v)] + [_cell(results.get((name, n, d, v), (None, None))[1]) for name in names] for n, d, v in keys]
    multiview = [name for name in names if LOSSES[name].views is None]
    pairs = [(n, d) for n in batches for d in dims]
    exponent_rows, all_k = [], {}
    for name in multiview:
        ks = [fitted_exponent({v: results[(name, n, d, v)][0] for v in views if (name, n, d, v) in results}) for n, d in pairs]
        measured = [k for k in ks if k is not None]
        all_k[name] = statistics.median(measured) if measured else None
        exponent_rows.append([name] + [_cell(k, digits=2) for k in ks] + [_cell(all_k[name], digits=2)])
    fewest, most = min(views), max(views)
    ratio_rows = []
    for n, d in pairs:
        for v in sorted({fewest, most}):
            frossl = results.get(("FroSSL", n, d, v), (None,))[0]
            cells = []
            for name in HEAVY:
                other = results.get((name, n, d, v), (None,))[0] if name in names else None
                cells.append("—" if other is None or not frossl else f"{other / frossl:.1f}×")
            if any(cell != "—" for cell in cells):
                ratio_rows.append([str(n), str(d), str(v)] + cells)
    parts = [
        "Forward + backward of the loss alone, float32, median milliseconds:",
        _table(["N", "D", "V", *(f"{name} (ms)" for name in names)], time_rows),
        "Peak memory of one forward + backward above the memory before it (MiB; inputs excluded):",
        _table(["N", "D", "V", *(f"{name} (MiB)" for name in names)], memory_rows),
        f"Fitted exponent k of time ∝ V^k over V ∈ {{{', '.join(map(str, views))}}}, per (N, D), and their median:",
        _table(["loss", *(f"N={n} D={d}" for n, d in pairs), "median"], exponent_rows),
        f"Time relative to FroSSL's at V = {fewest} and V = {most} (the losses that pay for a whitening, a log-determinant "
        f"or singular values; a 2-view loss has no V = {most} figure):",
        _table(["N", "D", "V", *(f"{name} / FroSSL" for name in HEAVY)], ratio_rows),
    ]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/loss_cost.md")
    cli.add_argument("--batches", type=int, nargs="*", default=[256, 1024])
    cli.add_argument("--dims", type=int, nargs="*", default=[1024, 2048, 8192])
    cli.add_argument("--views", type=int, nargs="*", default=[2, 4, 8])
    cli.add_argument("--skip-mmcr-above", type=int, default=2048, help="MMCR's SVD of N×D: skip larger D (slow on CPU)")
    cli.add_argument("--skip-cubic-above", type=int, default=2048,
                     help="W-MSE's Cholesky and CorInfoMax's log-determinant of D×D: skip larger D (at D = 8192 about a "
                          "minute per call on 2 cores: measure it alone, e.g. --dims 8192 --views 2 --methods FroSSL W-MSE CorInfoMax)")
    cli.add_argument("--queue", type=int, default=SIZES["queue"], help="MoCo v2+'s queue: keys per view")
    cli.add_argument("--prototypes", type=int, default=SIZES["prototypes"], help="SwAV's and DINO's prototypes K")
    cli.add_argument("--methods", nargs="*", default=list(LOSSES), choices=list(LOSSES), metavar="NAME",
                     help=f"the losses to measure (default all: {', '.join(LOSSES)})")
    args = harness.parse(cli, argv, smoke={"batches": [32], "dims": [64], "views": [2], "queue": 128, "prototypes": 16})
    SIZES.update(queue=args.queue, prototypes=args.prototypes)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    harness.fix_mmap_threshold()

    names = [name for name in LOSSES if name in args.methods]
    results: dict[tuple, tuple[float, float | None]] = {}
    started = time.monotonic()
    for n in args.batches:
        for dim in args.dims:
            for views in args.views:
                for name in names:
                    if ((LOSSES[name].views not in (None, views)) or (name == "MMCR" and dim > args.skip_mmcr_above)
                            or (name in CUBIC and dim > args.skip_cubic_above)):
                        continue
                    results[(name, n, dim, views)] = measure(LOSSES[name].build(n, dim), n, dim, views)
                    seconds, peak = results[(name, n, dim, views)]
                    print(f"{name:>12} N={n} D={dim} V={views}: {seconds * 1000:,.1f} ms, {_cell(peak, digits=0)} MiB", flush=True)
    details = (f"The losses above in one run ({(time.monotonic() - started) / 60:.1f} min); MoCo v2+'s queue {args.queue} keys per "
               f"view, SwAV's and DINO's {args.prototypes} prototypes.")
    body = tables(results, names, args.batches, args.dims, args.views)
    print(body)
    harness.record(args, f"loss cost, torch {torch.__version__}, CPU", body, details)


if __name__ == "__main__":
    main()
