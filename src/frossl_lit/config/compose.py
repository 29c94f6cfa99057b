"""Compose a training config in-process as ``python -m frossl_lit.train <overrides>`` would (the tests' fixtures and
the in-process benchmarks in experiments/ share it)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from frossl_lit.config import CONF_DIR


def compose_train_config(overrides: list[str], output_dir: str | Path, data_dir: str | Path | None = None,
                         config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, its outputs in ``output_dir`` (``paths.output_dir`` and
    Hydra's runtime output and working directories, so that ``${hydra:...}`` interpolations resolve) and, when
    given, ``paths.data_dir``. Hydra's config is registered as the CLI registers it, and removed from the job's
    config as the CLI's job config carries no ``hydra`` node either."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    paths = [f"paths.output_dir={output_dir}", *([f"paths.data_dir={data_dir}"] if data_dir is not None else [])]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=[*overrides, *paths], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(output_dir)
    cfg.hydra.runtime.cwd = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
