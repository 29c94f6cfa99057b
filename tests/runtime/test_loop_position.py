"""The loop-position helpers against Lightning's real training loop (:mod:`frossl_lit.runtime.loop_position`): a
Lightning upgrade that moves its private counters fails here, not in a resume test minutes later."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from frossl_lit.runtime.loop_position import batches_consumed, batches_fetched, restore_logged_step_counter


class _Steps(Logger):
    """Records the step every logged training metric is logged at."""

    name, version = "steps", 0

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    @property
    def experiment(self):
        return None

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if "loss" in metrics:
            self.steps.append(step)


class _Probe(L.LightningModule):
    """A linear model recording the helpers' answers at every hook of a training batch; with ``checkpoint`` it
    writes one as batch 2 starts (as StepCheckpoint does), with ``restore`` it applies the logged-step fix."""

    def __init__(self, checkpoint=None, restore: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.checkpoint, self.restore, self.restored = checkpoint, restore, False
        self.seen: list[tuple] = []

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer.training:
            self.seen.append(("transfer", self.trainer.current_epoch, batches_fetched(self.trainer)))
        return batch

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.restore and self.restored:
            restore_logged_step_counter(self.trainer)
            self.restored = False
        self.seen.append(("start", batch_idx, batches_fetched(self.trainer), batches_consumed(self.trainer)))
        if self.checkpoint is not None and self.trainer.global_step == 2:
            self.trainer.save_checkpoint(self.checkpoint)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.seen.append(("end", batch_idx, batches_fetched(self.trainer), batches_consumed(self.trainer)))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restored = True

    def on_validation_batch_start(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.seen.append(("validate", batches_consumed(self.trainer)))

    def training_step(self, batch, batch_idx: int):
        loss = self.layer(batch[0]).square().mean()
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module: _Probe, ckpt_path=None, validate: bool = False) -> _Steps:
    logger = _Steps()
    trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)  # 4 batches per epoch
    trainer.fit(module, data, ckpt_path=ckpt_path)
    if validate:
        trainer.validate(module, data, verbose=False)
    return logger


def test_the_helpers_follow_lightnings_loop_and_a_restored_run_logs_every_step_once(tmp_path):
    whole = _Probe(checkpoint=tmp_path / "mid.ckpt")
    logged = _fit(whole, validate=True)
    train = [event for event in whole.seen if event[0] != "validate"]
    expected = []
    for epoch in range(2):  # the counters restart every epoch
        for index in range(4):
            expected += [("transfer", epoch, index), ("start", index, index + 1, index), ("end", index, index + 1, index + 1)]
    assert train == expected
    assert [event for event in whole.seen if event[0] == "validate"] == [("validate", None)] * 4  # not fitting
    assert batches_consumed(None) is None
    assert logged.steps == list(range(8))
    # resumed from the checkpoint written as batch 2 started: Lightning alone logs every step one too high
    assert _fit(_Probe(), ckpt_path=tmp_path / "mid.ckpt").steps == list(range(3, 9))
    assert _fit(_Probe(restore=True), ckpt_path=tmp_path / "mid.ckpt").steps == list(range(2, 8))
