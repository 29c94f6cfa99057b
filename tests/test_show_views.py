"""The view-grid command writes a PNG of originals and their views."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from frossl_lit.data import ViewAugment, ViewRecipe
from frossl_lit.data.digits import DigitsDataModule
from frossl_lit.show_views import view_grid


def test_grid_has_an_original_and_every_view_per_row():
    augment = ViewAugment([ViewRecipe(size=16, hflip_prob=0.0)], [0.2] * 3, [0.35] * 3, num_views=3)
    tiles = view_grid(DigitsDataModule(augment, image_size=16), images=4)
    assert tiles.shape == (4 * 4, 3, 16, 16) and 0 <= tiles.min() and tiles.max() <= 1


@pytest.mark.slow  # 8 s of CLI start-up; the grid itself is checked above
def test_cli_writes_the_png(tmp_path):
    out = tmp_path / "views.png"
    result = subprocess.run(
        [sys.executable, "-m", "frossl_lit.show_views", "+grid.images=5", f"+grid.out={out}", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    width, height = Image.open(out).size
    assert height > width  # 5 rows of (original + 2 views)
