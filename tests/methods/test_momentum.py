"""The seam for target networks and predictors: the momentum schedule, the EMA update after every optimizer step
(replayed by hand from the online weights a real fit produced), frozen targets outside the optimizer, the target
seeing the large crops only, the probe reading the online backbone, and bad momenta refused. A method on the seam
is a small subclass (``Predicting`` below); each real one has its own tests in tests/losses/."""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch

from frossl_lit.methods import MomentumMethod, StepOutput
from frossl_lit.methods.momentum import MomentumTarget, momentum_at
from frossl_lit.models import Projector
from frossl_lit.runtime.errors import UserError
from tests.conftest import tiny_fit, tiny_method


def test_the_momentum_schedule_is_cosine_from_start_to_end():
    assert momentum_at(0, 100, 0.99, 1.0) == 0.99 and momentum_at(100, 100, 0.99, 1.0) == 1.0
    assert momentum_at(50, 100, 0.99, 1.0) == pytest.approx(1.0 - 0.01 * (math.cos(math.pi / 2) + 1) / 2)
    assert momentum_at(25, 100, 0.9, 0.99) == pytest.approx(0.99 - 0.09 * (math.cos(math.pi / 4) + 1) / 2)
    assert momentum_at(70, 100, 0.99, 1.0, "constant") == 0.99


def test_the_target_is_a_frozen_copy_moved_by_the_moving_average():
    online = [torch.nn.Linear(3, 4), Projector(4, [5], 2)]
    target = MomentumTarget(*online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online[0].parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    target.update(online, 0.9)
    sources = [p for module in online for p in module.parameters()]
    for old, new, source in zip(before, target.parameters(), sources):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * source)


class OnlineWeights(L.Callback):
    """The online backbone + projector weights at the start and after every optimizer step."""

    def __init__(self) -> None:
        self.after_steps: list[list[torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = [p.detach().clone() for p in pl_module.target.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        online = [*pl_module.backbone.parameters(), *pl_module.projector.parameters()]
        self.after_steps.append([p.detach().clone() for p in online])


class Predicting(MomentumMethod):
    """What a method with a target and a predictor writes: a name, its views and its loss (here: every view's
    prediction towards every target view's projection, by cosine)."""

    name = "predicting"

    def loss(self, branches):
        cosines = [torch.cosine_similarity(p, t.detach(), dim=-1).mean() for p in branches.predictions for t in branches.targets]
        return -sum(cosines), {}


def _predicting(**kwargs):
    return tiny_method(Predicting, predictor=functools.partial(Projector, hidden_dims=[8]), **kwargs)


def test_after_every_optimizer_step_the_target_is_the_moving_average_of_the_online_weights(tmp_path):
    module, record = _predicting(momentum_start=0.9, momentum_end=1.0), OnlineWeights()
    trainer, _ = tiny_fit(tmp_path, [record], module=module, max_steps=5)
    total = module.total_steps
    expected = record.start
    for step, online in enumerate(record.after_steps):
        tau = momentum_at(step, total, 0.9, 1.0)
        expected = [tau * t + (1 - tau) * o for t, o in zip(expected, online)]
    for mine, theirs in zip(module.target.parameters(), expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)
    assert module.target_momentum.item() == pytest.approx(momentum_at(4, total, 0.9, 1.0))


def test_targets_stay_out_of_the_optimizer_and_the_probe_reads_the_online_backbone():
    module = _predicting()
    trained = {id(p) for group in module.param_groups() for p in group["params"]}
    assert trained.isdisjoint(id(p) for p in module.target.parameters())
    assert {id(p) for p in module.predictor.parameters()} <= trained
    module.log = lambda *args, **kwargs: None  # outside a trainer
    with torch.no_grad():  # the target now differs from the online network
        for p in module.target.parameters():
            p.mul_(0.5)
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    module.train()
    out = StepOutput.of(module.training_step((views, torch.arange(6)), 0))
    with torch.no_grad():
        torch.testing.assert_close(out.features, module.backbone(views[0]))
        assert not torch.allclose(module.target.backbone(views[0]), out.features)


def test_the_target_sees_the_large_crops_only():
    module = _predicting()
    views = [torch.randn(4, 3, 16, 16)] * 2 + [torch.randn(4, 3, 8, 8)] * 3
    branches = module.embed_views(views)
    assert len(branches.targets) == 2 and len(branches.predictions) == 5 and not branches.targets[0].requires_grad


@pytest.mark.parametrize("kwargs,message", [
    ({"momentum_start": 1.5}, r"^method\.momentum_start=1\.5 is a momentum: it must lie in \[0, 1\]"),
    ({"momentum_end": -0.1}, r"^method\.momentum_end=-0\.1 is a momentum"),
    ({"momentum_start": 0.999, "momentum_end": 0.99}, r"^method\.momentum_start=0\.999 exceeds method\.momentum_end=0\.99"),
    ({"momentum_schedule": "linear"}, r"^method\.momentum_schedule='linear' must be cosine or constant"),
])
def test_bad_momentum_values_are_refused_by_the_module(kwargs, message):
    with pytest.raises(UserError, match=message):
        _predicting(**kwargs)
