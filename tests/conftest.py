"""Shared fixtures: compose the real configs with Hydra and shrink the trainer for tests."""

from __future__ import annotations

import copy
import functools
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

import frossl_lit
from frossl_lit.config.compose import compose_train_config

CONF_DIR = Path(frossl_lit.__file__).parent / "conf"

if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs one pytest worker per core: one thread each
    torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

# Tiny, fast settings every test run shares (a real small CNN and projector, a handful of steps).
TINY = [
    "backbone.widths=[8,16]",
    "method.projector.hidden_dims=[64]",
    "method.projector.out_dim=32",
    "data.batch_size=64",
    "trainer.enable_progress_bar=false",
    "callbacks.spectrum.every_n_steps=2",
    "callbacks.labelfree=null",  # on by default; the tests that use it drop this (WITH_LABELFREE)
]
WITH_LABELFREE = [o for o in TINY if o != "callbacks.labelfree=null"]


def compose_config(overrides: list[str], output_dir: Path):
    """Compose conf/train.yaml as the CLI would, with hydra's runtime fields set for interpolation (data under
    ``output_dir/data``)."""
    return compose_train_config(overrides, output_dir, data_dir=f"{output_dir}/data")


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300, module: str = "frossl_lit.train") -> subprocess.CompletedProcess:
    """Run ``python -m frossl_lit.train`` (or another ``module``) as a user would, from ``cwd``."""
    full_env = {**os.environ, "WANDB_MODE": "", "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_cifar(root: Path, num_train: int = 200, num_test: int = 100, classes: int = 10, hundred: bool = False):
    """Tiny CIFAR files in the official pickle layout (random pixels, balanced labels)."""
    rng = np.random.default_rng(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def dump(name, n):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: [i % classes for i in range(n)]}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)

    if hundred:
        dump("train", num_train)
        dump("test", num_test)
    else:
        for index in range(1, 6):
            dump(f"data_batch_{index}", num_train // 5)
        dump("test_batch", num_test)
    return folder


def write_stl10(root, train=40, test=30, unlabeled=50):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test), ("unlabeled", unlabeled)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # files are column-major per image
        if split != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
    return folder


def write_jpegs(folder, classes=3, per_class=6, size=40, flat=False):
    rng = np.random.default_rng(1)
    for c in range(classes):
        target = folder if flat else folder / f"class_{c}"
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(target / f"{c}_{i}.jpg", quality=90)
    return folder


IMAGENET100 = (REPO / "src" / "frossl_lit" / "data" / "imagenet100_classes.txt").read_text().split()


# -- one tiny dataset per on-disk format, where its data config looks (under the run's paths.data_dir) ---------
# Each writer returns the overrides that shrink its images for CPU tests (``num_recipes``: the view recipes to shrink).
def _tiny_cifar10(data_dir: Path, num_recipes: int = 2) -> list[str]:
    write_cifar(data_dir / "cifar10", num_train=100, num_test=20)  # a 10% held-out split still covers every class
    return []


def _tiny_cifar100(data_dir: Path, num_recipes: int = 2) -> list[str]:
    write_cifar(data_dir / "cifar100", num_train=40, num_test=20, classes=100, hundred=True)
    return []


def _tiny_stl10(data_dir: Path, num_recipes: int = 2) -> list[str]:
    write_stl10(data_dir / "stl10", train=20, test=10, unlabeled=10)
    return ["augment.recipes.0.size=32", "+augment.eval_size=32"]


def _tiny_imagenet_folders(data_dir: Path, wnids: list[str], num_recipes: int) -> list[str]:
    for split, count in (("train", 2), ("val", 1)):
        for wnid in wnids:
            write_jpegs(data_dir / "imagenet" / split / wnid, classes=1, per_class=count, size=24, flat=True)
    return [*(f"augment.recipes.{i}.size=32" for i in range(num_recipes)), "augment.eval_size=32"]


def _tiny_imagenet(data_dir: Path, num_recipes: int = 2) -> list[str]:
    return _tiny_imagenet_folders(data_dir, ["n01440764", "n01443537"], num_recipes)


def _tiny_imagenet100(data_dir: Path, num_recipes: int = 2) -> list[str]:  # read from a full ImageNet folder
    return _tiny_imagenet_folders(data_dir, IMAGENET100, num_recipes)


def _tiny_folder(data_dir: Path, num_recipes: int = 2) -> list[str]:
    write_jpegs(data_dir / "folder", classes=2, per_class=6, size=24)
    return [f"data.root={data_dir / 'folder'}", "augment.recipes.0.size=32", "+augment.eval_size=32"]


