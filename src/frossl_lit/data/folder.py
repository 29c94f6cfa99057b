"""Image folders: ImageNet (``train/`` and ``val/`` class folders), ImageNet-100 and any user folder.

Decoding and the random-resized crop of each view run in DataLoader workers, crop-aware (each view's box drawn
from the header, the JPEG decoded once at the smallest DCT scale that covers every box: :mod:`.decode`), uint8 at
the view's size; flips, colour, blur and solarisation run batched on the device (``ViewAugment.colour_views``).
A folder with class subfolders is labelled (probe and kNN run); a flat folder of images is unlabelled (pretraining
only: no probe, no kNN, no crash).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.data.decode import Crop, decode_views
from frossl_lit.data.decode import eval_resize as default_eval_resize
from frossl_lit.runtime.errors import DataNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".gif")
BAD_IMAGE_POLICIES = ("fail", "skip")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def scan_folder(root: Path, labelled: bool | None = None, classes: list[str] | None = None):
    """``(paths, labels or None, class names)`` of an image folder.

    Labelled when ``root`` has subfolders holding images (one class per subfolder, sorted by name, or the
    order of ``classes``); unlabelled when the images lie in ``root`` itself. ``labelled=None`` decides alone.
    """
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist; point data.root (or data.train_dir) at it")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir())
    if classes is not None:
        present = {p.name for p in subfolders}
        missing = [c for c in classes if c not in present]
        if missing:
            raise DataNotFoundError(
                f"{root} lacks {len(missing)} of the {len(classes)} class folders this dataset needs "
                f"(first: {', '.join(missing[:5])}). Is data.root the ImageNet folder holding train/ and val/?"
            )
        subfolders = [root / c for c in classes]
    if labelled is None:
        labelled = classes is not None or any(_images_in(p) for p in subfolders)
    if labelled:
        paths, labels = [], []
        for index, folder in enumerate(subfolders):
            found = _images_in(folder)
            paths += found
            labels += [index] * len(found)
        names = [p.name for p in subfolders]
    else:
        paths, labels, names = _images_in(root), None, []
    if not paths:
        raise DataNotFoundError(
            f"no images found under {root} (looked for {', '.join(IMAGE_EXTENSIONS)}). A labelled folder holds one "
            f"subfolder of images per class; an unlabelled one holds the images directly."
        )
    return paths, (torch.tensor(labels) if labels is not None else None), names


def median_short_side(paths, probes: int = 32) -> int | None:
    """The median short side of up to ``probes`` images spread over ``paths`` (headers only); None if none reads."""
    from PIL import Image

    sides = []
    for path in paths[:: max(1, len(paths) // probes)][:probes]:
        try:
            with Image.open(path) as image:  # reads the header only
                sides.append(min(image.size))
        except Exception:  # noqa: BLE001 - unreadable files are reported when they are loaded
            continue
    return sorted(sides)[len(sides) // 2] if sides else None


def fit_recipe_to_images(augment, side: int, where) -> None:
    """Images smaller than the recipe (e.g. CIFAR's 32 px under the 224 px ImageNet recipe) would be upsampled
    7× and cost 49× the compute for nothing: scale every view (and the evaluation size) down to the images'
    typical short side ``side``, and say so once."""
    largest = max([r.size for r in augment.view_recipes()] + [augment.eval_size or 0])
    if side >= largest:
        return
    scale = side / largest
    for recipe in {id(r): r for r in augment.view_recipes()}.values():
        recipe.size = max(8, int(round(recipe.size * scale)))
    if augment.eval_size:
        augment.eval_size = max(8, int(round(augment.eval_size * scale)))
    warnings.warn(
        f"the images in {where} are about {side} px, smaller than the recipe's {largest} px: training at "
        f"{side} px instead of upsampling them (views {sorted({r.size for r in augment.view_recipes()})}). "
        f"To keep the recipe's sizes set data.fit_small_images=false.",
        stacklevel=3,
    )


class ImageFiles(Dataset):
    """Images from files, decoded crop-aware (:mod:`frossl_lit.data.decode`). Training (``crops``: one
    :class:`~frossl_lit.data.decode.Crop` per view): a tuple of per-view crops, each from its own random box.
    Evaluation: the short side resized to ``resize`` and the centre ``size`` cut out."""

    def __init__(self, paths, labels, crops=None, size: int = 224, resize: int = 256, on_bad_image: str = "fail") -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"data.on_bad_image={on_bad_image!r} must be one of {', '.join(BAD_IMAGE_POLICIES)}")
        self.paths, self.on_bad_image = paths, on_bad_image
        self.crops = list(crops) if crops is not None else [Crop(size, random=False, fraction=size / resize)]
        self.train = crops is not None
        self.labels = labels if labels is not None else torch.full((len(paths),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> tuple[list[torch.Tensor], int]:
        """The views of the image at ``index`` and the index read: with ``on_bad_image=skip`` an unreadable file
        is replaced by the next readable one, whose own label goes with it."""
        for attempt in range(len(self.paths)):
            read = (index + attempt) % len(self.paths)
            path = self.paths[read]
            try:
                return decode_views(Path(path).read_bytes(), self.crops), read
            except Exception as error:  # noqa: BLE001 - any decoder failure means the same to the user
                if self.on_bad_image == "fail":
                    raise DataNotFoundError(
                        f"cannot read image {path} ({type(error).__name__}: {error}). Remove or replace the file, "
                        f"or set data.on_bad_image=skip to skip unreadable images with a warning."
                    ) from None
                warnings.warn(f"skipping unreadable image {path}: {type(error).__name__}", stacklevel=2)
        raise DataNotFoundError("no image in the dataset could be read")

    def __getitem__(self, index) -> tuple:
        views, index = self.load(int(index))
        return (tuple(views) if self.train else views[0]), self.labels[index]


class ImageFolderDataModule(SSLDataModule):
    """Any image folder, labelled by subfolders or unlabelled.

    ``root/train_dir`` holds the training images; validation comes from ``root/val_dir`` when it exists, else
    from a stratified ``val_fraction`` of a labelled training folder (unlabelled folders have no validation).
    """

    classes: list[str] | None = None

    def __init__(
        self,
        *args,
        root: str,
        train_dir: str = "",
        val_dir: str | None = None,
        val_fraction: float = 0.1,
        labelled: bool | None = None,
        eval_resize: int | None = None,
        on_bad_image: str = "fail",
        split_seed: int = 0,
        fit_small_images: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"data.on_bad_image={on_bad_image!r} must be one of {', '.join(BAD_IMAGE_POLICIES)}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must lie in [0, 1)")
        self.root = Path(root).expanduser()
        self.train_root = self.root / train_dir if train_dir else self.root
        self.val_root = self.root / val_dir if val_dir else None
        self.val_fraction, self.on_bad_image, self.split_seed = val_fraction, on_bad_image, split_seed
        self.paths, self.labels, self.class_names = scan_folder(self.train_root, labelled, self.classes)
        self.num_classes = len(self.class_names)
        if fit_small_images:
            self._fit_recipe_to_small_images()
        self.eval_size = self.augment.eval_size or self.augment.recipes[0].size
        self.eval_resize = eval_resize or default_eval_resize(self.eval_size)

    def _fit_recipe_to_small_images(self) -> None:
        side = median_short_side(self.paths)
        if side is not None:
            fit_recipe_to_images(self.augment, side, self.train_root)

    def _split(self):
        if self.labels is None:
            return (self.paths, None), None
        if self.val_root is not None and self.val_root.is_dir():
            val_paths, val_labels, _ = scan_folder(self.val_root, True, self.class_names)
            return (self.paths, self.labels), (val_paths, val_labels)
        if self.val_fraction == 0:
            return (self.paths, self.labels), None
        from sklearn.model_selection import train_test_split

        train_idx, val_idx = train_test_split(
            list(range(len(self.paths))), test_size=self.val_fraction, stratify=self.labels.numpy(), random_state=self.split_seed
        )
        pick = lambda idx: ([self.paths[i] for i in idx], self.labels[torch.tensor(idx)])
        return pick(train_idx), pick(val_idx)

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            (train_paths, train_labels), val = self._split()
            crops = [Crop(r.size, tuple(r.scale), tuple(r.ratio), r.random_resized_crop) for r in self.augment.view_recipes()]
            self._train = ImageFiles(train_paths, train_labels, crops, on_bad_image=self.on_bad_image)
            self._bank = ImageFiles(train_paths, train_labels, None, self.eval_size, self.eval_resize, self.on_bad_image) if val else None
            self._val = ImageFiles(*val, None, self.eval_size, self.eval_resize, self.on_bad_image) if val else None
            if self._val is None:
                self.num_classes = 0  # nothing to evaluate against: no probe, no kNN
        super().setup(stage)

    def train_dataset(self) -> Dataset:
        return self._train

    def make_views(self, images):
        return self.augment.colour_views(images)  # the workers cropped each view already

    def val_dataset(self) -> Dataset | None:
        return self._val

    def bank_dataset(self) -> Dataset | None:
        return self._bank


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet-1k: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``."""

    def __init__(self, *args, train_dir: str = "train", val_dir: str = "val", **kwargs) -> None:
        super().__init__(*args, train_dir=train_dir, val_dir=val_dir, labelled=True, **kwargs)


class ImageNet100DataModule(ImageNetDataModule):
    """The standard 100-class ImageNet subset (CMC, Tian et al. 2019; solo-learn; the FroSSL paper), read from a
    full ImageNet folder; the class list ships in ``frossl_lit/data/imagenet100_classes.txt``."""

    classes = (Path(__file__).with_name("imagenet100_classes.txt")).read_text().split()
