"""Image folders: ImageNet (``train/`` and ``val/`` class folders), ImageNet-100 and any user folder.

Decoding and the random-resized crop of each view run in DataLoader workers, crop-aware (each view's box drawn
from the header, the JPEG decoded once at the smallest DCT scale that covers every box: :mod:`.decode`), uint8 at
the view's size; flips, colour, blur and solarisation run batched on the device (``ViewAugment.colour_views``).
A folder with class subfolders is labelled (probe and kNN run); a flat folder of images is unlabelled (pretraining
only: no probe, no kNN, no crash).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.data.decode import Crop, decode_views, eval_crop, view_crops
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


class ImageFiles(Dataset):
    """Images from files, decoded crop-aware (:mod:`frossl_lit.data.decode`), one
    :class:`~frossl_lit.data.decode.Crop` per output view: in training (``train``) an item is the tuple of per-view
    crops, each from its own random box (:func:`~frossl_lit.data.decode.view_crops`); in evaluation the single
    crop (:func:`~frossl_lit.data.decode.eval_crop`: the short side resized, the centre cut out)."""

    def __init__(self, paths, labels, crops: list[Crop], train: bool = True, on_bad_image: str = "fail") -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"data.on_bad_image={on_bad_image!r} must be one of {', '.join(BAD_IMAGE_POLICIES)}")
        self.paths, self.on_bad_image = paths, on_bad_image
        self.crops, self.train = list(crops), train
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
        side = median_short_side(self.paths) if fit_small_images else None
        if side is not None:
            self.augment = self.augment.fitted_to(side, self.train_root)
        self.eval_resize = eval_resize  # None: decode.eval_resize of the evaluation size

    @functools.cached_property
    def _splits(self):
        """``((train paths, labels), (val paths, labels) or None)``, split once."""
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

    def _files(self, paths, labels, train: bool = False) -> ImageFiles:
        crops = view_crops(self.augment.view_recipes()) if train else [eval_crop(self.augment.eval_image_size, self.eval_resize)]
        return ImageFiles(paths, labels, crops, train, self.on_bad_image)

    def train_dataset(self) -> Dataset:
        return self._files(*self._splits[0], train=True)

    def val_dataset(self) -> Dataset | None:
        val = self._splits[1]
        return self._files(*val) if val else None

    def bank_dataset(self) -> Dataset | None:
        return self._files(*self._splits[0])

    def make_views(self, images):
        return self.augment.colour_views(images)  # the workers cropped each view already


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet-1k: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``."""

    def __init__(self, *args, train_dir: str = "train", val_dir: str = "val", **kwargs) -> None:
        super().__init__(*args, train_dir=train_dir, val_dir=val_dir, labelled=True, **kwargs)


class ImageNet100DataModule(ImageNetDataModule):
    """The standard 100-class ImageNet subset (CMC, Tian et al. 2019; solo-learn; the FroSSL paper), read from a
    full ImageNet folder; the class list ships in ``frossl_lit/data/imagenet100_classes.txt``."""

    classes = (Path(__file__).with_name("imagenet100_classes.txt")).read_text().split()
