"""A steady-state training step reads nothing back from the device: no ``.item()``, ``.tolist()``, ``.cpu()``,
``.numpy()``, ``float()``, ``int()`` or ``bool()`` of a tensor in a step that neither logs nor runs an every-N
callback. Counted during a real fit of the default config (FroSSL, every default callback) on digits."""

from __future__ import annotations

import traceback

import lightning as L
import pytest
import torch

from frossl_lit.callbacks import LossProgressBar
from frossl_lit.train import build
from tests.conftest import TINY, compose_config

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
EVERY = 5  # logging and the every-N callbacks fire after steps 4, 9, …; the step checkpoint before steps 5, 10, …


class SyncCounter(L.Callback):
    """Records each read with its step while a quiet step runs (from its start to the next step's start, so the
    next batch's loading and augmentation and Lightning's end-of-batch bookkeeping count too)."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, str, str]] = []
        self.quiet_steps: list[int] = []
        self._step: int | None = None

    def record(self, name: str) -> None:
        if self._step is None:
            return
        frames = traceback.extract_stack()[:-2]
        if any("/torch/optim/" in f.filename for f in frames[-3:]):
            return  # the optimizers' step counters are host tensors by design (no device round trip)
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[::-1][:4])
        self.reads.append((self._step, name, where))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        quiet = step >= 1 and (step + 1) % EVERY != 0 and step % EVERY != 0  # step 0 builds the optimizer state
        self._step = step if quiet else None
        if quiet:
            self.quiet_steps.append(step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._step = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._step = None


class ProgressBarLoss(L.Callback):
    """What the base did before: the loss on Lightning's progress bar, read back after every step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.log("pbar_loss", outputs["loss"].detach(), prog_bar=True)


def _count_reads(tmp_path, monkeypatch, extra_callbacks=(), method="frossl",
                 overrides=()) -> tuple[L.Trainer, SyncCounter, L.LightningModule]:
    every = [f"trainer.log_every_n_steps={EVERY}", f"callbacks.spectrum.every_n_steps={EVERY}",
             f"callbacks.throughput.every_n_steps={EVERY}", f"callbacks.divergence.check_every_n_steps={EVERY}",
             f"callbacks.checkpoint_steps.every_n_steps={EVERY}", "trainer.max_steps=13"]
    cfg = compose_config([*TINY, *every, "trainer.enable_progress_bar=true", f"method={method}", *overrides], tmp_path)
    datamodule, model, _, trainer = build(cfg)
    counter = SyncCounter()
    trainer.callbacks.insert(0, counter)  # first: its hooks open and close each window before the others run
    trainer.callbacks.extend(extra_callbacks)
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counter.record(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    trainer.fit(model, datamodule=datamodule)
    return trainer, counter, model


# the default method, and one of each kind of state: a target network with a queue (MoCo), a predictor (SimSiam)
@pytest.mark.parametrize("method", ["frossl", "mocov2", "simsiam"])
def test_a_quiet_training_step_reads_nothing_back_from_the_device(method, tmp_path, monkeypatch):
    trainer, counter, model = _count_reads(tmp_path, monkeypatch, method=method)
    assert trainer.global_step == 13 and counter.quiet_steps == [1, 2, 3, 6, 7, 8, 11, 12]
    assert counter.reads == [], "host reads in quiet steps:\n" + "\n".join(map(str, counter.reads))
    bar = next(c for c in trainer.callbacks if isinstance(c, LossProgressBar))
    assert bar.logged_loss is not None  # the progress bar's loss, read at the logging steps only


def test_the_counter_sees_a_value_on_lightnings_progress_bar(tmp_path, monkeypatch):
    _, counter, _ = _count_reads(tmp_path, monkeypatch, [ProgressBarLoss()])
    assert {step for step, name, _ in counter.reads if name == "item"} == set(counter.quiet_steps)
