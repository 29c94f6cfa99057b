"""SSLMethod with a fake loss: the step runs views → branches → loss → logs, each part overridable; a predictor
from the constructor trains with the rest."""

from __future__ import annotations

import csv
import functools

import pytest
import torch
from torch import nn

from frossl_lit.methods import SSLMethod, StepOutput
from frossl_lit.models import Projector
from tests.conftest import tiny_fit, tiny_method


class SquaredNorm(SSLMethod):
    """A fake method: per-view mean squared embedding (it only has to be differentiable)."""

    name = "fake"

    def loss(self, branches):
        per_view = torch.stack([z.pow(2).mean() for z in (branches.predictions or branches.embeddings)])
        return per_view.sum(), {"energy": per_view, "scalar": per_view.mean()}


class WithHead(SquaredNorm):
    """A method that adds a head after the projector, by overriding embed_views only."""

    name = "head"

    def __init__(self, **base) -> None:
        super().__init__(**base)
        self.head = nn.Linear(self.projector.out_dim, 4)
        self.calls = 0

    def embed_views(self, views):
        branches = super().embed_views(views)
        self.calls += 1
        branches.embeddings = [self.head(z) for z in branches.embeddings]
        return branches


def _logged_names(tmp_path) -> set[str]:
    with open(tmp_path / "csv" / "metrics.csv") as handle:
        return set(next(csv.reader(handle)))


def test_a_fake_loss_trains_and_its_parts_are_logged_per_view(tmp_path):
    module = tiny_method(SquaredNorm)
    before = [p.detach().clone() for p in module.projector.parameters()]
    trainer, _ = tiny_fit(tmp_path, [], module=module, max_steps=3)
    assert trainer.global_step == 3
    assert not all(torch.equal(a, b) for a, b in zip(before, module.projector.parameters()))
    names = _logged_names(tmp_path)
    assert {"train/loss", "train/fake/energy", "train/fake/energy_view0", "train/fake/energy_view1", "train/fake/scalar"} <= names
    assert "train/fake/scalar_view0" not in names


def test_step_output_carries_first_view_features_embeddings_and_labels():
    module = tiny_method(SquaredNorm)
    module.log = lambda *args, **kwargs: None  # outside a trainer
    views = [torch.randn(5, 3, 16, 16), torch.randn(5, 3, 16, 16)]
    out = module.training_step((views, torch.arange(5)), 0)
    step = StepOutput.of(out)
    assert out["loss"].requires_grad and step.features.shape == (5, 16) and step.embeddings.shape == (5, 16)
    assert not step.features.requires_grad and step.parts["energy"].shape == (2,) and step.method == module.name
    assert torch.equal(step.labels, torch.arange(5)) and torch.equal(step.loss, out["loss"].detach())
    assert not step.loss.requires_grad


def test_a_backbone_without_out_dim_is_refused_naming_the_contract():
    with pytest.raises(TypeError, match="int out_dim"):
        tiny_method(backbone=torch.nn.Flatten())


def test_overriding_embed_views_adds_a_head_without_touching_the_base(tmp_path):
    module = tiny_method(WithHead)
    before = module.head.weight.detach().clone()
    tiny_fit(tmp_path, [], module=module, max_steps=2)
    assert module.calls == 2 and not torch.equal(before, module.head.weight)  # optimised with the rest


def test_a_predictor_from_the_constructor_is_built_on_the_projector_and_trains(tmp_path):
    module = tiny_method(SquaredNorm, predictor=functools.partial(Projector, hidden_dims=[8]))
    views = [torch.randn(5, 3, 16, 16), torch.randn(5, 3, 16, 16)]
    branches = module.embed_views(views)
    assert [p.shape for p in branches.predictions] == [z.shape for z in branches.embeddings] and branches.targets is None
    before = module.predictor.net[0].weight.detach().clone()
    tiny_fit(tmp_path, [], module=module, max_steps=2)
    assert not torch.equal(before, module.predictor.net[0].weight)
