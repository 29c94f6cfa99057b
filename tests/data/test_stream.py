"""LitData streams: ``python -m frossl_lit.prepare`` converts any data config's splits; ``data.format=litdata``
trains from them with the same images, a disjoint share per DDP rank and an exact mid-epoch resume."""

from __future__ import annotations

import json
import multiprocessing
import traceback

import pytest
import torch
from torch.utils.data import DataLoader

from frossl_lit.data import SSLDataModule, datamodule
from frossl_lit.data.augment import ViewAugment
from frossl_lit.data.memory import TensorImages
from frossl_lit.data.streams.reader import StreamingDataModule
from frossl_lit.data.streams.writer import write_stream
from frossl_lit.runtime.errors import UserError
from tests.conftest import TINY, TINY_DATASETS, compose_config, free_port, make_tiny_dataset, run_cli


def _native_and_stream(name: str, tmp_path):
    overrides = [f"data={name}", *make_tiny_dataset(name, tmp_path / "data"), "data.batch_size=2", "data.num_workers=0"]
    native = datamodule(compose_config(overrides, tmp_path).data)
    meta = write_stream(native, str(tmp_path / "stream"), progress=False)
    stream_cfg = compose_config([*overrides, "data.format=litdata", f"data.stream={tmp_path / 'stream'}"], tmp_path)
    streamed = datamodule(stream_cfg.data)
    streamed.setup("fit")
    return native, streamed, meta


def _augment() -> ViewAugment:
    return ViewAugment(recipes=[{"size": 4}], mean=[0.5] * 3, std=[0.25] * 3)


def _first_batch(loader: DataLoader):
    return next(iter(loader))


@pytest.mark.parametrize("name", sorted(TINY_DATASETS))
def test_a_stream_holds_the_native_splits_and_reads_the_same_evaluation_images(name, tmp_path):
    native, streamed, meta = _native_and_stream(name, tmp_path)
    assert isinstance(streamed, StreamingDataModule)
    assert meta["splits"]["train"] == len(native.train_set) == len(streamed.train_set)
    assert meta["images"] == ("encoded" if hasattr(native.train_set, "paths") else "array")
    assert streamed.num_classes == (native.num_classes if native.has_labels else 0)
    if native.has_labels:
        assert torch.equal(streamed.val_set.labels, native.val_set.labels)
        assert torch.equal(streamed.bank_set.labels, native.bank_set.labels)
        for ours, theirs in zip(streamed.val_dataloader(), native.val_dataloader(), strict=True):
            assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    # a training batch has the shape and dtype the native one has (views cropped in workers for files)
    batch, _ = _first_batch(streamed.train_dataloader())
    reference, _ = _first_batch(native.train_dataloader())
    if isinstance(reference, (list, tuple)):
        assert [v.shape for v in batch] == [v.shape for v in reference] and batch[0].dtype == torch.uint8
    else:
        assert batch.shape == reference.shape and batch.dtype == torch.uint8


@pytest.mark.slow  # 35 s; the conversion of every data config is checked in-process above
def test_prepare_then_train_20_steps_on_cifar10_and_on_an_image_folder(tmp_path):
    from tests.conftest import write_jpegs

    (tmp_path / "data").mkdir()
    make_tiny_dataset("cifar10", tmp_path / "data")
    write_jpegs(tmp_path / "data" / "photos", classes=2, per_class=30, size=40)
    cases = {
        "cifar10": ["data=cifar10", f"data.root={tmp_path / 'data' / 'cifar10'}", "data.holdout_fraction=0.1"],
        "folder": ["data=folder", f"data.root={tmp_path / 'data' / 'photos'}", "augment.recipes.0.size=32", "+augment.eval_size=32"],
    }
    for name, source in cases.items():
        out = tmp_path / f"{name}-stream"
        done = run_cli([*source, f"out={out}", "progress=false"], tmp_path, module="frossl_lit.prepare")
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"wrote {out}" in done.stdout
        meta = json.loads((out / "frossl_meta.json").read_text())
        run = tmp_path / f"{name}-run"
        trained = run_cli(
            [*source, *TINY, "data.batch_size=16", "data.format=litdata", f"data.stream={out}", "trainer.max_steps=20",
             "data.num_workers=2", f"hydra.run.dir={run}"],
            tmp_path,
        )
        assert trained.returncode == 0, trained.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["global_step"] == 20 and 0.0 <= summary["knn_top1"] <= 1.0, summary
        assert meta["splits"]["val"] > 0 and meta["images"] == ("array" if name == "cifar10" else "encoded")


@pytest.mark.slow  # 10-12 s; in make test as a row of tests/test_bad_inputs.py (in-process)
def test_bad_stream_input_is_one_clear_message(tmp_path):
    missing = run_cli(["data.format=litdata", f"data.stream={tmp_path / 'nowhere'}", *TINY], tmp_path)
    assert missing.returncode == 2
    assert "holds no stream" in missing.stderr and "python -m frossl_lit.prepare" in missing.stderr
    from frossl_lit.data.digits import DigitsDataModule

    with pytest.raises(UserError, match="build the DataModule with frossl_lit.data.datamodule"):
        DigitsDataModule(augment=_augment(), format="litdata")


