"""Every option of every config group composes and instantiates (the GPU trainer only composes without a GPU)."""

from __future__ import annotations

import pytest
import torch
from hydra.core.hydra_config import HydraConfig

from frossl_lit.train import build
from tests.conftest import CONF_DIR, compose_config, write_cifar

GROUPS = ["method", "backbone", "data", "augment", "schedule", "trainer", "logger", "callbacks", "experiment"]


def _options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = [(group, option) for group in GROUPS for option in _options(group)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    dataset = option if group in ("data", "augment") and option.startswith("cifar") else None
    if dataset:  # tiny files in the real pickle layout where the config looks for them
        write_cifar(tmp_path / "data" / dataset, classes=100 if dataset == "cifar100" else 10, hundred=dataset == "cifar100")
        overrides.insert(0, f"data={dataset}")
    if group == "method" and option != "frossl":
        overrides += ["method.projector.hidden_dims=[64]", "method.projector.out_dim=32"]
    cfg = compose_config(overrides, tmp_path)
    if group == "trainer" and option == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.accelerator == "gpu"
        return
    datamodule, model, callbacks, trainer = build(cfg)
    assert model.backbone.out_dim > 0 and model.projector.out_dim > 0
    assert datamodule.augment.total_views >= 2
    assert trainer.max_epochs == cfg.schedule.max_epochs or group == "experiment"


def test_run_directories_are_namespaced_by_method_and_data(tmp_path):
    cfg = compose_config(["method=vicreg", "data=digits"], tmp_path)
    assert "vicreg_digits" in HydraConfig.get().run.dir
