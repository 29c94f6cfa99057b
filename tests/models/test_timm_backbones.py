"""timm backbones and Vision Transformers: ``backbone=timm backbone.name=…`` and the ViT configs compose and train,
a ViT's position embeddings, tokens, norms and biases get no weight decay nor LARS adaptation, channels-last is a
no-op for it, a wrong name or missing pretrained weights fail in one line, and (slow) a small ViT learns on digits."""

from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch
from omegaconf import OmegaConf

from frossl_lit.models import timm_backbone
from frossl_lit.models.backbones import benefits_from_channels_last
from frossl_lit.optim.param_groups import split_weight_decay
from frossl_lit.runtime.errors import UserError
from frossl_lit.train import train
from tests.conftest import TINY, compose_config, make_tiny_dataset, run_cli, tiny_method

# TINY without the small CNN's widths, a few steps, none of the heavier callbacks
SHORT = [o for o in TINY if not o.startswith(("backbone.", "data.batch_size="))] + [
    "data.batch_size=16", "data.eval_batch_size=64", "trainer.max_steps=2", "callbacks.checkpoint_best=null",
    "callbacks.plots=null", "callbacks.knn=null"]
# a ViT of 1 block, 32 wide, 2 heads: the CIFAR ViT config's structure at a test's cost
TINY_VIT = ["backbone.depth=1", "backbone.embed_dim=32", "backbone.num_heads=2"]


def _vit(**kwargs) -> torch.nn.Module:
    """A one-block ViT with 4-px patches, a class token and one register token, for 16 px images."""
    options = dict(patch_size=4, img_size=16, depth=1, embed_dim=32, num_heads=2, reg_tokens=1, dynamic_img_size=True)
    return timm_backbone("vit_tiny_patch16_224", **{**options, **kwargs})


def test_timm_resnet50_composes_and_trains_a_few_steps(tmp_path):
    cfg = compose_config(["backbone=timm", "backbone.name=resnet50", *SHORT], tmp_path / "run")
    assert cfg.backbone.name == "resnet50" and not cfg.backbone.pretrained
    summary = train(cfg)
    assert summary["global_step"] == 2 and summary["probe_top1"] >= 0.0
    backbone = timm_backbone("resnet50", img_size=16)  # a ResNet takes no img_size: it is dropped
    assert backbone.out_dim == 2048 and backbone(torch.randn(2, 3, 16, 16)).shape == (2, 2048)


def test_the_cifar_vit_config_trains_on_cifar10_at_32_px(tmp_path):
    extra = make_tiny_dataset("cifar10", tmp_path / "run" / "data")
    cfg = compose_config(["backbone=vit_tiny_cifar", "data=cifar10", *SHORT, *TINY_VIT, "model.channels_last=true", *extra],
                         tmp_path / "run")
    published = OmegaConf.to_container(compose_config(["backbone=vit_tiny_cifar", "data=cifar10"], tmp_path / "other").backbone, resolve=True)
    assert {k: published[k] for k in ("patch_size", "embed_dim", "depth", "num_heads", "img_size")} == {
        "patch_size": 4, "embed_dim": 192, "depth": 12, "num_heads": 3, "img_size": 32}  # solo-learn's vit_tiny at 32 px
    summary = train(cfg)
    assert summary["global_step"] == 2 and summary["data"] == "cifar10"


@pytest.mark.parametrize("config,name,width", [("vit_small", "vit_small_patch16_224", 384), ("vit_base", "vit_base_patch16_224", 768)])
def test_the_imagenet_vit_configs_follow_the_crop_size(config, name, width, tmp_path):
    cfg = compose_config([f"backbone={config}", "data=imagenet"], tmp_path)
    assert cfg.backbone.name == name and cfg.backbone.embed_dim == width and cfg.backbone.img_size == 224
    assert cfg.backbone.patch_size == 16 and cfg.backbone.depth == 12 and cfg.backbone.dynamic_img_size


