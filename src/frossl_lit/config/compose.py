"""Compose a training config in-process as ``python -m frossl_lit.train <overrides>`` would (the tests' fixtures and
the in-process benchmarks in experiments/ share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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


def settings_changed(overrides: list[str], run_dir: str | Path) -> list[tuple[str, Any, Any]]:
    """``(dotted key, recorded, now)`` for every leaf in which the config recorded in ``run_dir/.hydra/config.yaml``
    differs from what ``overrides`` compose now (other overrides, or a preset or default edited since the run),
    compared unresolved, except ``paths`` (the run directory's own) and ``resume`` (how the run was started).
    Empty when nothing is recorded there, or when the overrides do not compose (the run itself then says why in one
    line); an unreadable record is one difference. The experiments' harness refuses to reuse or resume a run
    directory for which this is not empty."""
    from frossl_lit.runtime.resume import differences

    stored = Path(run_dir) / ".hydra" / "config.yaml"
    if not stored.is_file():
        return []
    try:
        now = OmegaConf.to_container(compose_train_config(overrides, run_dir), resolve=False)
    except Exception:  # noqa: BLE001 - a wrong override is the training command's to report
        return []
    try:
        then = OmegaConf.to_container(OmegaConf.load(stored), resolve=False)
    except Exception:  # noqa: BLE001 - truncated or not YAML: its settings are unknown, so they differ
        return [(str(stored), "unreadable", "composed")]
    return [change for key in sorted(set(then) | set(now), key=str) if key not in ("paths", "resume")
            for change in differences(then, now, str(key))]
