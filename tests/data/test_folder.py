"""JPEG class folders (ImageNet, ImageNet-100, any folder) and unlabelled folders through the real loading code;
every bad input gets a message naming the file and the fix."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.data import ViewAugment, ViewRecipe
from frossl_lit.data.folder import ImageFolderDataModule, ImageNet100DataModule, ImageNetDataModule
from frossl_lit.runtime.errors import DataNotFoundError
from tests.conftest import run_cli, write_jpegs


def _augment(size=32):
    return ViewAugment([ViewRecipe(size=size)], [0.5] * 3, [0.25] * 3, eval_size=size)


def test_labelled_folder_held_out_split_and_worker_crops(tmp_path):
    write_jpegs(tmp_path / "images", classes=3, per_class=10)
    augment = _augment(24)
    module = ImageFolderDataModule(augment, root=str(tmp_path / "images"), val_fraction=0.2, batch_size=8)
    module.setup()
    assert module.num_classes == 3 and len(module.val_set) == 6 and len(module.train_set) == 24
    views, label = module.train_set[0]
    assert len(views) == 2 and views[0].shape == (3, 24, 24) and views[0].dtype == torch.uint8
    image, _ = module.val_set[0]
    assert image.shape == (3, 24, 24)
    out = module.make_views([torch.stack([v] * 4) for v in views])
    assert len(out) == 2 and out[0].dtype == torch.float32


def test_unlabelled_folder_has_no_evaluation(tmp_path):
    write_jpegs(tmp_path / "flat", classes=2, per_class=5, flat=True)
    module = ImageFolderDataModule(_augment(), root=str(tmp_path / "flat"), batch_size=4)
    module.setup()
    assert module.num_classes == 0 and module.val_dataloader() == [] and module.bank_dataloader() is None


def test_imagenet_and_imagenet100_layouts(tmp_path):
    write_jpegs(tmp_path / "in" / "train", classes=2, per_class=3)
    write_jpegs(tmp_path / "in" / "val", classes=2, per_class=2)
    module = ImageNetDataModule(_augment(), root=str(tmp_path / "in"), batch_size=2)
    module.setup()
    assert len(module.train_set) == 6 and len(module.val_set) == 4
    assert len(ImageNet100DataModule.classes) == 100 and ImageNet100DataModule.classes[0].startswith("n")
    with pytest.raises(DataNotFoundError, match="lacks 100 of the 100 class folders"):
        ImageNet100DataModule(_augment(), root=str(tmp_path / "in"))


def test_folder_bad_inputs(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        ImageFolderDataModule(_augment(), root=str(tmp_path / "missing"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="no images found under"):
        ImageFolderDataModule(_augment(), root=str(tmp_path / "empty"))
    folder = write_jpegs(tmp_path / "bad", classes=2, per_class=4)
    broken = folder / "class_0" / "0_0.jpg"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated JPEG
    failing = ImageFolderDataModule(_augment(), root=str(folder), val_fraction=0.0, batch_size=2)
    failing.setup()
    index = failing.train_set.paths.index(broken)
    with pytest.raises(DataNotFoundError, match=r"0_0.jpg.*data.on_bad_image=skip"):
        failing.train_set[index]
    skipping = ImageFolderDataModule(_augment(), root=str(folder), val_fraction=0.0, on_bad_image="skip", batch_size=2)
    skipping.setup()
    with pytest.warns(UserWarning, match="skipping unreadable image .*0_0.jpg"):
        views, _ = skipping.train_set[index]
    assert views[0].shape == (3, 32, 32)
    last_of_class_0 = folder / "class_0" / "0_3.jpg"  # skipped: the next readable image is class 1's, and so is its label
    last_of_class_0.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipping unreadable image .*0_3.jpg"):
        _, label = skipping.train_set[skipping.train_set.paths.index(last_of_class_0)]
    assert int(label) == 1
    with pytest.raises(ValueError, match="on_bad_image"):
        ImageFolderDataModule(_augment(), root=str(folder), on_bad_image="ignore")


@pytest.mark.slow  # 10-12 s; in make test as a row of tests/test_bad_inputs.py (in-process, the same workers)
def test_an_unreadable_image_met_in_a_worker_is_one_line(tmp_path):
    folder = write_jpegs(tmp_path / "images", classes=2, per_class=6, size=24)
    (folder / "class_0" / "0_0.jpg").write_bytes(b"broken")
    result = run_cli(
        ["data=folder", f"data.root={folder}", "data.num_workers=2", "data.val_fraction=0", "augment.recipes.0.size=32",
         "+augment.eval_size=32", "data.batch_size=4", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("frossl_lit: error: cannot read image ") and "0_0.jpg" in lines[-1] and "data.on_bad_image=skip" in lines[-1]


def test_images_smaller_than_the_recipe_train_at_their_own_size_and_it_is_said_once(tmp_path):
    folder = write_jpegs(tmp_path / "small", classes=2, per_class=4, size=24)
    big = lambda: ViewAugment([ViewRecipe(size=224)], [0.5] * 3, [0.25] * 3, eval_size=224)
    shared = big()
    with pytest.warns(UserWarning, match=r"about 24 px, smaller than the recipe's 224 px: training at 24 px"):
        module = ImageFolderDataModule(shared, root=str(folder), val_fraction=0.25, batch_size=2)
    assert shared.recipes[0].size == shared.eval_size == 224 and module.augment.recipes[0].size == 24  # a copy is fitted
    module.setup()
    views, _ = module.train_set[0]
    assert views[0].shape == (3, 24, 24) and module.val_set[0][0].shape == (3, 24, 24)
    kept = ImageFolderDataModule(big(), root=str(folder), val_fraction=0.25, batch_size=2, fit_small_images=False)
    kept.setup()
    assert kept.train_set[0][0][0].shape == (3, 224, 224)
