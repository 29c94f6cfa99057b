"""Tiny ImageNet (CS231n, Stanford): 200 ImageNet classes at 64×64 px, from the folder the download unzips to.

The download's layout (``tiny-imagenet-200/``)::

    wnids.txt                         the 200 class ids (WordNet ids), one a line
    words.txt                         names of every WordNet id (not needed here)
    train/<wnid>/images/*.JPEG        500 images per class (train/<wnid>/<wnid>_boxes.txt: boxes, unused)
    val/images/*.JPEG                 50 images per class, labelled by
    val/val_annotations.txt           ``<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>`` per image
    test/images/*.JPEG                10,000 unlabelled images (unused: no labels, and no source trains on them)

Classes are numbered in the sorted order of their wnids (as torchvision's ``ImageFolder`` numbers the class folders
of the official FroSSL code's layout). Training reads ``train/``; validation (the online probe and kNN) reads the
labelled ``val/`` images chosen by ``val_split``:

- ``all``: the 50 images per class (10,000);
- ``frossl_first25``: the first 25 of each class, what the official FroSSL code validates on during pretraining;
- ``frossl_last25``: the other 25 of each class, on which its linear evaluation reports.

The FroSSL code (OFSkean/FroSSL@e841c57 ``scripts/utils/tiny-imagenet/rearrange_folders.py``) moves val images into
``val/<wnid>/`` until a class holds 25 and the rest into ``test/<wnid>/``, visiting them in ``glob`` order, which is
the file system's directory order and so differs between machines. Here "first" is the numeric order of the file
names (``val_0.JPEG``, ``val_1.JPEG``, …, ``val_9999.JPEG``: the order ``val_annotations.txt`` lists them), the same
on every machine. A copy already rearranged by that script (``val/<wnid>/`` and ``test/<wnid>/`` class folders,
images directly in ``train/<wnid>/``) is read as it is: its ``val/`` is ``frossl_first25``, its ``test/`` is
``frossl_last25``, both together ``all``.

Images are decoded and cropped in the DataLoader workers (:class:`~frossl_lit.data.folder.ImageFiles`, crop-aware,
:mod:`.decode`); colour augmentations run batched on the device. ``python -m frossl_lit.prepare data=tiny_imagenet``
converts the splits into a LitData stream (the files byte for byte).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from frossl_lit.data.base import SSLDataModule
from frossl_lit.data.decode import eval_crop, view_crops
from frossl_lit.data.folder import BAD_IMAGE_POLICIES, IMAGE_EXTENSIONS, ImageFiles, median_short_side
from frossl_lit.runtime.errors import DataNotFoundError, UserError

VAL_SPLITS = ("all", "frossl_first25", "frossl_last25")
FROSSL_VAL_PER_CLASS = 25  # rearrange_folders.py: the first 25 of each class validate, the rest are its "test"
FOLDER = "tiny-imagenet-200"
DOWNLOAD = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
REFETCH = f"re-extract {DOWNLOAD.rsplit('/', 1)[1]} ({DOWNLOAD})"


def natural_key(name: str) -> list:
    """Sort key that orders the digits in a name by value: ``val_2`` before ``val_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural order of their names."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(found, key=lambda p: natural_key(p.name))


def find_root(root: Path) -> Path:
    """The ``tiny-imagenet-200`` folder: ``root`` itself, or the folder of that name inside it."""
    if (root / "wnids.txt").is_file() or not (root / FOLDER / "wnids.txt").is_file():
        return root
    return root / FOLDER


