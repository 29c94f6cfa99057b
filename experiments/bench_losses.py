"""The losses' own cost: forward + backward seconds of every loss on CPU.

    python -m experiments.bench_losses [--batches 256 1024] [--dims 1024 2048 8192] [--views 2 4 8] [--queue 16384]

Random embeddings (N, D) per view with requires_grad, each loss called as training calls it (single process,
float32), then ``backward()``; the median of at least 3 repetitions (more while under a second). VICReg and Barlow
Twins take 2 views; FroSSL and MMCR every V. FroSSL uses the smaller of its D×D and N×N Gram matrices (same
Frobenius norm), so it grows with min(N, D)² · max(N, D); VICReg's covariances and Barlow Twins' cross-correlation
are D×D, grown with D² · N. The paper's efficiency claim in numbers: the FroSSL / VICReg ratio at D = 8192.
SimCLR (every V) contrasts N·V anchors with N·V keys; MoCo v2+ (2 views) each query with a queue of ``--queue``
keys per view (the targets' keys are inputs without gradient, as the EMA network's are); BYOL (every V, each view
its own target) and SimSiam (2 views) are V·(V − 1) cosine similarities: the cost of a loss, not of the extra
target or predictor network these methods run. ``--smoke``: N = 32, D = 64, V = 2, a queue of 128.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from experiments import harness
from frossl_lit.losses import (
    barlow_twins_loss,
    byol_loss,
    frossl_loss,
    mmcr_loss,
    mocov2_loss,
    simclr_loss,
    simsiam_loss,
    vicreg_loss,
)

QUEUE = {"size": 16384}  # MoCo's keys per view (--queue)


def _mocov2(n: int, dim: int):
    """MoCo's loss with this size's keys and queues built once, outside the clock."""
    generator = torch.Generator().manual_seed(1)
    keys = [torch.randn(n, dim, generator=generator) for _ in range(2)]
    queues = torch.nn.functional.normalize(torch.randn(2, QUEUE["size"], dim, generator=generator), dim=-1)
    return lambda views: mocov2_loss(views, keys, queues)


def _plain(loss):
    return lambda n, dim: loss


# name: (loss for embeddings of N × D, the one view count it takes or None)
LOSSES = {
    "FroSSL": (_plain(frossl_loss), None), "VICReg": (_plain(vicreg_loss), 2),
    "Barlow Twins": (_plain(barlow_twins_loss), 2), "MMCR": (_plain(mmcr_loss), None),
    "SimCLR": (_plain(simclr_loss), None), "MoCo v2+": (_mocov2, 2),
    "BYOL": (_plain(lambda views: byol_loss(views, [v.detach() for v in views])), None),
    "SimSiam": (_plain(lambda views: simsiam_loss(views, [v.detach() for v in views])), 2),
}


def seconds(loss, n: int, dim: int, views: int) -> float:
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(n, dim, generator=generator) for _ in range(views)]
    times: list[float] = []
    while len(times) < 3 or (sum(times) < 1.0 and len(times) < 20):
        embeddings = [x.clone().requires_grad_(True) for x in inputs]
        started = time.perf_counter()
        total, _ = loss(embeddings)
        total.backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/loss_cost.md")
    cli.add_argument("--batches", type=int, nargs="*", default=[256, 1024])
    cli.add_argument("--dims", type=int, nargs="*", default=[1024, 2048, 8192])
    cli.add_argument("--views", type=int, nargs="*", default=[2, 4, 8])
    cli.add_argument("--skip-mmcr-above", type=int, default=2048, help="MMCR's SVD of N×D: skip larger D (slow on CPU)")
    cli.add_argument("--queue", type=int, default=16384, help="MoCo v2+'s queue: keys per view")
    args = harness.parse(cli, argv, smoke={"batches": [32], "dims": [64], "views": [2], "queue": 128})
    QUEUE["size"] = args.queue
    torch.set_num_threads(len(os.sched_getaffinity(0)))

    lines = ["| N | D | V | " + " | ".join(f"{name} (ms)" for name in LOSSES) + " | VICReg / FroSSL |", "|---|---|---|" + "---|" * (len(LOSSES) + 1)]
    for n in args.batches:
        for dim in args.dims:
            for views in args.views:
                cells, measured = [], {}
                for name, (loss, only) in LOSSES.items():
                    if (only is not None and views != only) or (name == "MMCR" and dim > args.skip_mmcr_above):
                        cells.append("—")
                        continue
                    measured[name] = seconds(loss(n, dim), n, dim, views)
                    cells.append(f"{measured[name] * 1000:,.1f}")
                ratio = f"{measured['VICReg'] / measured['FroSSL']:.1f}×" if "VICReg" in measured else "—"
                lines.append(f"| {n} | {dim} | {views} | " + " | ".join(cells) + f" | {ratio} |")
                print(lines[-1], flush=True)
    table = "Forward + backward of the loss alone, float32, median milliseconds:\n\n" + "\n".join(lines)
    harness.record(args, f"loss cost, torch {torch.__version__}, CPU", table)


if __name__ == "__main__":
    main()