TINY_DATASETS = {
    "digits": lambda data_dir, num_recipes=2: [],  # ships with scikit-learn
    "cifar10": _tiny_cifar10,
    "cifar100": _tiny_cifar100,
    "stl10": _tiny_stl10,
    "imagenet": _tiny_imagenet,
    "imagenet100": _tiny_imagenet100,
    "folder": _tiny_folder,
    "tiny_imagenet": lambda data_dir, num_recipes=2: _tiny_imagenet_200(data_dir, num_recipes),
}


def _tiny_imagenet_200(data_dir: Path, num_recipes: int) -> list[str]:
    from tests.data.tiny_imagenet_fixture import tiny_imagenet_overrides  # beside its own tests

    return tiny_imagenet_overrides(data_dir, num_recipes)


def make_tiny_dataset(name: str, data_dir: Path, num_recipes: int = 2) -> list[str]:
    """Write a tiny copy of data config ``name`` in its real on-disk format; return the overrides it needs."""
    return TINY_DATASETS[name](data_dir, num_recipes)


@pytest.fixture(params=sorted(TINY_DATASETS))
def tiny_dataset(request, tmp_path) -> tuple[str, list[str]]:
    """Each data config in turn: ``(name, overrides)`` with its tiny files written under ``tmp_path/data``."""
    return request.param, [f"data={request.param}", *make_tiny_dataset(request.param, tmp_path / "data")]


def compose_raw(overrides: list[str], config_name: str = "train", return_hydra_config: bool = False):
    """Compose ``config_name`` from the package's conf/ as-is (no runtime fields set). Compositions are shared by
    the whole session (the preset tests compose each preset in several modules); each caller gets its own copy."""
    return copy.deepcopy(_compose_once(tuple(overrides), config_name, return_hydra_config))


@functools.cache
def _compose_once(overrides: tuple[str, ...], config_name: str, return_hydra_config: bool):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def free_port() -> int:
    """A TCP port nobody listens on (for a DDP rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- a real Lightning fit in-process, a few steps on digits, for unit tests of callbacks and methods -------------
def tiny_method(method_cls=None, **kwargs):
    """A FroSSL module (or ``method_cls``) on a 2-layer small CNN and a 32-16 projector, AdamW 1e-3."""
    from frossl_lit.methods import FroSSL
    from frossl_lit.models import Projector, SmallCNN

    return (method_cls or FroSSL)(
        backbone=kwargs.pop("backbone", None) or SmallCNN([8, 16]),
        projector=functools.partial(Projector, hidden_dims=[32], out_dim=16),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        **kwargs,
    )


def tiny_digits(batch_size: int = 64, num_views: int = 2):
    """The real digits DataModule at 16 px with the digits recipe."""
    from frossl_lit.data import ViewAugment, ViewRecipe
    from frossl_lit.data.digits import DigitsDataModule

    recipe = ViewRecipe(size=16, scale=(0.4, 1.0), hflip_prob=0.0, saturation=0.0, hue=0.0, grayscale_prob=0.0)
    augment = ViewAugment([recipe], [0.2] * 3, [0.35] * 3, num_views=num_views)
    return DigitsDataModule(augment, batch_size=batch_size, eval_batch_size=512, image_size=16)


class LossRecorder:
    """A callback (built lazily to keep Lightning out of import time) recording every step's loss."""

    def __new__(cls):
        import lightning as L

        class Recorder(L.Callback):
            def __init__(self) -> None:
                self.losses: list[float] = []

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                self.losses.append(float(outputs["loss"]))

        return Recorder()


def tiny_fit(tmp_path: Path, callbacks: list, module=None, datamodule=None, max_steps: int = 6, **trainer_kwargs):
    """Fit ``module`` (default :func:`tiny_method`) on :func:`tiny_digits` for ``max_steps`` steps with
    ``callbacks`` and a CSV logger in ``tmp_path``; one validation at the end. Returns ``(trainer, module)``."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    module = module or tiny_method()
    settings = dict(
        default_root_dir=str(tmp_path), max_steps=max_steps, max_epochs=1, limit_train_batches=max_steps,
        callbacks=callbacks, logger=CSVLogger(str(tmp_path), name="csv", version=""), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False, num_sanity_val_steps=0,
        log_every_n_steps=1, accelerator="cpu", devices=1,
    )
    trainer = L.Trainer(**{**settings, **trainer_kwargs})
    trainer.fit(module, datamodule=datamodule or tiny_digits())
    return trainer, module


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
