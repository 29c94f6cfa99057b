"""Convert a dataset into LitData chunks for streaming: ``python -m frossl_lit.prepare data=imagenet
data.root=/datasets/imagenet out=/datasets/imagenet-litdata``.

Composes the same ``data`` config training uses (its splits: a CIFAR hold-out, a folder's ``val_fraction``, STL-10's
kNN bank all carry over) and writes ``out/train``, ``out/val`` (and ``out/bank``) with a progress bar, plus
``out/frossl_meta.json``. Train from it with ``data=<same dataset> data.format=litdata data.stream=out``; on other
nodes ``data.stream`` may be an ``s3://`` copy of ``out`` (:mod:`frossl_lit.data.stream`).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from frossl_lit.config.overrides import CONF_DIR, check_command_line
from frossl_lit.runtime.errors import UserError


def prepare(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from frossl_lit.data.stream import datamodule, write_stream

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


def run(cfg: DictConfig) -> None:
    """:func:`prepare`; a user error prints its message alone and exits with status 2."""
    from hydra.errors import InstantiationException

    try:
        prepare(cfg)
    except (UserError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        if not isinstance(cause, UserError):  # a constructor rejected a value: its own message, first line
            cause = f"{error}".split("\n")[0] + (f" ({type(cause).__name__}: {cause})" if cause is not None else "")
        print(f"\nfrossl_lit: error: {cause}\n", file=sys.stderr)
        sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prepare")  # absolute: see train.py
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    """The command line's overrides are checked first (:mod:`frossl_lit.config.overrides`), then Hydra composes and runs."""
    check_command_line("prepare")
    _hydra_main()


if __name__ == "__main__":
    main()
