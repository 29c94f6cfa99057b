"""Every option of every config group composes and instantiates (the GPU trainer only composes without a GPU)."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.train import build
from tests.conftest import CONF_DIR, TINY_DATASETS, compose_config, compose_raw, make_tiny_dataset

# experiment presets are smoke-run one by one in test_experiments.py
GROUPS = ["method", "backbone", "data", "augment", "schedule", "trainer", "logger", "callbacks"]


def _options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = [(group, option) for group in GROUPS for option in _options(group)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    named = [d for d in TINY_DATASETS if option == d or option.startswith(f"{d}_")]  # tiny_imagenet, cifar10_laptop …
    dataset = (max(named, key=len) if named else option.split("_")[0]) if group in ("data", "augment") else None
    if dataset and dataset != "digits":  # tiny files in the real format where the config looks
        overrides = [f"data={dataset}", *make_tiny_dataset(dataset, tmp_path / "data"), f"{group}={option}"]
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


@pytest.mark.parametrize("sweep", sorted(p.stem for p in (CONF_DIR / "sweep").glob("*.yaml")))
def test_every_sweep_config_composes(sweep, tmp_path):
    cfg = compose_raw([f"+sweep={sweep}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params, sweep


def test_evaluation_config_composes():
    cfg = compose_raw(["ckpt=x.ckpt"], "evaluate")
    assert cfg.linear.epochs == 100 and cfg.knn.k == 20


@pytest.mark.parametrize("native", [True, False])
def test_laptop_preset_picks_bf16_only_on_a_cpu_that_has_it(native, monkeypatch, tmp_path):
    """bf16 autocast is 1.8x faster than fp32 on a CPU with AVX512-BF16 / AMX and only emulated elsewhere:
    the laptop setting resolves precision, compile and epochs from the CPU (frossl_lit.config.resolvers)."""
    from frossl_lit.config import resolvers

    monkeypatch.setattr(resolvers, "cpu_has_native_bf16", lambda: native)
    for preset in ("frossl_cifar10_laptop", "vicreg_cifar10_laptop"):
        cfg = compose_config([f"experiment={preset}"], tmp_path)
        assert cfg.trainer.precision == ("bf16-mixed" if native else "32-true")
        assert cfg.model.compile is (not native) and cfg.model.channels_last is True
        assert cfg.schedule.max_epochs == cfg.trainer.max_epochs == (8 if native else 5)


def test_cpu_bf16_probe_reads_torch():
    from frossl_lit.config.resolvers import cpu_has_native_bf16

    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu_has_native_bf16() is expected
