"""Parameter groups, LARS exclusions and the warm-up cosine schedule."""

from __future__ import annotations

import math

import pytest
import timm.optim
import torch
from torch import nn

from frossl_lit.optim.param_groups import split_weight_decay
from frossl_lit.optim.schedules import WarmupCosine, warmup_cosine


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_biases_and_norm_parameters_get_no_weight_decay():
    model = _model()
    decay, no_decay = split_weight_decay(model)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)}
    assert no_decay["weight_decay"] == 0.0


def test_lars_adapts_weights_but_not_biases_and_norms():
    model = _model()
    optimizer = timm.optim.Lars(split_weight_decay(model), lr=0.5, momentum=0.0, weight_decay=1e-4, trust_coeff=0.02, trust_clip=True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model(torch.randn(16, 4)).pow(2).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    optimizer.step()
    for name, parameter in model.named_parameters():
        step = before[name] - parameter.detach()
        if name.endswith("bias") or name.startswith("1."):  # excluded: plain SGD step lr × grad
            torch.testing.assert_close(step, 0.5 * grads[name])
        else:  # adapted (You et al. 2017): lr × min(eta ||w|| / (||g|| + wd ||w||) / lr, 1) × (g + wd w)
            update = grads[name] + 1e-4 * before[name]
            ratio = min(0.02 * before[name].norm() / (grads[name].norm() + 1e-4 * before[name].norm()) / 0.5, 1.0)
            torch.testing.assert_close(step, 0.5 * ratio * update, rtol=1e-5, atol=1e-7)


def test_warmup_then_cosine_to_the_floor():
    schedule = WarmupCosine(total_steps=110, warmup_steps=10, final=0.01)
    assert schedule(0) == 0.0 and schedule(5) == pytest.approx(0.5) and schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule(110) == pytest.approx(0.01)
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=100, steps_per_epoch=10, warmup_epochs=2)
    assert scheduler.lr_lambdas[0].warmup_steps == 20
    assert "lr_lambdas" in scheduler.state_dict()


def test_a_static_lr_group_stays_at_its_peak_and_decay_all_puts_every_parameter_in_one_group():
    model = _model()
    groups = split_weight_decay(model, exclude=model[3])
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in [*model[0].parameters(), *model[1].parameters()]}
    groups += [{**g, "static_lr": True} for g in split_weight_decay(model[3])]
    optimizer = torch.optim.SGD(groups, lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=100, warmup_fraction=0.1)
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5 * (1 + math.cos(math.pi * 40 / 90))] * 2 + [1.0, 1.0])
    (everything,) = split_weight_decay(model, decay_all=True)
    assert len(everything["params"]) == len(list(model.parameters())) and "weight_decay" not in everything
