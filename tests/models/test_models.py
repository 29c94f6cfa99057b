"""Backbones map images to (B, out_dim) and load into torchvision; the projector is the layers it says."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from frossl_lit.models import Projector, SmallCNN, resnet


@pytest.mark.parametrize("name,width", [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_features_and_torchvision_keys(name, width):
    model = resnet(name, cifar_stem=True)
    assert model.out_dim == width
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, width)
    reference = getattr(torchvision.models, name)()
    reference.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    missing, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_small_cnn_width_is_its_last_layer(downsample):
    model = SmallCNN([8, 16, 24], downsample=downsample)
    assert model.out_dim == 24 and model(torch.randn(3, 3, 16, 16)).shape == (3, 24)
    assert any(isinstance(layer, nn.MaxPool2d) for layer in model.features) == (downsample == "maxpool")


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_small_cnn_depths_add_layers_at_each_stage_resolution(downsample):
    model = SmallCNN([8, 16, 24], downsample=downsample, depths=[1, 2, 3])
    convs = [layer for layer in model.features if isinstance(layer, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [8, 16, 16, 24, 24, 24]
    assert [conv.stride[0] for conv in convs] == ([1] * 6 if downsample == "maxpool" else [1, 2, 1, 2, 1, 1])
    assert model(torch.randn(3, 3, 16, 16)).shape == (3, 24)
    one = SmallCNN([8, 16], downsample="maxpool")  # depth 1 keeps the layer names of earlier checkpoints
    assert {"features.0.weight", "features.4.weight", "features.5.running_mean"} <= one.state_dict().keys()
    assert sum(isinstance(layer, nn.Conv2d) for layer in SmallCNN([8, 16], depths=2).features) == 4
    with pytest.raises(ValueError, match="one count"):
        SmallCNN([8, 16], depths=[1, 1, 1])


def test_projector_layers_and_biases():
    projector = Projector(in_dim=10, hidden_dims=[32, 32], out_dim=8, hidden_bias=True, last_bias=False)
    kinds = [type(layer).__name__ for layer in projector.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert projector.net[-1].bias is None and projector.net[0].bias is not None
    assert projector(torch.randn(4, 10)).shape == (4, projector.out_dim) == (4, 8)


def test_projector_without_hidden_norm_and_with_an_affine_free_last_norm():
    simclr = Projector(in_dim=10, hidden_dims=[32], out_dim=8, hidden_norm=False)
    assert [type(m).__name__ for m in simclr.net] == ["Linear", "ReLU", "Linear"]
    simsiam = Projector(in_dim=10, hidden_dims=[32, 32], out_dim=8, hidden_bias=False, last_bias=False, last_norm=True)
    assert [type(m).__name__ for m in simsiam.net] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert simsiam.net[-1].weight is None and simsiam.net[-2].bias is None
    out = simsiam(torch.randn(16, 10))
    torch.testing.assert_close(out.mean(0), torch.zeros(8), atol=1e-5, rtol=0)  # batch-normalised output
