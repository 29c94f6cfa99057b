"""The data formats (``data.format``) and which DataModule reads each: the one place that knows them.

- ``native``: the dataset's own files, read by the DataModule its config names (``data._target_``);
- ``litdata``: LitData chunks written from those files by ``python -m frossl_lit.prepare``
  (:mod:`frossl_lit.data.streams.writer`), read by the :class:`~frossl_lit.data.streams.reader.StreamingDataModule`
  from the same ``data`` config (``data.stream=DIR``).

:func:`datamodule` builds the DataModule of a ``data`` config for its format; every entry point calls it. This
module imports no DataModule (the readers are named by import path), so any of them may import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from frossl_lit.runtime.errors import UserError

if TYPE_CHECKING:
    from frossl_lit.data.base import SSLDataModule

FORMATS = ("native", "litdata")
# the DataModule that reads each format other than native, built from the dataset's own data config
READERS = {"litdata": "frossl_lit.data.streams.reader.StreamingDataModule"}


def check_format(fmt: str) -> None:
    """Refuse a ``data.format`` that is not one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise UserError(f"data.format={fmt!r} must be one of {', '.join(FORMATS)}")


def check_reader(module_class: type, fmt: str) -> None:
    """Refuse to build ``module_class`` for ``fmt`` when it does not read that format: a dataset's own DataModule
    instantiated with ``data.format=litdata`` instead of through :func:`datamodule`."""
    path = f"{module_class.__module__}.{module_class.__qualname__}"
    reads = next((name for name, reader in READERS.items() if reader == path), "native")
    if fmt != reads:
        raise UserError(
            f"data.format={fmt!r}: build the DataModule with frossl_lit.data.datamodule(cfg.data), which reads "
            f"a stream for data.format=litdata (data.format must be {' or '.join(FORMATS)})"
        )


def datamodule(cfg) -> SSLDataModule:
    """The DataModule a ``data`` config describes: its own ``_target_`` (``data.format=native``), or the reader of
    its format (:data:`READERS`: a :class:`~frossl_lit.data.streams.reader.StreamingDataModule` reading
    ``data.stream`` for ``data.format=litdata``)."""
    from hydra.utils import instantiate

    fmt = cfg.get("format", "native")
    check_format(fmt)
    if fmt in READERS:
        return instantiate(cfg, _target_=READERS[fmt])
    return instantiate(cfg)
