"""Convert a dataset into LitData chunks for streaming: ``python -m frossl_lit.prepare data=imagenet
data.root=/datasets/imagenet out=/datasets/imagenet-litdata``.

Composes the same ``data`` config training uses (its splits: a CIFAR hold-out, a folder's ``val_fraction``, STL-10's
kNN bank all carry over) and writes ``out/train``, ``out/val`` (and ``out/bank``) with a progress bar, plus
``out/frossl_meta.json``. Train from it with ``data=<same dataset> data.format=litdata data.stream=out``. ``out`` may
be an ``s3://bucket/prefix`` URL: the endpoint, credentials and bucket are checked first, then each split is
uploaded as it is written (:mod:`frossl_lit.data.streams.s3`: the standard AWS variables and ``~/.aws`` files).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from frossl_lit.config.overrides import CONF_DIR, check_command_line
from frossl_lit.runtime.errors import UserError, exits_on_user_error


def prepare(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from frossl_lit.data import datamodule
    from frossl_lit.data.streams.writer import write_stream

    if cfg.data.get("format", "native") != "native":
        raise UserError("prepare reads the dataset's own files: drop data.format (it converts them into a stream)")
    module = datamodule(cfg.data)
    choice = HydraConfig.get().runtime.choices.get("data") if HydraConfig.initialized() else None
    source = {"data": choice, "config": OmegaConf.to_container(cfg.data, resolve=False)}
    source["config"].pop("augment", None)
    meta = write_stream(module, cfg.out, str(cfg.chunk_bytes), bool(cfg.progress), source)
    splits = ", ".join(f"{name} {count}" for name, count in meta["splits"].items())
    print(f"wrote {cfg.out}: {splits} images ({meta['images']}); train with data.format=litdata data.stream={cfg.out}")
    return meta


@exits_on_user_error()
def run(cfg: DictConfig) -> None:
    """:func:`prepare`; a user error is one line and exit status 2 (:func:`frossl_lit.runtime.errors.exits_on_user_error`)."""
    prepare(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prepare")  # absolute: see train.py
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    """The command line's overrides are checked first (:mod:`frossl_lit.config.overrides`), then Hydra composes and runs."""
    check_command_line("prepare")
    _hydra_main()


if __name__ == "__main__":
    main()
