"""Digits and CIFAR through the real loading code, every data config into uint8 batches and views, a few training
steps on each file format, and clear messages for bad input."""

from __future__ import annotations

import pickle

import pytest
import torch
from hydra.utils import instantiate

from frossl_lit.data import ViewAugment, ViewRecipe
from frossl_lit.data.cifar import CIFAR100DataModule, CIFARDataModule
from frossl_lit.data.digits import DigitsDataModule
from frossl_lit.runtime.errors import DataNotFoundError, UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, write_cifar, write_jpegs, write_stl10


def _augment():
    return ViewAugment([ViewRecipe(size=32)], [0.5] * 3, [0.25] * 3)


def test_digits_split_is_stratified_and_uint8():
    datamodule = DigitsDataModule(_augment(), batch_size=64, image_size=16)
    datamodule.setup()
    images = datamodule.train_set.images
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
    assert len(datamodule.train_set) + len(datamodule.val_set) == 1797
    assert torch.bincount(datamodule.val_set.labels).min() >= 30


def test_cifar10_and_100_load_from_pickle_layout(tmp_path):
    write_cifar(tmp_path / "c10")
    datamodule = CIFARDataModule(_augment(), root=str(tmp_path / "c10"), batch_size=16)
    datamodule.setup()
    assert datamodule.train_set.images.shape == (200, 3, 32, 32) and len(datamodule.val_set) == 100
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8
    write_cifar(tmp_path / "c100", classes=100, hundred=True)
    hundred = CIFAR100DataModule(_augment(), root=str(tmp_path / "c100" / "cifar-100-python"), batch_size=16)
    hundred.setup()
    assert hundred.num_classes == 100 and int(hundred.train_set.labels.max()) == 99


def test_cifar_holdout_replaces_missing_test_batch(tmp_path):
    folder = write_cifar(tmp_path, num_train=500)
    (folder / "test_batch").unlink()
    with pytest.raises(DataNotFoundError, match="holdout_fraction"):
        CIFARDataModule(_augment(), root=str(tmp_path)).setup()
    datamodule = CIFARDataModule(_augment(), root=str(tmp_path), holdout_fraction=0.1)
    datamodule.setup()
    assert len(datamodule.val_set) == 50 and len(datamodule.train_set) == 450


def test_cifar_train_fraction_is_a_stratified_subset_and_leaves_validation_alone(tmp_path):
    write_cifar(tmp_path, num_train=500)
    full = CIFARDataModule(_augment(), root=str(tmp_path), holdout_fraction=0.1)
    part = CIFARDataModule(_augment(), root=str(tmp_path), holdout_fraction=0.1, train_fraction=0.2)
    full.setup()
    part.setup()
    assert len(part.train_set) == 90 and torch.equal(part.val_set.images, full.val_set.images)
    assert torch.bincount(part.train_set.labels, minlength=10).tolist() == [9] * 10
    full_rows = {tuple(row) for row in full.train_set.images.flatten(1)[:, :16].tolist()}
    assert all(tuple(row) in full_rows for row in part.train_set.images.flatten(1)[:, :16].tolist())
    with pytest.raises(ValueError, match=r"data.train_fraction=0 must lie in \(0, 1\]"):
        CIFARDataModule(_augment(), root=str(tmp_path), train_fraction=0)


def test_missing_cifar_message_names_place_and_fixes(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        CIFARDataModule(_augment(), root=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data.download=true" in message and "data.root=" in message


def test_corrupt_and_misshapen_cifar_batches_are_named(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(DataNotFoundError, match="data_batch_3.*truncated or corrupt"):
        CIFARDataModule(_augment(), root=str(tmp_path)).setup()
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({"data": torch.zeros(4, 100).numpy(), "labels": [0] * 4}, handle)
    with pytest.raises(DataNotFoundError, match=r"data_batch_3.*\(N, 3072\)"):
        CIFARDataModule(_augment(), root=str(tmp_path)).setup()


def test_every_data_config_reads_its_real_format_into_uint8_batches_and_views(tiny_dataset, tmp_path):
    name, overrides = tiny_dataset
    cfg = compose_config([*overrides, "data.batch_size=2", "data.num_workers=0"], tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    images, labels = next(iter(datamodule.train_dataloader()))
    views = datamodule.make_views(images)
    assert len(views) == cfg.augment.num_views and all(v.dtype == torch.float32 and v.shape[0] == 2 for v in views)
    assert len(labels) == 2 and (datamodule.num_classes == 0 or datamodule.has_labels), name


def test_a_holdout_smaller_than_the_classes_says_how_much_is_needed(tmp_path):
    write_cifar(tmp_path, num_train=40)  # 5 files of 8 images: labels 0-7
    with pytest.raises(UserError, match=r"holds out 4 of the 40 training images, fewer than the 8 classes.*at least 0\.2$"):
        CIFARDataModule(_augment(), root=str(tmp_path), holdout_fraction=0.1).setup()


@pytest.mark.parametrize("dataset", ["stl10", "folder_labelled", "folder_unlabelled"])
def test_a_few_training_steps_on_each_format(dataset, tmp_path):
    small = ["augment.recipes.0.size=32", "+augment.eval_size=32", "data.num_workers=0", "data.batch_size=8", "data.eval_batch_size=16"]
    if dataset == "stl10":
        write_stl10(tmp_path / "run" / "data" / "stl10")
        overrides = ["data=stl10", *small]
    elif dataset == "folder_labelled":
        write_jpegs(tmp_path / "jpegs", classes=3, per_class=8)
        overrides = ["data=folder", f"data.root={tmp_path / 'jpegs'}", "data.val_fraction=0.25", "callbacks.knn.k=10", *small]  # 18 in the bank
    else:
        write_jpegs(tmp_path / "jpegs", classes=2, per_class=8, flat=True)
        overrides = ["data=folder", f"data.root={tmp_path / 'jpegs'}", *small]
    cfg = compose_config([*TINY, *overrides, "trainer.max_steps=3", "trainer.max_epochs=5"], tmp_path / "run")
    summary = train(cfg)
    assert summary["global_step"] == 3
    if dataset == "folder_unlabelled":
        assert summary["probe_top1"] is None and summary["knn_top1"] is None
    else:
        assert summary["knn_top1_init"] is not None and summary["knn_top1"] is not None
