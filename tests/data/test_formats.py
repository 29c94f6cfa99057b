"""The data formats and the DataModule that reads each (:mod:`frossl_lit.data.formats`); the streams themselves are
tested in test_stream.py."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from frossl_lit.data import FORMATS, ViewAugment, ViewRecipe, datamodule
from frossl_lit.data.digits import DigitsDataModule
from frossl_lit.data.formats import READERS, check_reader
from frossl_lit.runtime.errors import UserError


def test_each_format_is_read_by_its_own_module_and_an_unknown_one_is_refused():
    assert set(READERS) < set(FORMATS) and "native" in FORMATS
    for fmt, reader in READERS.items():
        check_reader(get_class(reader), fmt)  # the reader accepts its format
        with pytest.raises(UserError, match="build the DataModule with frossl_lit.data.datamodule"):
            check_reader(DigitsDataModule, fmt)
    with pytest.raises(UserError, match="build the DataModule with frossl_lit.data.datamodule"):
        DigitsDataModule(ViewAugment([ViewRecipe(size=8)], [0.5] * 3, [0.25] * 3), format="litdata")
    with pytest.raises(UserError, match=r"^data\.format='parquet' must be one of native, litdata$"):
        datamodule(OmegaConf.create({"format": "parquet"}))
