"""MoCo v2+ as a LightningModule: the momentum base, a queue of keys, :func:`frossl_lit.losses.mocov2_loss`."""

from __future__ import annotations

from frossl_lit.losses.common import unit_rows
from frossl_lit.losses.mocov2 import mocov2_loss
from frossl_lit.methods.momentum import MomentumMethod
from frossl_lit.methods.queue import KeyQueue
from frossl_lit.runtime.errors import UserError, require_temperature


class MoCoV2(MomentumMethod):
    """MoCo v2 (Chen et al., 2020) in solo-learn's symmetric ``mocov2plus`` form: keys from the EMA target, one
    queue of ``queue_size`` past keys per view, filled from the global batch after every optimizer step."""

    name = "mocov2"
    views_supported = (2, 2)

    def __init__(self, *, temperature: float = 0.2, queue_size: int = 65536, **base) -> None:
        require_temperature("method.temperature", temperature, 0.2)
        super().__init__(**base)
        self.temperature = temperature
        self.queue = KeyQueue(2, queue_size, self.projector.out_dim)
        self._pending: list[list] = []  # each micro-batch's keys since the last step, enqueued once the optimizer stepped

    def setup(self, stage: str) -> None:
        """The queue must hold at least one global batch (checked on the config too, where the device count is a
        number; here with the real world size)."""
        trainer = self._trainer
        if trainer is not None and self.batch_size:
            global_batch = self.batch_size * trainer.world_size
            if self.queue.size < global_batch:
                raise UserError(
                    f"method.queue_size={self.queue.size} is smaller than the global batch ({global_batch}); "
                    f"give it at least one batch, e.g. method.queue_size={max(65536, global_batch)}"
                )

    def embed_targets(self, views):
        keys = super().embed_targets(views)
        if self.training:
            self._pending.append([unit_rows(k) for k in keys])
        return keys

    def loss(self, branches):
        return mocov2_loss(branches.embeddings, branches.targets, self.queue.keys, self.temperature, collective=self.collective)

    def after_optimizer_step(self) -> None:
        super().after_optimizer_step()
        # with gradient accumulation every micro-batch's keys are enqueued (solo-learn enqueues each at once; here they
        # wait for the step, so the micro-batches of one step see the same queue)
        for keys in self._pending:
            self.queue.push(keys)
        self._pending = []
