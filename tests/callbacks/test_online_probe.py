"""OnlineLinearProbe: it learns from detached features, ignores unlabelled samples, and checkpoints its head."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from frossl_lit.callbacks import OnlineLinearProbe
from frossl_lit.methods import StepOutput
from tests.conftest import tiny_fit


def _probe_on(num_classes: int = 3, dim: int = 4) -> OnlineLinearProbe:
    probe = OnlineLinearProbe(optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    trainer = SimpleNamespace(datamodule=SimpleNamespace(num_classes=num_classes), world_size=1)
    module = SimpleNamespace(backbone=SimpleNamespace(out_dim=dim), device=torch.device("cpu"), log=lambda *a, **k: None)
    probe.setup(trainer, module, "fit")
    probe.on_fit_start(trainer, module)
    return probe, trainer, module


def test_probe_trained_during_a_fit_beats_chance_and_publishes_its_figures(tmp_path):
    probe = OnlineLinearProbe()
    trainer, _ = tiny_fit(tmp_path, [probe], max_steps=66, max_epochs=3, limit_train_batches=1.0)
    assert probe.last_step == trainer.global_step and probe.last_top1 > 0.3  # 10 classes: chance is 0.1
    assert set(probe.summary()) == {"probe_top1", "probe_top5"} and probe.last_top5 >= probe.last_top1


def _outputs(features, labels):
    """What Lightning hands on_train_batch_end from SSLMethod.training_step."""
    step = StepOutput(loss=torch.tensor(0.0), parts={}, features=features, embeddings=features, labels=labels, method="x")
    return step.for_lightning(step.loss)


def test_unlabelled_samples_teach_nothing():
    probe, trainer, module = _probe_on()
    before = [p.detach().clone() for p in probe.head.parameters()]
    features = torch.randn(8, 4)
    probe.on_train_batch_end(trainer, module, _outputs(features, torch.full((8,), -1)), None, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, probe.head.parameters()))
    probe.on_train_batch_end(trainer, module, _outputs(features, torch.arange(8) % 3), None, 0)
    assert not all(torch.equal(a, b) for a, b in zip(before, probe.head.parameters()))


def test_state_restored_before_the_head_exists_is_applied_when_it_is_built():
    probe, trainer, module = _probe_on()
    probe.on_train_batch_end(trainer, module, _outputs(torch.randn(8, 4), torch.arange(8) % 3), None, 0)
    state = probe.state_dict()
    fresh = OnlineLinearProbe(optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    fresh.load_state_dict(state)  # Lightning restores callbacks before on_fit_start
    fresh.setup(trainer, module, "fit")
    fresh.on_fit_start(trainer, module)
    for name, value in probe.head.state_dict().items():
        torch.testing.assert_close(fresh.head.state_dict()[name], value)