# -- DDP: every rank reads its own share ---------------------------------------------------------------------------
def _index_stream(out, count: int = 200):
    """A stream of ``count`` 3×4×4 images whose first two pixels hold their index."""
    images = torch.zeros(count, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(count) % 256
    images[:, 0, 0, 1] = torch.arange(count) // 256
    labels = torch.arange(count) % 4

    class Source(SSLDataModule):  # an in-memory module over those images
        num_classes = 4

        def train_dataset(self):
            return TensorImages(images, labels)

        def val_dataset(self):
            return TensorImages(images[:8], labels[:8])

    write_stream(Source(augment=_augment()), str(out), progress=False)


def _indices(batch) -> list[int]:
    images = batch[0]
    return (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist()


def _rank_epoch(rank: int, port: int, out: str, queue) -> None:
    try:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        module = StreamingDataModule(augment=_augment(), stream=out, batch_size=16, num_workers=0, seed=3)

        class FakeTrainer:  # what the module asks of the trainer: the rank and the world size
            global_rank, world_size = rank, 2

        module.trainer = FakeTrainer()
        loader = module.train_dataloader()
        seen = [i for batch in loader for i in _indices(batch)]
        queue.put((rank, seen, len(loader)))
        dist.destroy_process_group()
    except Exception:  # report instead of hanging the parent
        queue.put((rank, traceback.format_exc(), 0))


def two_rank_epoch(target, args_of_rank) -> dict[int, tuple[list, int]]:
    """``target(rank, port, *args_of_rank(rank), queue)`` on 2 forked processes (the children inherit the imports:
    no 12 s re-import each): each rank's (images seen in one epoch, batches)."""
    context = multiprocessing.get_context("fork")
    queue, port = context.Queue(), free_port()
    processes = [context.Process(target=target, args=(rank, port, *args_of_rank(rank), queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = dict((rank, (seen, batches)) for rank, seen, batches in (queue.get(timeout=120) for _ in processes))
    for process in processes:
        process.join(timeout=60)
    return results


def assert_disjoint_equal_shuffled_shares(results, images: int = 200, batch: int = 16) -> None:
    for seen, _ in results.values():
        assert isinstance(seen, list), seen
    (first, batches0), (second, batches1) = results[0], results[1]
    assert not set(first) & set(second), "two ranks read the same image in one epoch"
    assert len(first) == len(second) == batch * batches0 and batches0 == batches1 > 0
    assert len(set(first) | set(second)) >= images - 2 * batch  # at most one batch per rank dropped
    assert first != sorted(first)  # shuffled


def test_each_ddp_rank_reads_a_disjoint_equal_share_of_an_epoch(tmp_path):
    _index_stream(tmp_path / "stream", 200)
    assert_disjoint_equal_shuffled_shares(two_rank_epoch(_rank_epoch, lambda rank: (str(tmp_path / "stream"),)))


# -- resume: a run killed mid-epoch continues with the images it had not seen --------------------------------------
def _shut_down(*loaders) -> None:
    """Stop loaders' persistent workers, as Lightning's teardown does after a fit: left to the garbage collector,
    their queues can be finalised before the workers, whose shutdown then waits out its join timeouts (10-30 s)."""
    for loader in loaders:
        if getattr(loader, "_iterator", None) is not None:
            loader._iterator._shutdown_workers()


def test_the_loader_state_resumes_mid_epoch_with_the_unseen_images(tmp_path):
    _index_stream(tmp_path / "stream", 160)
    make = lambda: StreamingDataModule(augment=_augment(), stream=str(tmp_path / "stream"), batch_size=16, num_workers=2, seed=1)
    complete = make().train_dataloader()
    whole = [_indices(batch) for batch in complete]

    loader = make().train_dataloader()
    batches = iter(loader)
    seen = [_indices(next(batches)) for _ in range(4)]
    state = loader.state_dict()
    batches.close()
    resumed = make().train_dataloader()
    resumed.load_state_dict(state)
    rest = [_indices(batch) for batch in resumed]
    _shut_down(complete, loader, resumed)
    assert seen == whole[:4] and rest == whole[4:]


@pytest.mark.slow  # 35 s; the loader's own resume is checked above
def test_a_run_stopped_mid_epoch_on_a_stream_resumes_to_the_same_weights(tmp_path):
    from frossl_lit.train import train
    from tests.runtime.test_resume import RUN, Crash, _assert_same_weights, _weights

    native = datamodule(compose_config(TINY, tmp_path / "convert").data)
    write_stream(native, str(tmp_path / "stream"), progress=False)
    run = [*RUN, "data.format=litdata", f"data.stream={tmp_path / 'stream'}", "callbacks.knn=null", "callbacks.labelfree=null", "callbacks.probe=null",
           "callbacks.checkpoint_best=null"]
    whole = train(compose_config(run, tmp_path / "whole"))
    first = compose_config([*run, "+callbacks.crash._target_=tests.runtime.test_resume.CrashAfter", "+callbacks.crash.step=31"], tmp_path / "first")
    with pytest.raises(Crash):
        train(first)
    resumed = train(compose_config([*run, f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed"))
    assert resumed["global_step"] == whole["global_step"] == 44
    _assert_same_weights(_weights(tmp_path / "whole" / "checkpoints" / "last.ckpt"), _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt"))
