"""STL-10 from its binary layout through the real loading code; every bad input gets a message naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frossl_lit.data import ViewAugment, ViewRecipe
from frossl_lit.data.stl10 import STL10DataModule
from frossl_lit.runtime.errors import DataNotFoundError
from tests.conftest import write_stl10


def _augment(size=32):
    return ViewAugment([ViewRecipe(size=size)], [0.5] * 3, [0.25] * 3, eval_size=size)


def test_stl10_binary_layout_orientation_and_unlabelled_split(tmp_path):
    folder = write_stl10(tmp_path)
    module = STL10DataModule(_augment(96), root=str(tmp_path), batch_size=16)
    module.setup()
    assert len(module.train_set) == 90 and len(module.val_set) == 30 and len(module.bank_set) == 40
    raw = np.fromfile(folder / "train_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    images, labels = module.bank_set[torch.tensor([0, 1])]
    assert torch.equal(images[0], torch.from_numpy(raw[0].transpose(0, 2, 1).copy()))  # rows are rows again
    assert labels.tolist() == [0, 1]
    _, labels = module.train_set[torch.arange(90)]
    assert (labels == -1).sum() == 50


def test_stl10_bad_inputs_are_named(tmp_path):
    with pytest.raises(DataNotFoundError, match="(?s)STL-10 not found.*data.download=true"):
        STL10DataModule(_augment(96), root=str(tmp_path / "none"))
    folder = write_stl10(tmp_path)
    with open(folder / "test_X.bin", "ab") as handle:
        handle.write(b"\x00" * 100)
    with pytest.raises(DataNotFoundError, match="test_X.bin has .* bytes, not a whole number"):
        STL10DataModule(_augment(96), root=str(tmp_path)).setup()
