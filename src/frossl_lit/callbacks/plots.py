"""PNG figures in the run directory for users without W&B: learning curves and the spectrum over training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np

from frossl_lit.runtime.fileio import atomic_write_with
from frossl_lit.runtime.loggers import read_metrics

CURVES = ("train/loss", "val/probe_top1", "val/knn_top1", "train/effective_rank")


def plot_run(run_dir: Path) -> list[Path]:
    """Write ``curves.png`` (from ``csv/metrics.csv``) and ``spectrum.png`` (from ``spectrum.npz``) when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = read_metrics(run_dir)
    if rows:
        present = [name for name in CURVES if any(name in row for row in rows)]
        if present:
            figure, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
            for axis, name in zip(axes[0], present):
                points = [(row["step"], row[name]) for row in rows if name in row]
                axis.plot(*zip(*points), marker="." if len(points) < 50 else None)
                axis.set_title(name)
                axis.set_xlabel("step")
            figure.tight_layout()
            atomic_write_with(run_dir / "curves.png", lambda buffer: figure.savefig(buffer, format="png", dpi=100))
            plt.close(figure)
            written.append(run_dir / "curves.png")
    spectrum = run_dir / "spectrum.npz"
    if spectrum.is_file():
        data = np.load(spectrum)
        steps, eigenvalues = data["steps"], data["eigenvalues"]
        figure, axis = plt.subplots(figsize=(5, 3.5))
        colours = plt.cm.viridis(np.linspace(0, 1, len(steps)))
        for step, values, colour in zip(steps, eigenvalues, colours):
            normalised = values / max(values.sum(), 1e-12)
            axis.semilogy(np.arange(1, len(values) + 1), np.clip(normalised, 1e-12, None), color=colour, label=f"step {step}")
        axis.set_xlabel("eigenvalue index")
        axis.set_ylabel("normalised eigenvalue")
        axis.set_title("embedding covariance spectrum")
        if len(steps) <= 8:
            axis.legend(fontsize=7)
        figure.tight_layout()
        atomic_write_with(run_dir / "spectrum.png", lambda buffer: figure.savefig(buffer, format="png", dpi=100))
        plt.close(figure)
        written.append(run_dir / "spectrum.png")
    return written


class RunPlots(L.Callback):
    """Writes the PNG figures of :func:`plot_run` when training ends (rank 0)."""

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and trainer.default_root_dir:
            for logger in trainer.loggers:
                logger.save()
            plot_run(Path(trainer.default_root_dir))
