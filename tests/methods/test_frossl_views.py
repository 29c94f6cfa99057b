"""FroSSL with more views trains with the defaults (``method.balance_views=true``), and the FroSSL module passes its
formulation and view balance to the loss."""

from __future__ import annotations

import pytest
import torch

from frossl_lit.losses import frossl_loss
from frossl_lit.methods import Branches, FroSSL
from frossl_lit.models import Projector
from frossl_lit.train import train
from tests.conftest import compose_config


def _module(**loss_options) -> FroSSL:
    backbone = torch.nn.Identity()
    backbone.out_dim = 6
    return FroSSL(
        backbone=backbone,
        projector=lambda in_dim: Projector(in_dim, hidden_dims=[], out_dim=4),
        optimizer=torch.optim.SGD,
        global_batch=False,
        **loss_options,
    )


@pytest.mark.parametrize("formulation,balance_views", [("official", True), ("official", False), ("paper_multiview", False)])
def test_module_loss_is_the_configured_formulation(formulation, balance_views):
    views = [torch.randn(16, 6, generator=torch.Generator().manual_seed(v)) for v in range(4)]
    module = _module(invariance_weight=0.7, formulation=formulation, balance_views=balance_views)
    expected, _ = frossl_loss(views, 0.7, formulation, balance_views)
    torch.testing.assert_close(module.loss(Branches(views, views))[0], expected, rtol=0, atol=0)


def test_module_rejects_an_unknown_formulation():
    with pytest.raises(ValueError, match="method.formulation='standardize' is not one of official, paper_two_view"):
        _module(formulation="standardize")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 8 views: ~9 minutes on the slower 2-core machines
@pytest.mark.parametrize("views", [4, 8])
def test_many_views_gain_five_knn_points_on_digits_with_the_defaults(views, tmp_path):
    """The acceptance of the views work: `python -m frossl_lit.train augment.num_views=V` (digits, defaults)."""
    summary = train(compose_config([f"augment.num_views={views}", "trainer.enable_progress_bar=false"], tmp_path))
    assert summary["knn_top1"] >= summary["knn_top1_init"] + 0.05, summary