def test_vit_position_embeddings_tokens_norms_and_biases_get_no_decay_nor_lars():
    vit = _vit()
    assert vit.out_dim == 32 and vit(torch.randn(2, 3, 16, 16)).shape == (2, 32)
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 32)  # dynamic_img_size: other crop sizes run too
    module = tiny_method(backbone=vit)
    decay, no_decay = module.param_groups()
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"] is True
    names = {id(p): name for name, p in module.named_parameters()}
    excluded = {names[id(p)] for p in no_decay["params"]}
    kept = {names[id(p)] for p in decay["params"]}
    backbone_excluded = {n.removeprefix("backbone.") for n in excluded if n.startswith("backbone.")}
    assert {"pos_embed", "cls_token", "reg_token", "norm.weight", "norm.bias", "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.bias", "patch_embed.proj.bias"} <= backbone_excluded
    assert all(n.endswith(("bias", "pos_embed", "cls_token", "reg_token")) or ".norm" in n or n.startswith("norm.")
               for n in backbone_excluded)
    # decaying: every weight matrix and the patch embedding's kernel, nothing else of the ViT
    assert {n for n in kept if n.startswith("backbone.")} == {
        f"backbone.{n}" for n, p in vit.named_parameters() if p.ndim >= 2 and n not in ("pos_embed", "cls_token", "reg_token")}
    (everything,) = split_weight_decay(vit, decay_all=True)  # solo-learn's SGD recipes decay everything
    assert len(everything["params"]) == len(list(vit.parameters()))


def test_channels_last_is_a_no_op_for_a_vit_and_kept_for_a_cnn():
    vit_method = tiny_method(backbone=_vit(), channels_last=True)
    vit_method.configure_model()
    assert not vit_method.channels_last and not benefits_from_channels_last(vit_method.backbone)
    cnn_method = tiny_method(channels_last=True)
    cnn_method.configure_model()
    assert cnn_method.channels_last and cnn_method.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_an_unknown_timm_name_is_one_line_naming_close_ones(tmp_path):
    with pytest.raises(UserError) as error:
        timm_backbone("vit_tiny_patch16_22")
    assert "\n" not in str(error.value) and "did you mean vit_tiny_patch16_224" in str(error.value)
    cfg = compose_config(["backbone=timm", "backbone.name=resnet5o", *SHORT], tmp_path / "run")
    with pytest.raises(UserError, match=r"^backbone.name='resnet5o' is not a timm model; did you mean resnet50") as error:
        train(cfg)
    assert "\n" not in str(error.value)


def test_pretrained_weights_load_from_the_local_cache_only(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # empty caches
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError) as error:
        timm_backbone("resnet18", pretrained=True)
    message = str(error.value)
    assert "\n" not in message and "not in the local cache" in message and "backbone.pretrained=false" in message
    source = _vit()
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    loaded = _vit(pretrained=True, pretrained_cfg_overlay={"file": str(tmp_path / "weights.pth")})
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in source.state_dict().items())


@pytest.mark.slow  # about 80 s of training on 2 cores (measured: see the report in the README's Backbones paragraph)
@pytest.mark.timeout(900)
def test_frossl_vicreg_and_barlow_twins_train_a_small_vit_on_digits(tmp_path):
    """A 4-block ViT (embed 64, 4 heads, 4-px patches: 16 tokens of the 16 px digits) gains ≥ 5 kNN points over its
    initialisation in 15 epochs with each method (AdamW 5e-4; projector 512-512)."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "method=frossl,vicreg,barlow_twins", "backbone=vit_tiny_cifar", "backbone.embed_dim=64",
                      "backbone.depth=4", "backbone.num_heads=4", "schedule.max_epochs=15", "schedule.optimizer.lr=5e-4",
                      "method.projector.hidden_dims=[512]", "method.projector.out_dim=512", "callbacks.labelfree=null",
                      "callbacks.plots=null", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"],
                     cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = {s["method"]: s for s in (json.loads(p.read_text()) for p in sweep.glob("*/summary.json"))}
    assert sorted(summaries) == ["barlow_twins", "frossl", "vicreg"]
    for method, summary in summaries.items():
        assert summary["knn_top1"] >= summary["knn_top1_init"] + 0.05, (method, summary["knn_top1_init"], summary["knn_top1"])
