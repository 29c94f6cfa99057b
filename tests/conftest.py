"""Shared fixtures: compose the real configs with Hydra and shrink the trainer for tests."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

import frossl_lit

CONF_DIR = Path(frossl_lit.__file__).parent / "conf"
REPO = Path(__file__).resolve().parents[1]

# Tiny, fast settings every test run shares (a real small CNN and projector, a handful of steps).
TINY = [
    "backbone.widths=[8,16]",
    "method.projector.hidden_dims=[64]",
    "method.projector.out_dim=32",
    "data.batch_size=64",
    "trainer.enable_progress_bar=false",
    "callbacks.spectrum.every_n_steps=2",
]


def compose_config(overrides: list[str], output_dir: Path):
    """Compose conf/train.yaml as the CLI would, with hydra's runtime fields set for interpolation."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[*overrides, f"paths.output_dir={output_dir}", f"paths.data_dir={output_dir}/data"],
            return_hydra_config=True,
        )
    cfg.hydra.runtime.output_dir = str(output_dir)
    cfg.hydra.runtime.cwd = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):  # the CLI's job config carries no `hydra` node either
        del cfg["hydra"]
    return cfg


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m frossl_lit.train`` as a user would, from ``cwd``."""
    full_env = {**os.environ, "WANDB_MODE": "", "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "frossl_lit.train", *args],
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


def make_tiny_dataset(name: str, data_dir: Path, num_recipes: int = 2) -> list[str]:
    """Write a tiny copy of ``name`` in its real on-disk format where its data config looks (under ``data_dir``,
    the run's ``paths.data_dir``); return the overrides that shrink its images (``num_recipes`` view recipes)
    for CPU tests."""
    if name == "cifar10":
        write_cifar(data_dir / "cifar10", num_train=40, num_test=20)
    elif name == "cifar100":
        write_cifar(data_dir / "cifar100", num_train=40, num_test=20, classes=100, hundred=True)
    elif name == "stl10":
        write_stl10(data_dir / "stl10", train=20, test=10, unlabeled=10)
        return ["augment.recipes.0.size=32", "+augment.eval_size=32"]
    elif name in ("imagenet", "imagenet100"):  # ImageNet-100 reads a full ImageNet folder
        wnids = IMAGENET100 if name == "imagenet100" else ["n01440764", "n01443537"]
        for split, count in (("train", 2), ("val", 1)):
            for wnid in wnids:
                write_jpegs(data_dir / "imagenet" / split / wnid, classes=1, per_class=count, size=24, flat=True)
        return [*(f"augment.recipes.{i}.size=32" for i in range(num_recipes)), "augment.eval_size=32"]
    elif name == "folder":
        write_jpegs(data_dir / "folder", classes=2, per_class=6, size=24)
        return [f"data.root={data_dir / 'folder'}", "augment.recipes.0.size=32", "+augment.eval_size=32"]
    return []


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
