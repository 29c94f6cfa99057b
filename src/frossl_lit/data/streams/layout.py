"""What the stream writer and reader agree on: where a stream's files lie, and reading its small files from a local
folder or a URL (``s3://`` through boto3, :mod:`.s3`; other URLs through fsspec: ``gs://`` needs gcsfs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

META_FILE = "frossl_meta.json"
SPLITS = ("train", "val", "bank")


def is_url(location: str) -> bool:
    return "://" in location


def split_dir(stream: str, split: str) -> str:
    """The folder (or URL) of ``split``'s LitData chunks."""
    return f"{stream}/{split}"


def labels_file(stream: str, split: str) -> str:
    """The ``.npy`` file of ``split``'s labels, in the order of its items."""
    return f"{stream}/{split}_labels.npy"


def read_text(location: str) -> str:
    """A small file from a local path or a URL."""
    if not is_url(location):
        return Path(location).expanduser().read_text()
    if location.startswith("s3://"):
        from frossl_lit.data.streams.s3 import read_bytes

        return read_bytes(location).decode()
    import fsspec

    with fsspec.open(location, "r") as handle:
        return handle.read()


def read_labels(location: str) -> np.ndarray:
    if not is_url(location):
        return np.load(Path(location).expanduser())
    import io

    if location.startswith("s3://"):
        from frossl_lit.data.streams.s3 import read_bytes

        return np.load(io.BytesIO(read_bytes(location)))
    import fsspec

    with fsspec.open(location, "rb") as handle:
        return np.load(io.BytesIO(handle.read()))
