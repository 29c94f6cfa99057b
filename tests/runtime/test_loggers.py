"""W&B mode selection never waits on the network; presets group runs."""

from __future__ import annotations

import pytest

from frossl_lit.runtime.loggers import wandb_logger, wandb_mode


def test_mode_is_offline_without_a_key_and_without_a_server(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert wandb_mode("auto", timeout=1.0) == "offline"
    assert wandb_mode("offline") == "offline"
    with pytest.raises(ValueError, match="auto, online or offline"):
        wandb_mode("sometimes")


def test_experiment_becomes_group_and_tag(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    logger = wandb_logger(str(tmp_path), mode="offline", experiment="frossl_cifar10", group="frossl_cifar10x", tags=["frossl"])
    assert logger._wandb_init["group"] == "frossl_cifar10" and logger._wandb_init["tags"] == ["frossl", "frossl_cifar10"]
