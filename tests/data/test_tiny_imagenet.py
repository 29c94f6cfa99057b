"""Tiny ImageNet from its real download layout (and the FroSSL repository's rearranged one): classes and splits,
a short training run with the probe and kNN on the labelled val images, the LitData conversion streamed back, and
one line naming what is wrong with a malformed copy, whose advice, followed, makes it load."""

from __future__ import annotations

import shutil

import pytest
import torch

from frossl_lit.data import ViewAugment, ViewRecipe, datamodule
from frossl_lit.data.tiny_imagenet import FROSSL_VAL_PER_CLASS, TinyImageNetDataModule
from frossl_lit.runtime.errors import DataNotFoundError, UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, compose_raw
from tests.data.tiny_imagenet_fixture import WNIDS, tiny_imagenet_overrides, write_tiny_imagenet

VAL_PER_CLASS = FROSSL_VAL_PER_CLASS + 2  # 25 for FroSSL's val, 2 for its test


def _augment(size: int = 32) -> ViewAugment:
    return ViewAugment([ViewRecipe(size=size)], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], eval_size=size)


def _module(root, **kwargs) -> TinyImageNetDataModule:
    return TinyImageNetDataModule(_augment(), root=str(root), batch_size=4, eval_resize=32, **kwargs)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The download's layout and the same copy rearranged by FroSSL's script (27 val images a class)."""
    base = tmp_path_factory.mktemp("tiny")
    return {
        layout: write_tiny_imagenet(base / layout, val_per_class=VAL_PER_CLASS, rearranged=layout == "frossl")
        for layout in ("download", "frossl")
    }


@pytest.mark.parametrize("layout", ["download", "frossl"])
def test_classes_in_wnid_order_and_the_three_val_splits(copies, layout):
    folder = copies[layout]
    sizes = {"all": VAL_PER_CLASS, "frossl_first25": FROSSL_VAL_PER_CLASS, "frossl_last25": 2}
    chosen = {}
    for split, per_class in sizes.items():
        module = _module(folder, val_split=split)
        assert module.layout == layout and module.class_names == sorted(WNIDS) and module.num_classes == 4
        assert len(module.train_paths) == 24 and module.train_labels.bincount().tolist() == [6] * 4
        assert module.val_labels.bincount().tolist() == [per_class] * 4
        chosen[split] = {p.name for p in module.val_paths}
        module.setup()
        views, label = module.train_set[0]
        assert [v.shape for v in views] == [(3, 32, 32)] * 2 and views[0].dtype == torch.uint8 and int(label) == 0
        image, _ = module.val_set[0]
        assert image.shape == (3, 32, 32)
    assert chosen["frossl_first25"] | chosen["frossl_last25"] == chosen["all"]
    assert not chosen["frossl_first25"] & chosen["frossl_last25"]
    # "first 25": by file-name number (val_0, val_1, …, val_99 before val_100), 4 classes interleaved
    first = _module(folder, val_split="frossl_first25")
    wnid = sorted(WNIDS)[0]
    numbers = sorted(int(p.stem.split("_")[1]) for p, y in zip(first.val_paths, first.val_labels.tolist()) if y == 0)
    assert numbers == [i for i in range(4 * VAL_PER_CLASS) if WNIDS[i % 4] == wnid][:FROSSL_VAL_PER_CLASS]


def test_the_parent_of_tiny_imagenet_200_is_accepted_and_eval_sees_the_whole_image(copies):
    module = _module(copies["download"].parent)
    assert module.root == copies["download"]
    # eval_resize = the evaluation size: the whole 64 px image resized (solo-learn's Resize((64, 64))), no centre cut
    module.setup()
    assert module.val_set.crops[0].fraction == 1.0


def test_trains_two_steps_and_the_probe_and_knn_read_the_labelled_val(tmp_path):
    overrides = ["data=tiny_imagenet", *tiny_imagenet_overrides(tmp_path / "run" / "data"), *TINY, "data.batch_size=8",
                 "data.eval_batch_size=16", "data.num_workers=0", "trainer.max_steps=2", "trainer.max_epochs=1"]
    cfg = compose_config([*overrides, "data.val_split=frossl_first25"], tmp_path / "run")
    summary = train(cfg)
    assert summary["global_step"] == 2 and summary["data"] == "tiny_imagenet"
    assert 0.0 <= summary["knn_top1"] <= 1.0 and 0.0 <= summary["probe_top1"] <= 1.0


def test_prepare_writes_a_stream_that_trains_and_evaluates_as_the_files(tmp_path):
    from frossl_lit.prepare import prepare

    shrink = tiny_imagenet_overrides(tmp_path / "data")
    source = ["data=tiny_imagenet", f"data.root={tmp_path / 'data' / 'tiny-imagenet-200'}", *shrink,
              "data.batch_size=8", "data.eval_batch_size=16", "data.num_workers=0"]
    out = tmp_path / "stream"
    meta = prepare(compose_raw([*source, f"out={out}", "progress=false"], "prepare"))
    assert meta["images"] == "encoded" and meta["splits"] == {"train": 24, "val": 16, "bank": 24}
    assert meta["class_names"] == sorted(WNIDS) and meta["num_classes"] == 4
    native = datamodule(compose_config(source, tmp_path / "a").data)
    streamed = datamodule(compose_config([*source, "data.format=litdata", f"data.stream={out}"], tmp_path / "b").data)
    for ours, theirs in zip(streamed.val_dataloader(), native.val_dataloader(), strict=True):
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])  # the same whole-image eval crop
    cfg = compose_config([*source, *TINY, "data.batch_size=8", "data.format=litdata", f"data.stream={out}",
                          "trainer.max_steps=1"], tmp_path / "run")
    summary = train(cfg)
    assert summary["global_step"] == 1 and 0.0 <= summary["knn_top1"] <= 1.0


# -- a malformed copy: (what is done to it, the message, how the advice is followed) ------------------------------
def _rewrite(folder):
    """Re-extract: the copy written afresh over what is there."""
    write_tiny_imagenet(folder.parent, val_per_class=4)


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


BROKEN = {
    "missing wnids.txt": (lambda f: (f / "wnids.txt").unlink(), r"wnids\.txt is missing: data\.root must be the unzipped", _rewrite),
    "a wnid twice": (lambda f: _edit(f / "wnids.txt", WNIDS[1], WNIDS[0]), r"lists n02124075 more than once", _rewrite),
    "an empty wnids.txt": (lambda f: (f / "wnids.txt").write_text("\n"), r"wnids\.txt lists no class", _rewrite),
    "no train/": (lambda f: shutil.rmtree(f / "train"), r"train is missing", _rewrite),
    "a class folder gone": (lambda f: shutil.rmtree(f / "train" / WNIDS[2]), r"lacks the folders of 1 of the 4 classes .*first: n04067472", _rewrite),
    "a class folder without images": (
        lambda f: [p.unlink() for p in (f / "train" / WNIDS[3] / "images").iterdir()],
        r"n01629819 holds no images \(expected .*images/\*\.JPEG\)", _rewrite),
    "val_annotations names an unknown wnid": (
        lambda f: _edit(f / "val" / "val_annotations.txt", f"val_2.JPEG\t{WNIDS[2]}", "val_2.JPEG\tn99999999"),
        r"val_annotations\.txt:3 labels val_2\.JPEG with n99999999, which wnids\.txt does not list", _rewrite),
    "a malformed annotation line": (
        lambda f: _edit(f / "val" / "val_annotations.txt", f"val_1.JPEG\t{WNIDS[1]}\t1\t2\t62\t61", f"val_1.JPEG {WNIDS[1]} 1 2 62 61"),
        r"val_annotations\.txt:2 is not '<file> TAB <wnid> TAB <box>'", _rewrite),
    "no val_annotations.txt": (lambda f: (f / "val" / "val_annotations.txt").unlink(), r"val_annotations\.txt is missing", _rewrite),
    "an annotated image gone": (lambda f: (f / "val" / "images" / "val_5.JPEG").unlink(), r"lacks 1 of the images .*first: val_5\.JPEG", _rewrite),
    "an image nobody labels": (
        lambda f: shutil.copy(f / "val" / "images" / "val_0.JPEG", f / "val" / "images" / "extra.JPEG"),
        r"holds 1 images val_annotations\.txt does not label \(first: extra\.JPEG\): remove them",
        lambda f: (f / "val" / "images" / "extra.JPEG").unlink()),
    "no val images": (lambda f: shutil.rmtree(f / "val"), r"holds no validation images", _rewrite),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_malformed_copy_is_one_line_and_its_advice_fixes_it(case, tmp_path):
    folder = write_tiny_imagenet(tmp_path, val_per_class=4)
    damage, message, follow = BROKEN[case]
    damage(folder)
    with pytest.raises(DataNotFoundError, match=message) as error:
        _module(folder)
    assert "\n" not in str(error.value) and ("re-extract" in str(error.value) or "remove" in str(error.value))
    follow(folder)
    assert _module(folder).num_classes == 4


def test_a_wrong_root_or_split_names_the_key_to_set(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"Tiny ImageNet not found: .*nowhere does not exist; download .* set data\.root=") as error:
        _module(tmp_path / "nowhere")
    assert "\n" not in str(error.value)
    folder = write_tiny_imagenet(tmp_path, val_per_class=4)
    with pytest.raises(UserError, match=r"data\.val_split='first25' must be one of all, frossl_first25, frossl_last25"):
        _module(folder, val_split="first25")
    assert _module(folder, val_split="frossl_first25").val_labels.bincount().tolist() == [4] * 4  # fewer than 25: all
    with pytest.raises(DataNotFoundError, match=r"data\.val_split=frossl_last25 selects no image .*use data\.val_split=all"):
        _module(folder, val_split="frossl_last25")
