#!/usr/bin/env python
"""The losses' own cost: forward + backward seconds of FroSSL, VICReg, Barlow Twins and MMCR on CPU.

    python experiments/bench_losses.py [--batches 256 1024] [--dims 1024 2048 8192] [--views 2 4 8]

Random embeddings (N, D) per view with requires_grad, each loss called as training calls it (single process,
float32), then ``backward()``; the median of at least 3 repetitions (more while under a second). VICReg and Barlow
Twins take 2 views; FroSSL and MMCR every V. FroSSL uses the smaller of its D×D and N×N Gram matrices (same
Frobenius norm), so it grows with min(N, D)² · max(N, D); VICReg's covariances and Barlow Twins' cross-correlation
are D×D, grown with D² · N. The paper's efficiency claim in numbers: the FroSSL / VICReg ratio at D = 8192.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from _results import REPO, append_report

sys.path.insert(0, str(REPO / "src"))
from frossl_lit.losses import barlow_twins_loss, frossl_loss, vicreg_loss  # noqa: E402
from frossl_lit.losses.mmcr import mmcr_loss  # noqa: E402

LOSSES = {"FroSSL": (frossl_loss, None), "VICReg": (vicreg_loss, 2), "Barlow Twins": (barlow_twins_loss, 2), "MMCR": (mmcr_loss, None)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--dims", type=int, nargs="*", default=[1024, 2048, 8192])
    parser.add_argument("--views", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--skip-mmcr-above", type=int, default=2048, help="MMCR's SVD of N×D: skip larger D (slow on CPU)")
    parser.add_argument("--out", default="experiments/results/loss_cost.md")
    args = parser.parse_args()
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
                    measured[name] = seconds(loss, n, dim, views)
                    cells.append(f"{measured[name] * 1000:,.1f}")
                ratio = f"{measured['VICReg'] / measured['FroSSL']:.1f}×" if "VICReg" in measured else "—"
                lines.append(f"| {n} | {dim} | {views} | " + " | ".join(cells) + f" | {ratio} |")
                print(lines[-1], flush=True)
    table = "Forward + backward of the loss alone, float32, median milliseconds:\n\n" + "\n".join(lines)
    append_report(args.out, f"loss cost, torch {torch.__version__}, CPU", table)


if __name__ == "__main__":
    main()
