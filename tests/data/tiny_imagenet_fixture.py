"""A tiny Tiny ImageNet in the download's real layout (or the FroSSL repository's rearranged one), for any test.

:func:`write_tiny_imagenet` writes ``<root>/tiny-imagenet-200/`` with ``wnids.txt`` (not sorted, as the download's),
``words.txt``, ``train/<wnid>/images/<wnid>_<i>.JPEG`` with ``train/<wnid>/<wnid>_boxes.txt``, ``val/images/val_<i>.JPEG``
labelled by ``val/val_annotations.txt`` (classes interleaved, as in the download) and ``test/images/test_<i>.JPEG``;
64×64 random JPEGs. :func:`tiny_imagenet_overrides` is the data=tiny_imagenet overrides for CPU tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n02124075", "n01443537", "n04067472", "n01629819"]  # four real Tiny ImageNet ids, in no sorted order
WORDS = {"n02124075": "Egyptian cat", "n01443537": "goldfish, Carassius auratus", "n04067472": "reel",
         "n01629819": "European fire salamander, Salamandra salamandra"}


def _jpeg(path: Path, rng: np.random.Generator, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=85)


def write_tiny_imagenet(
    root: Path, classes: int = 4, train_per_class: int = 6, val_per_class: int = 4, test_images: int = 3,
    size: int = 64, rearranged: bool = False,
) -> Path:
    """Write the copy; returns the ``tiny-imagenet-200`` folder. ``rearranged``: as after the FroSSL repository's
    ``scripts/utils/tiny-imagenet/downloader.sh`` (train images one level up, val split into val/<wnid>/ holding the
    first 25 of each class and test/<wnid>/ the rest, val/images and test/images removed)."""
    folder = Path(root) / "tiny-imagenet-200"
    wnids = WNIDS[:classes] if classes <= len(WNIDS) else [f"n{9000000 + i:08d}" for i in range(classes)]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\t{WORDS.get(w, w)}\n" for w in wnids))
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        boxes = []
        for i in range(train_per_class):
            _jpeg(images / f"{wnid}_{i}.JPEG", rng, size)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    annotations = []
    for index in range(classes * val_per_class):
        wnid = wnids[index % classes]  # classes interleaved: val_0 is class 0, val_1 class 1, …
        _jpeg(folder / "val" / "images" / f"val_{index}.JPEG", rng, size)
        annotations.append(f"val_{index}.JPEG\t{wnid}\t1\t2\t{size - 2}\t{size - 3}\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    for index in range(test_images):
        _jpeg(folder / "test" / "images" / f"test_{index}.JPEG", rng, size)
    if rearranged:
        _rearrange(folder, wnids, annotations)
    return folder


def _rearrange(folder: Path, wnids: list[str], annotations: list[str]) -> None:
    """What rearrange_folders.py and downloader.sh do (in file-name order, where the script takes glob order)."""
    kept: dict[str, int] = {}
    for line in annotations:
        name, wnid = line.split("\t")[:2]
        split = "val" if kept.get(wnid, 0) < 25 else "test"
        kept[wnid] = kept.get(wnid, 0) + 1
        (folder / split / wnid).mkdir(parents=True, exist_ok=True)
        shutil.move(folder / "val" / "images" / name, folder / split / wnid / name)
    shutil.rmtree(folder / "val" / "images")
    shutil.rmtree(folder / "test" / "images")
    for wnid in wnids:
        for image in (folder / "train" / wnid / "images").iterdir():
            shutil.move(image, folder / "train" / wnid / image.name)
        (folder / "train" / wnid / "images").rmdir()
        (folder / "train" / wnid / f"{wnid}_boxes.txt").unlink()


def tiny_imagenet_overrides(data_dir: Path, num_recipes: int = 2, size: int = 32) -> list[str]:
    """Write the copy where data=tiny_imagenet looks (``<data_dir>/tiny-imagenet-200``); return the overrides that
    shrink its views to ``size`` px for CPU tests (the test-suite's ``make_tiny_dataset`` contract)."""
    write_tiny_imagenet(data_dir)
    return [*(f"augment.recipes.{i}.size={size}" for i in range(num_recipes)), f"augment.eval_size={size}"]
