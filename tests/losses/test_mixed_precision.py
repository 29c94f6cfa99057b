"""Under bf16 / fp16 autocast the losses keep their maths in float32, and digits train in bf16-mixed on CPU."""

from __future__ import annotations

import functools

import pytest
import torch

from frossl_lit.losses import barlow_twins_loss, frossl_loss, vicreg_loss
from frossl_lit.losses.mmcr import mmcr_loss
from tests.conftest import LossRecorder, tiny_fit, tiny_method

LOSSES = {
    "frossl": frossl_loss, "frossl_samples_gram": functools.partial(frossl_loss, gram="samples"),
    "vicreg": vicreg_loss, "barlow_twins": barlow_twins_loss, "mmcr": mmcr_loss,
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_autocast_changes_nothing_inside_a_loss_and_half_views_are_cast_up(name):
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(32, 48, generator=generator) for _ in range(2)]
    eager, _ = LOSSES[name](views)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast, parts = LOSSES[name](views)
        from_bf16, _ = LOSSES[name]([v.bfloat16() for v in views])
    assert autocast.dtype == from_bf16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in parts.values())
    torch.testing.assert_close(autocast, eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(from_bf16, LOSSES[name]([v.bfloat16().float() for v in views])[0], rtol=1e-6, atol=1e-6)


def _run(tmp_path, precision: str) -> list[float]:
    torch.manual_seed(0)
    seen = LossRecorder()
    tiny_fit(tmp_path, [seen], module=tiny_method(), max_steps=15, precision=precision)
    return seen.losses


def test_digits_train_in_bf16_mixed_and_the_first_loss_matches_fp32(tmp_path):
    fp32, bf16 = _run(tmp_path / "fp32", "32-true"), _run(tmp_path / "bf16", "bf16-mixed")
    assert all(torch.isfinite(torch.tensor(bf16))) and len(bf16) == 15
    assert bf16[0] == pytest.approx(fp32[0], rel=1e-2)
    assert bf16[-1] < bf16[0]  # it trains
