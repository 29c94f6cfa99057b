"""Representation diagnostics: eigenvalue spectrum of the embedding covariance and its effective rank."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from frossl_lit.methods.step import StepOutput
from frossl_lit.runtime.fileio import atomic_write_with


def effective_rank(eigenvalues: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Roy & Vetterli (2007): exp of the Shannon entropy of the normalised non-negative eigenvalues."""
    p = eigenvalues.clamp_min(0)
    p = p / p.sum().clamp_min(eps)
    return torch.exp(-(p * torch.log(p.clamp_min(eps))).sum())


class SpectrumDiagnostics(L.Callback):
    """Every ``every_n_steps`` training steps: eigenvalues of the covariance of the first view's embeddings
    (gathered over ranks), logged as ``train/effective_rank`` and ``train/top_eigenvalue_fraction``; the spectra
    over training are written to ``<run dir>/spectrum.npz`` (steps, eigenvalues in decreasing order).

    The eigen-decomposition synchronises with the device, which is why it runs every N steps only. With more
    dimensions than samples (N < D: DINO's 65536 prototype scores, a wide projector on a small batch) the
    covariance has at most N − 1 non-zero eigenvalues, those of the N×N Gram matrix of the centred embeddings: they
    are decomposed instead (a 65536² covariance would take 17 GB), and the spectrum holds min(N, D) values.
    """

    def __init__(self, every_n_steps: int = 50, filename: str = "spectrum.npz") -> None:
        self.every_n_steps, self.filename = every_n_steps, filename
        self.steps: list[int] = []
        self.spectra: list[np.ndarray] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = StepOutput.of(outputs)
        if not self.every_n_steps or step is None or trainer.global_step % self.every_n_steps:
            return
        z = step.embeddings.float()
        if trainer.world_size > 1:
            z = pl_module.all_gather(z).flatten(0, 1)
        if z.shape[0] < 2:
            return
        z = z - z.mean(dim=0, keepdim=True)
        try:  # a diverging step's embeddings are not finite: the divergence guard reports that, not this
            second_moment = z.T @ z if z.shape[1] <= z.shape[0] else z @ z.T  # the same non-zero eigenvalues
            eigenvalues = torch.linalg.eigvalsh(second_moment / (z.shape[0] - 1)).flip(0).clamp_min(0)
        except torch.linalg.LinAlgError:
            return
        pl_module.log("train/effective_rank", effective_rank(eigenvalues))
        pl_module.log("train/top_eigenvalue_fraction", eigenvalues[0] / eigenvalues.sum().clamp_min(1e-12))
        self.steps.append(trainer.global_step)
        self.spectra.append(eigenvalues.cpu().numpy())

        self._log_to_wandb(trainer, eigenvalues)

    @staticmethod
    def _log_to_wandb(trainer, eigenvalues: torch.Tensor) -> None:
        """The spectrum as a W&B line plot (log scale in the UI), beside the scalar effective rank."""
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                import wandb

                values = (eigenvalues / eigenvalues.sum().clamp_min(1e-12)).cpu().tolist()
                table = wandb.Table(data=[[i + 1, v] for i, v in enumerate(values)], columns=["index", "eigenvalue"])
                plot = wandb.plot.line(table, "index", "eigenvalue", title=f"spectrum at step {trainer.global_step}")
                logger.experiment.log({"train/spectrum": plot, "trainer/global_step": trainer.global_step})

    @property
    def state_key(self) -> str:
        return "SpectrumDiagnostics"

    def state_dict(self) -> dict:
        """The spectra so far, so that a resumed run's spectrum.npz covers the whole run."""
        return {"steps": list(self.steps), "spectra": [torch.from_numpy(s) for s in self.spectra]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state.get("steps", []))
        self.spectra = [s.numpy() for s in state.get("spectra", [])]

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.spectra and trainer.default_root_dir:
            atomic_write_with(Path(trainer.default_root_dir) / self.filename,
                              lambda buffer: np.savez(buffer, steps=np.array(self.steps), eigenvalues=np.stack(self.spectra)))