def read_wnids(root: Path) -> list[str]:
    """The class ids of ``wnids.txt``, checked (present, none twice)."""
    if not root.is_dir():
        raise DataNotFoundError(
            f"Tiny ImageNet not found: {root} does not exist; download {DOWNLOAD}, unzip it and set "
            f"data.root=/path/to/{FOLDER} (the folder holding wnids.txt, train/ and val/)"
        )
    path = root / "wnids.txt"
    if not path.is_file():
        raise DataNotFoundError(
            f"{path} is missing: data.root must be the unzipped {FOLDER} folder (it holds wnids.txt, words.txt, "
            f"train/ and val/); if it is, {REFETCH}"
        )
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if not wnids or repeated:
        problem = "lists no class" if not wnids else f"lists {', '.join(repeated[:5])} more than once"
        raise DataNotFoundError(f"{path} {problem}: it should hold the 200 class ids, one a line; {REFETCH}")
    return wnids


class TinyImageNetDataModule(SSLDataModule):
    """Tiny ImageNet from the download's layout (or the official FroSSL code's rearranged one): see the module."""

    def __init__(
        self,
        *args,
        root: str,
        val_split: str = "all",
        eval_resize: int | None = None,
        on_bad_image: str = "fail",
        fit_small_images: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if val_split not in VAL_SPLITS:
            raise UserError(f"data.val_split={val_split!r} must be one of {', '.join(VAL_SPLITS)}")
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise UserError(f"data.on_bad_image={on_bad_image!r} must be one of {', '.join(BAD_IMAGE_POLICIES)}")
        self.val_split, self.on_bad_image = val_split, on_bad_image
        self.root = find_root(Path(root).expanduser())
        self.class_names = sorted(read_wnids(self.root))
        self.num_classes = len(self.class_names)
        self.train_paths, self.train_labels = self._scan_train()
        self.layout = self._layout()
        self.val_paths, self.val_labels = self._scan_val()
        side = median_short_side(self.train_paths) if fit_small_images else None
        if side is not None:
            self.augment = self.augment.fitted_to(side, self.root / "train")
        self.eval_resize = eval_resize  # None: decode.eval_resize of the evaluation size (ImageNet's 256 → 224)

    # -- scanning -------------------------------------------------------------------------------------------------
    def _scan_train(self) -> tuple[list[Path], torch.Tensor]:
        train = self.root / "train"
        if not train.is_dir():
            raise DataNotFoundError(f"{train} is missing: {self.root} is not a whole Tiny ImageNet copy; {REFETCH}")
        missing = [w for w in self.class_names if not (train / w).is_dir()]
        if missing:
            raise DataNotFoundError(
                f"{train} lacks the folders of {len(missing)} of the {self.num_classes} classes wnids.txt lists "
                f"(first: {', '.join(missing[:3])}): the copy is incomplete or wnids.txt is another copy's; {REFETCH}"
            )
        paths, labels = [], []
        for label, wnid in enumerate(self.class_names):
            folder = train / wnid / "images"  # the download's layout; FroSSL's moves the images up one level
            found = _images(folder) if folder.is_dir() else _images(train / wnid)
            if not found:
                raise DataNotFoundError(
                    f"{train / wnid} holds no images (expected {train / wnid / 'images'}/*.JPEG): the copy is "
                    f"incomplete; {REFETCH}"
                )
            paths += found
            labels += [label] * len(found)
        return paths, torch.tensor(labels)

    def _layout(self) -> str:
        """``download`` (val/images + val_annotations.txt) or ``frossl`` (val/<wnid>/, test/<wnid>/)."""
        val = self.root / "val"
        if _images(val / "images"):
            return "download"
        if any(_images(val / w) for w in self.class_names):
            return "frossl"
        raise DataNotFoundError(
            f"{val} holds no validation images: expected the download's val/images/*.JPEG with "
            f"val/val_annotations.txt (or the class folders val/<wnid>/ of FroSSL's rearrange_folders.py); {REFETCH}"
        )

    def _scan_val(self) -> tuple[list[Path], torch.Tensor]:
        per_class = self._val_by_class_rearranged() if self.layout == "frossl" else self._val_by_class()
        paths, labels = [], []
        for label, wnid in enumerate(self.class_names):
            first, rest = per_class.get(wnid, ([], []))
            chosen = {"all": first + rest, "frossl_first25": first, "frossl_last25": rest}[self.val_split]
            paths += chosen
            labels += [label] * len(chosen)
        if not paths:
            raise DataNotFoundError(f"data.val_split={self.val_split} selects no image of {self.root / 'val'}; use data.val_split=all")
        return paths, torch.tensor(labels)

    def _val_by_class(self) -> dict[str, tuple[list[Path], list[Path]]]:
        """The download's val: each class's images (natural order) split into the first 25 and the rest."""
        images, annotations = self.root / "val" / "images", self.root / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise DataNotFoundError(f"{annotations} is missing: it labels the images of {images}; {REFETCH}")
        known, labelled = set(self.class_names), {}
        for number, line in enumerate(annotations.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) < 2 or not fields[0] or not fields[1]:
                raise DataNotFoundError(
                    f"{annotations}:{number} is not '<file> TAB <wnid> TAB <box>': {line[:60]!r}; {REFETCH}"
                )
            name, wnid = fields[0], fields[1]
            if wnid not in known:
                raise DataNotFoundError(
                    f"{annotations}:{number} labels {name} with {wnid}, which wnids.txt does not list: the "
                    f"annotations and wnids.txt are from different copies; {REFETCH}"
                )
            if labelled.setdefault(name, wnid) != wnid:
                raise DataNotFoundError(f"{annotations}:{number} labels {name} a second time, with another class; {REFETCH}")
        present = {p.name: p for p in _images(images)}
        lacking = sorted(set(labelled) - set(present), key=natural_key)
        if lacking:
            raise DataNotFoundError(
                f"{images} lacks {len(lacking)} of the images val_annotations.txt lists (first: "
                f"{', '.join(lacking[:3])}); {REFETCH}"
            )
        unlabelled = sorted(set(present) - set(labelled), key=natural_key)
        if unlabelled:
            raise DataNotFoundError(
                f"{images} holds {len(unlabelled)} images val_annotations.txt does not label (first: "
                f"{', '.join(unlabelled[:3])}): remove them, or {REFETCH}"
            )
        by_class: dict[str, list[Path]] = {}
        for name in sorted(labelled, key=natural_key):
            by_class.setdefault(labelled[name], []).append(present[name])
        return {w: (found[:FROSSL_VAL_PER_CLASS], found[FROSSL_VAL_PER_CLASS:]) for w, found in by_class.items()}

    def _val_by_class_rearranged(self) -> dict[str, tuple[list[Path], list[Path]]]:
        """A copy rearranged by FroSSL's script: its val/<wnid>/ and test/<wnid>/ as they are."""
        if self.val_split != "frossl_first25" and not any(_images(self.root / "test" / w) for w in self.class_names):
            raise DataNotFoundError(
                f"{self.root} is in FroSSL's rearranged layout (val/<wnid>/) but {self.root / 'test'} holds none of "
                f"the other val images that data.val_split={self.val_split} needs; use data.val_split=frossl_first25"
            )
        return {w: (_images(self.root / "val" / w), _images(self.root / "test" / w)) for w in self.class_names}

    # -- datasets ---------------------------------------------------------------------------------------------------
    @functools.cached_property
    def _eval_crop(self):
        return eval_crop(self.augment.eval_image_size, self.eval_resize)

    def train_dataset(self) -> Dataset:
        crops = view_crops(self.augment.view_recipes())
        return ImageFiles(self.train_paths, self.train_labels, crops, True, self.on_bad_image)

    def val_dataset(self) -> Dataset:
        return ImageFiles(self.val_paths, self.val_labels, [self._eval_crop], False, self.on_bad_image)

    def bank_dataset(self) -> Dataset:
        return ImageFiles(self.train_paths, self.train_labels, [self._eval_crop], False, self.on_bad_image)

    def make_views(self, images):
        return self.augment.colour_views(images)  # the workers cropped each view already
