"""Label-free evaluation during training: RankMe, α-ReQ and LiDAR of the backbone's features on a fixed subset of
the training images (the formulas: :mod:`frossl_lit.evaluation.labelfree`)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from frossl_lit.callbacks.schedule import ScheduledEvaluation
from frossl_lit.data.augment import ViewAugment
from frossl_lit.evaluation import extract_features
from frossl_lit.evaluation.labelfree import alpha_req, lidar, rankme

METRICS = ("rankme", "alpha_req", "lidar")


class LabelFreeEvaluation(ScheduledEvaluation):
    """``val/rankme``, ``val/alpha_req`` and ``val/lidar`` of the backbone's features, in eval mode, no labels used.

    The images: ``num_samples`` training images (the DataModule's un-augmented ``bank_set``), drawn once by a
    permutation seeded with ``seed`` and the same at every evaluation and on every rank. RankMe and α-ReQ take
    their eval-transform features (N, F); LiDAR takes ``num_views`` augmented views of each (N, Q, F), made with
    the run's own view recipes (``augment.recipes``, cycled as training cycles them; multi-crop small views are
    not used) by a private :class:`~frossl_lit.data.augment.views.ViewAugment` reseeded with ``seed`` before every
    evaluation, so the views are the same every time and only the weights change between two figures. The crops
    are taken from the evaluation images (for image folders: the centre crop at ``eval_size``), on the device.

    RNG: nothing global is drawn from (the subset, the views and any loader have their own generators) and the
    global CPU/CUDA RNG states are restored afterwards all the same, so training draws exactly what it would draw
    without this callback; the DataModule's augmenter is not touched.

    When: once before the first training step (``at_start``, logged at step 0; a resumed run does not repeat it),
    at the end of every ``every_n_epochs``-th validation and of the last epoch, and once more when training ends at
    a step it has not evaluated (a ``max_time`` or ``max_steps`` stop mid-epoch), like the kNN callback. Under DDP
    every rank computes the same figures on its own device from the same subset: no collective, so no rank can wait
    on another. The metrics run in float64 on the CPU (N × F features: well under a second for N = 512, F = 2048).

    ``delta`` is LiDAR's within-class ridge δ. Datasets without a ``bank_set`` (unlabelled data: no un-augmented
    training images are exposed) are skipped, and ``summary()`` reports ``None``.
    """

    def __init__(
        self, num_samples: int = 512, num_views: int = 4, every_n_epochs: int = 1, at_start: bool = True, seed: int = 0,
        delta: float = 1e-4,
    ) -> None:
        if num_samples < 2 or num_views < 2 or every_n_epochs < 1 or delta < 0:
            raise ValueError(
                f"labelfree: need num_samples >= 2, num_views >= 2 (LiDAR compares views of each sample), "
                f"every_n_epochs >= 1 and delta >= 0 (got {num_samples}, {num_views}, {every_n_epochs}, {delta})"
            )
        self.num_samples, self.num_views, self.every_n_epochs = num_samples, num_views, every_n_epochs
        self.at_start, self.seed, self.delta = at_start, seed, delta
        self.initial: dict[str, float] | None = None  # the figures before training (at_start)
        self.last: dict[str, float] | None = None  # the latest figures
        self.last_step: int | None = None
        self.samples_used: int | None = None
        self.eval_seconds = 0.0  # every evaluation of the run (checkpointed)
        self._images: torch.Tensor | None = None  # the subset's uint8 images, on the CPU (not checkpointed)
        self._images_key: tuple | None = None

    @property
    def state_key(self) -> str:
        return "LabelFreeEvaluation"

    # -- when: before the first step here, then the schedule of ScheduledEvaluation -----------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.at_start or self.initial is not None or self.last_step is not None:
            return  # a resumed run keeps its figures
        result = self.evaluate(trainer, pl_module)
        if result is not None:
            self.initial = {name: result[f"val/{name}"] for name in METRICS}
            for logger in trainer.loggers:
                logger.log_metrics(result, step=trainer.global_step)

    # -- what -------------------------------------------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float] | None:
        """``{"val/rankme", "val/alpha_req", "val/lidar"}`` of the current weights (``None``: no images to use);
        also kept as ``last`` / ``last_step``."""
        started = time.perf_counter()
        datamodule = trainer.datamodule
        images = self._subset(datamodule) if datamodule is not None else None
        if images is None:
            return None
        device = pl_module.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            features, views = self._features(trainer, pl_module, datamodule.augment, images, datamodule.eval_batch_size)
        features, views = features.cpu(), views.cpu()
        result = {"val/rankme": float(rankme(features)), "val/alpha_req": float(alpha_req(features)),
                  "val/lidar": float(lidar(views, delta=self.delta))}
        self.last = {name: result[f"val/{name}"] for name in METRICS}
        self.last_step = trainer.global_step
        self.eval_seconds += time.perf_counter() - started
        return result

    def _features(self, trainer, pl_module, augment: ViewAugment, images: torch.Tensor, batch_size: int):
        """Eval-transform features (N, F) and ``num_views`` augmented views' features (N, Q, F) of ``images``."""
        batches = [(chunk, torch.zeros(len(chunk), dtype=torch.long)) for chunk in images.split(batch_size)]
        context = lambda: trainer.precision_plugin.forward_context()
        device = pl_module.device
        features, _ = extract_features(pl_module.backbone, batches, augment.eval_transform, device, context())
        private = ViewAugment(
            augment.recipes, augment.mean.flatten().tolist(), augment.std.flatten().tolist(), num_views=self.num_views,
            eval_size=augment.eval_size, seed=self.seed,
        )
        views = []
        for recipe in private.view_recipes():  # the first view of every batch, then the second, …: one fixed order
            transform = lambda x, recipe=recipe: private.view(x, recipe)
            views.append(extract_features(pl_module.backbone, batches, transform, device, context())[0])
        return features, torch.stack(views, dim=1)

    def _subset(self, datamodule) -> torch.Tensor | None:
        """The ``num_samples`` evaluation images (uint8, CPU), read once and kept; ``None`` without any."""
        datamodule.setup()
        dataset = datamodule.bank_set
        if dataset is None or len(dataset) < 2:
            return None
        size = min(self.num_samples, len(dataset))
        key = (id(dataset), len(dataset), size, self.seed)
        if self._images is None or self._images_key != key:
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))
            index = order[:size].sort().values
            if getattr(dataset, "batched_indexing", False):
                images = dataset[index][0]
            else:  # file datasets: decode the subset once, with the loader's seed drawn from a private generator
                loader = DataLoader(
                    Subset(dataset, index.tolist()), batch_size=datamodule.eval_batch_size,
                    num_workers=datamodule.num_workers, generator=torch.Generator().manual_seed(self.seed),
                )
                images = torch.cat([batch[0] for batch in loader])
            self._images, self._images_key, self.samples_used = images.cpu(), key, size
        return self._images

    # -- what the run keeps -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The figures this callback publishes in the run's summary: the latest values (``None`` when never
        measured or undefined, e.g. α-ReQ of a spectrum with fewer than two positive eigenvalues)."""
        last = self.last or {}
        return {name: last[name] if name in last and math.isfinite(last[name]) else None for name in METRICS}

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "last": self.last, "last_step": self.last_step,
                "samples_used": self.samples_used, "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial = state_dict.get("initial")
        self.last = state_dict.get("last")
        self.last_step = state_dict.get("last_step")
        self.samples_used = state_dict.get("samples_used")
        self.eval_seconds = float(state_dict.get("eval_seconds", 0.0))
