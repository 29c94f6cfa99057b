"""Every experiment preset equals the published source it names, field by field.

The sources are transcribed in ``tests/reference/published_settings.yaml`` (a copy of the project's shared
reference: OFSkean/FroSSL, solo-learn and the official VICReg / Barlow Twins code, each field with its source path
and commit) and, for the paper-era FroSSL settings, ``tests/reference/paper_era_settings.yaml`` (the same layout,
transcribed from the official repository's history; its variants are added beside the others) and, for SimCLR,
MoCo v2+, BYOL and SimSiam, ``tests/reference/baselines_settings.yaml`` (solo-learn and the official FroSSL repository's
STL-10 baselines, same layout, with their notes beside it). For each preset this test composes the real config, reads the same canonical fields out of the config
and out of the reference, and compares them. A preset lists each deliberate deviation under ``preset.deviations``
with its reason; the test skips those fields and checks that they really do differ (so the list stays true).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from frossl_lit.data.augment import ViewRecipe
from frossl_lit.runtime.errors import UserError
from tests.conftest import CONF_DIR, compose_raw

_REFERENCE_DIR = Path(__file__).parent / "reference"
REFERENCE = yaml.safe_load((_REFERENCE_DIR / "published_settings.yaml").read_text())
for _entry, _variants in yaml.safe_load((_REFERENCE_DIR / "paper_era_settings.yaml").read_text()).items():
    assert not set(_variants) & set(REFERENCE[_entry]), f"paper-era variants must not replace {_entry}'s"
    REFERENCE[_entry].update(_variants)
_BASELINES = yaml.safe_load((_REFERENCE_DIR / "baselines_settings.yaml").read_text())
assert not set(_BASELINES) - {"_meta"} & set(REFERENCE), "the baselines' transcription must not replace an entry"
REFERENCE.update({entry: variants for entry, variants in _BASELINES.items() if entry != "_meta"})
# one transcription per later method (SwAV, DINO, W-MSE, CorInfoMax …): tests/reference/methods/<method>.yaml, same
# layout, whose ``_meta.loss_fields`` maps each loss field here (``method.<field>``) to its key in the loss block
# (a dotted key reads a nested one)
_METHOD_LOSS_FIELDS: dict[str, list[tuple[str, str]]] = {}
for _path in sorted((_REFERENCE_DIR / "methods").glob("*.yaml")):
    _transcription = yaml.safe_load(_path.read_text())
    _METHOD_LOSS_FIELDS[_path.stem] = list(_transcription["_meta"]["loss_fields"].items())
    assert not set(_transcription) - {"_meta"} & set(REFERENCE), f"{_path.name} must not replace an entry"
    REFERENCE.update({entry: variants for entry, variants in _transcription.items() if entry != "_meta"})
# one transcription per later dataset (Tiny ImageNet …): tests/reference/datasets/<dataset>.yaml, the layout of
# published_settings.yaml (preset key → variant → block)
for _path in sorted((_REFERENCE_DIR / "datasets").glob("*.yaml")):
    _transcription = yaml.safe_load(_path.read_text())
    assert not set(_transcription) - {"_meta"} & set(REFERENCE), f"{_path.name} must not replace an entry"
    REFERENCE.update({entry: variants for entry, variants in _transcription.items() if entry != "_meta"})
# over what batch each source's batch-wide terms run under DDP (tests/reference/ddp_scope.yaml), per code base
DDP_SCOPE = yaml.safe_load((_REFERENCE_DIR / "ddp_scope.yaml").read_text())
# what every source does alike, read from its code (not its configs): crops resized bicubic (solo-learn and the
# FroSSL fork: solo/data/pretrain_dataloader.py RandomResizedCrop(..., interpolation=BICUBIC); official VICReg,
# Barlow Twins and CorInfoMax likewise); a plain nn.Linear as the linear head (solo/methods/linear.py, official
# evaluate.py / lin_classifier.py); the solo family's online classifier an nn.Linear on every large crop, trained in
# the pretraining optimizer and schedule at classifier_lr (solo/methods/base.py: learnable_params, training_step)
SOURCE_INTERPOLATION = "bicubic"
SOLO_SEED = REFERENCE["_meta"]["solo_family_code_defaults"]["seed_default"]  # solo/args/pretrain.py: seed 5
# presets that reproduce a published setting (``preset.source``); the laptop preset is this project's own
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml") if "\n  source:" in p.read_text())
PRECISION = {"32": "32-true", "16-mixed": "16-mixed", "16": "16-mixed"}
AUGMENT_KEYS = {  # reference name → ViewRecipe field
    "crop_size": "size", "rrc_enabled": "random_resized_crop", "rrc_scale": "scale", "color_jitter_prob": "jitter_prob",
    "brightness": "brightness", "contrast": "contrast", "saturation": "saturation", "hue": "hue",
    "grayscale_prob": "grayscale_prob", "gaussian_blur_prob": "blur_prob", "solarization_prob": "solarize_prob",
    "horizontal_flip_prob": "hflip_prob",
}
# How many devices and what per-device batch the official repositories' published runs used: their argparse
# default is a total batch (2048) split over however many GPUs run it, so the README's launch line decides.
OFFICIAL_DEVICES = {
    "vicreg_imagenet.official": ("readme_1000ep", None),  # 4 nodes × 8 GPUs × 64
    "barlow_twins_imagenet.official": (None, (16, 128)),  # README: ~7 days on 16 V100 -> 128 per GPU
}


def source_block(key: str) -> dict:
    """The reference block ``<preset key>.<variant>``; a partial variant (only its differences) is laid over the
    complete one beside it."""
    entry, variant = key.split(".")
    block = REFERENCE[entry][variant]
    if "backbone" not in block:
        base = next(b for v, b in REFERENCE[entry].items() if v != variant and isinstance(b, dict) and "backbone" in b)
        merged = OmegaConf.merge(base, {k: v for k, v in block.items() if k != "difference"})
        block = OmegaConf.to_container(merged)
    return block


def _number(value) -> float | None:
    return None if value is None else float(value)


def _head(block: dict, name: str) -> dict:
    """A projector's or predictor's widths, biases and norms, read from the transcribed layer structure: either the
    short form ("Linear-BN-ReLU, Linear (all Linear with bias)", "bias=False" where a layer has none) or the layer by
    layer form of the baselines ("Linear(512->hidden, bias)-BatchNorm1d(hidden, affine)-ReLU-Linear(...)")."""
    structure = block["structure"]
    by_layer = "->" in structure  # the baselines' form names each layer's widths
    layers = structure.split("-Linear(") if by_layer else structure.split(",")
    last = layers[-1]
    return {
        f"{name}.hidden_dims": [block["hidden_dim"]] * (block["num_linear_layers"] - 1),
        f"{name}.out_dim": block["output_dim"],
        f"{name}.hidden_bias": "bias=False" not in layers[0],
        # a bias that is frozen and followed by an affine-free BatchNorm is removed by that norm: no bias
        f"{name}.last_bias": "bias=False" not in last and "frozen" not in last,
        f"{name}.hidden_norm": "no BatchNorm" not in structure and ("BN" in layers[0] or "BatchNorm1d" in layers[0]),
        # (the short form's "then BatchNorm1d(affine=False) before cross-correlation" is Barlow Twins' loss, not a layer)
        f"{name}.last_norm": by_layer and "affine=False" in last,
    }


# method → its loss fields: (field here, key in the transcription's loss block)
LOSS_FIELDS = {
    "simclr": [("temperature", "temperature")],
    "mocov2": [("temperature", "temperature"), ("queue_size", "queue_size"), ("momentum_start", "base_tau"), ("momentum_end", "final_tau")],
    "byol": [("momentum_start", "base_tau"), ("momentum_end", "final_tau")],
    "simsiam": [],
    "mmcr": [("local_weight", "local_weight")],
    **_METHOD_LOSS_FIELDS,
}


def _dotted(block: dict, key: str):
    for part in key.split("."):
        block = block[part]
    return block


VIT_FIELDS = ("patch_size", "embed_dim", "depth", "num_heads", "img_size")


def code_base(key: str) -> str | None:
    """Which code a source's run came from: the FroSSL repository's solo-learn fork, solo-learn, or an official
    repository (None: a record of a run, e.g. a W&B export, whose code base the variant does not name)."""
    variant = key.split(".")[1]
    return next((base for base in ("frossl_repo", "solo_learn", "official") if variant.startswith(base)), None)


def expected_fields(key: str, method: str) -> dict:
    """The canonical fields of a published source."""
    ref = source_block(key)
    stem = ref["backbone"]["stem"]
    if "patch_size" in ref["backbone"]:  # a ViT: its shape and the side it is built for
        fields = {f"backbone.{k}": ref["backbone"][k] for k in VIT_FIELDS}
        fields["backbone.name"] = "vit"
    else:
        fields = {
            "backbone.name": ref["backbone"]["name"],
            "backbone.cifar_stem": stem.startswith("CIFAR stem"),
            "backbone.zero_init_residual": "zero_init_residual=True" in stem,
        }
    fields.update(_head(ref["projector"], "projector"))
    if "predictor" in ref:
        fields.update({k: v for k, v in _head(ref["predictor"], "predictor").items() if k != "predictor.out_dim"})
        fields["predictor.static_lr"] = bool(ref["predictor"].get("static_lr", False))
    if fields.get("backbone.cifar_stem"):
        fields["backbone.stem_padding"] = 2 if "padding=2" in stem else 1
    loss = ref["loss"]
    if method == "frossl":
        fields.update({
            "loss.invariance_weight": loss["invariance_weight"],
            "loss.formulation": loss.get("formulation", "official"),  # the current official loss unless stated
            "loss.balance_views": False,  # presets reproduce their source: the invariance weighted as it weighs it
        })
    elif method in LOSS_FIELDS:
        fields.update({f"loss.{ours}": _dotted(loss, theirs) for ours, theirs in LOSS_FIELDS[method]})
    elif method == "vicreg":
        solo_family = not key.endswith(".official")  # solo-learn's variance term has no /2: its 25 is 50 here
        fields.update({
            "loss.invariance_weight": loss.get("sim_loss_weight", loss.get("sim_coeff")),
            "loss.variance_weight": loss.get("var_loss_weight", loss.get("std_coeff")) * (2 if solo_family else 1),
            "loss.covariance_weight": loss.get("cov_loss_weight", loss.get("cov_coeff")),
        })
    else:
        scale = loss["scale_loss"]
        fields.update({"loss.off_diagonal_weight": loss["lambda"], "loss.scale": scale if isinstance(scale, float) else 1.0})
    base = code_base(key)
    if base in ("frossl_repo", "solo_learn"):  # the solo family seeds every run with its default unless a config sets one
        fields["seed"] = ref.get("seed", SOLO_SEED)
    classifier_lr = ref["optimizer"].get("classifier_lr_in_yaml")
    if base in ("frossl_repo", "solo_learn") and classifier_lr is not None:  # the online classifier (see SOURCE_INTERPOLATION)
        fields["probe"] = {"head": "linear", "views": "large", "optimizer": "pretraining", "lr": classifier_lr}
    views = ref["views"]
    fields["views.num_views"] = views.get("num_large_crops", views.get("num_large_crops_at_reported_run"))
    fields["views.small_views"] = views["num_small_crops"]

    batch = ref["batch"]
    if key in OFFICIAL_DEVICES:
        readme, explicit = OFFICIAL_DEVICES[key]
        if readme:
            run = batch[readme]
            fields["batch.per_device"], fields["batch.devices"] = run["per_gpu"], run["nodes"] * run["gpus_per_node"]
        else:
            fields["batch.devices"], fields["batch.per_device"] = explicit
    else:
        fields["batch.per_device"], fields["batch.devices"] = batch["per_gpu"], batch["num_gpus"]
    scope = DDP_SCOPE.get(base or "", {}).get(method)
    if scope is not None and fields["batch.devices"] > 1:  # on one device the global batch is the GPU's own
        fields["loss.global_batch"] = scope["global_batch"]

    opt = ref["optimizer"]
    sgd = opt["name"] in ("sgd", "adamw")  # no LARS terms; solo-learn's SGD and AdamW decay every parameter (exclude_bias_n_norm_wd off)
    fields.update({
        "optimizer.name": opt["name"],
        "optimizer.lr": opt.get("lr_in_yaml", opt.get("base_lr", opt.get("lr_weights_base"))),
        "optimizer.lr_reference_batch": 256,
        "optimizer.weight_decay": float(opt["weight_decay"]),
        "optimizer.eta": None if sgd else opt["lars_eta"],
        "optimizer.clip_lr": None if sgd else opt["clip_lr"],
        "optimizer.momentum": opt["momentum"],
        "optimizer.exclude_bias_n_norm": False if sgd else opt["exclude_bias_n_norm"],
        "optimizer.no_decay_lr_scale": opt["lr_biases_base"] / opt["lr_weights_base"] if "lr_biases_base" in opt else 1.0,
    })
    sched = ref["scheduler"]
    fields["scheduler.warmup_epochs"] = sched["warmup_epochs"]
    fields["scheduler.warmup_start_lr"] = float(sched["warmup_start_lr"])
    if isinstance(sched["min_lr"], str):  # "0.001 * base lr" (official code): a fraction of the peak
        fields["scheduler.final_fraction"] = 0.001
    else:
        fields["scheduler.min_lr"] = float(sched["min_lr"])
    fields["max_epochs"] = ref.get("max_epochs", ref.get("max_epochs_default"))
    fields["precision"] = PRECISION.get(str(ref["precision"]), "16-mixed")  # "AMP (autocast + GradScaler)" = fp16
    fields["sync_batchnorm"] = ref["sync_batchnorm"]

    recipes = []
    for aug in ref["augmentations"]:
        assert aug.get("equalization_prob", 0.0) == 0.0, "no preset source equalises"
        recipe = {ours: aug[theirs] for theirs, ours in AUGMENT_KEYS.items()}
        recipe["interpolation"] = aug.get("interpolation", SOURCE_INTERPOLATION)
        if recipe["random_resized_crop"]:
            recipe["scale"] = list(recipe["scale"])
        else:
            del recipe["scale"]
        recipes += [recipe] * aug["num_crops"]
    fields["augment"] = recipes[: fields["views.num_views"]] if len(recipes) > fields["views.num_views"] else recipes

    linear = ref.get("linear_eval")
    if isinstance(linear, dict):
        devices = linear.get("num_gpus", 1)
        fields["linear"] = {
            "optimizer": linear["optimizer"],
            "lr": linear.get("lr_effective", linear.get("lr_head_default", linear.get("lr_classifier"))),
            "weight_decay": float(linear["weight_decay"]),
            "batch_size": linear.get("batch_per_gpu", linear.get("batch_size")) * devices,
            "epochs": linear["epochs"],
            "scheduler": "step" if linear["scheduler"] == "step" else "cosine",
        }
        fields["linear"]["head"] = "linear"  # every source's head is a plain Linear (see SOURCE_INTERPOLATION)
        fields["linear"]["precision"] = PRECISION[str(linear.get("precision", "32"))]  # official scripts: no autocast
        if linear["optimizer"] == "sgd":
            fields["linear"]["momentum"] = linear["momentum"]
        if linear["scheduler"] == "step":
            fields["linear"].update(lr_decay_steps=linear["lr_decay_steps"], gamma=linear["gamma"])
    else:
        fields["linear"] = None
    return fields


def reported_top1(key: str, views: int) -> float | None:
    acc = source_block(key).get("reported_accuracy")
    if not isinstance(acc, dict):
        return None
    for name in ("acc1", "acc1_online", "top1", "resnet50_top1"):
        if name in acc:
            return acc[name]
    return acc.get(f"views_{views}", {}).get("top1")


def preset_fields(cfg) -> dict:
    """The same canonical fields, read out of a composed config."""
    method = cfg.method._target_.rsplit(".", 1)[1]
    fields = {
        "backbone.name": cfg.backbone.get("name"),
        "backbone.cifar_stem": cfg.backbone.get("cifar_stem"),
        "backbone.zero_init_residual": cfg.backbone.get("zero_init_residual"),
    }
    if str(cfg.backbone.get("name", "")).startswith("vit_"):  # a timm ViT (frossl_lit.models.timm_backbone)
        fields.update({f"backbone.{k}": cfg.backbone.get(k) for k in VIT_FIELDS}, **{"backbone.name": "vit"})
    heads = {"projector": cfg.method.projector, "predictor": cfg.method.get("predictor")}
    for name, head in heads.items():
        if head is None:
            continue
        fields.update({
            f"{name}.hidden_dims": list(head.hidden_dims),
            f"{name}.hidden_bias": head.get("hidden_bias", True),
            f"{name}.last_bias": head.get("last_bias", True),
            f"{name}.hidden_norm": head.get("hidden_norm", True),
            f"{name}.last_norm": head.get("last_norm", False),
        })
    fields["projector.out_dim"] = cfg.method.projector.out_dim
    if heads["predictor"] is not None:
        fields["predictor.static_lr"] = bool(cfg.method.get("predictor_static_lr", False))
    if cfg.backbone.get("cifar_stem"):
        fields["backbone.stem_padding"] = cfg.backbone.stem_padding
    if method == "FroSSL":
        fields.update({k: cfg.method[k.split(".")[1]] for k in ("loss.invariance_weight", "loss.formulation", "loss.balance_views")})
    elif method == "VICReg":
        fields.update({k: cfg.method[k.split(".")[1]] for k in ("loss.invariance_weight", "loss.variance_weight", "loss.covariance_weight")})
    elif method.lower() in LOSS_FIELDS:
        fields.update({f"loss.{ours}": cfg.method[ours] for ours, _ in LOSS_FIELDS[method.lower()]})
    else:
        fields.update({k: cfg.method[k.split(".")[1]] for k in ("loss.off_diagonal_weight", "loss.scale")})
    fields["views.num_views"], fields["views.small_views"] = cfg.augment.num_views, cfg.augment.small_views
    fields["loss.global_batch"] = cfg.method.get("global_batch")
    probe = cfg.callbacks.get("probe")
    fields["probe"] = None if probe is None else {
        "head": probe.get("head"), "views": probe.get("views"), "lr": probe.get("lr"),
        "optimizer": probe.optimizer if isinstance(probe.optimizer, str) else "own"}
    fields["seed"] = cfg.seed
    fields["batch.per_device"] = cfg.data.batch_size
    fields["batch.devices"] = cfg.trainer.devices * cfg.trainer.num_nodes
    opt, sched = cfg.schedule.optimizer, cfg.schedule.lr_scheduler
    fields.update({
        "optimizer.name": {"timm.optim.Lars": "lars", "torch.optim.SGD": "sgd", "torch.optim.Adam": "adam",
                           "torch.optim.AdamW": "adamw"}.get(opt._target_, opt._target_),
        "optimizer.lr": opt.lr,
        "optimizer.lr_reference_batch": cfg.schedule.get("lr_reference_batch"),
        "optimizer.weight_decay": opt.weight_decay,
        "optimizer.eta": opt.get("trust_coeff"),
        "optimizer.clip_lr": opt.get("trust_clip"),
        "optimizer.momentum": opt.get("momentum"),
        "optimizer.exclude_bias_n_norm": not cfg.schedule.get("decay_bias_and_norm", False),  # optim.param_groups
        "optimizer.no_decay_lr_scale": cfg.schedule.get("no_decay_lr_scale", 1.0),
        "scheduler.warmup_epochs": sched.warmup_epochs,
        "scheduler.warmup_start_lr": float(sched.get("warmup_start_lr") or 0.0),
    })
    if sched.get("min_lr") is None:
        fields["scheduler.final_fraction"] = sched.final_fraction
    else:
        fields["scheduler.min_lr"] = float(sched.min_lr)
    fields["max_epochs"] = cfg.schedule.max_epochs
    fields["precision"] = cfg.trainer.precision
    fields["sync_batchnorm"] = cfg.trainer.sync_batchnorm
    recipes = [OmegaConf.to_container(r, resolve=True) for r in cfg.augment.recipes]
    augment = []
    for view in range(cfg.augment.num_views):
        recipe = vars(ViewRecipe(**recipes[view % len(recipes)]))
        picked = {field: recipe[field] for field in (*AUGMENT_KEYS.values(), "interpolation")}
        picked["scale"] = list(picked["scale"])
        if not picked["random_resized_crop"]:
            del picked["scale"]
        augment.append(picked)
    fields["augment"] = augment
    linear = cfg.get("linear_eval")
    fields["linear"] = None if linear is None else {
        k: (list(v) if k == "lr_decay_steps" else v) for k, v in OmegaConf.to_container(linear).items()
    }
    return fields


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def compose_preset(preset: str):
    return compose_raw([f"experiment={preset}"])


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_equals_its_published_source(preset):
    cfg = compose_preset(preset)
    meta = cfg.preset
    method = preset.split("_")[0] if not preset.startswith("barlow_twins") else "barlow_twins"
    assert meta.source in {f"{entry}.{variant}" for entry, variants in REFERENCE.items() if isinstance(variants, dict) for variant in variants}
    expected, ours = expected_fields(meta.source, method), preset_fields(cfg)
    deviations = dict(meta.get("deviations") or {})
    assert set(deviations) <= set(expected), f"{preset}: deviations name unknown fields {set(deviations) - set(expected)}"
    for field, reason in deviations.items():
        assert isinstance(reason, str) and len(reason) > 20, f"{preset}: deviation {field} needs its reason"
        assert not _same(ours[field], expected[field]), f"{preset}: {field} is listed as a deviation but equals the source"
    mismatches = {f: (ours.get(f), expected[f]) for f in expected if f not in deviations and not _same(ours.get(f), expected[f])}
    assert not mismatches, f"{preset} differs from {meta.source} (ours, source): {mismatches}"
    assert _same(expected_accuracy(meta), reported_top1(meta.source, expected["views.num_views"])), preset


def expected_accuracy(meta) -> float | None:
    """``preset.reported_top1``: a number, or ``{top1, measured_with, note}`` where the source's figure was measured
    with another preset's settings, which must then report the same figure from another source."""
    reported = meta.get("reported_top1")
    if not OmegaConf.is_dict(reported):
        return reported
    assert len(reported.note) > 20, f"{reported}: say what the run behind the figure had"
    if reported.measured_with is not None:  # null: no preset reproduces that run (the note says why)
        other = compose_preset(reported.measured_with).preset
        assert other.reported_top1 == reported.top1 and other.source != meta.source, reported
    return reported.top1


def test_every_source_with_a_complete_transcription_has_a_preset():
    covered = {compose_preset(p).preset.source for p in PRESETS}
    complete = {
        f"{entry}.{variant}" for entry, variants in REFERENCE.items() if not entry.startswith("_")
        for variant, block in variants.items() if isinstance(block, dict) and "backbone" in block
    }
    assert complete <= covered, f"sources without a preset: {sorted(complete - covered)}"


def test_linear_from_run_takes_the_presets_protocol_and_the_command_line_wins():
    from frossl_lit.linear import protocol

    run_cfg = compose_preset("frossl_cifar10")
    evaluate = compose_raw(["linear=from_run", "ckpt=x"], "evaluate")
    settings = protocol(evaluate.linear, run_cfg, ["linear=from_run", "linear.epochs=3"])
    assert settings.optimizer == "adam" and settings.lr == 0.001 and list(settings.lr_decay_steps) == [40, 80]
    assert settings.epochs == 3 and settings.augment is True  # the command line, and the standard fallback
    standard = compose_raw(["ckpt=x"], "evaluate").linear
    assert protocol(standard, run_cfg, []) is standard  # linear=standard ignores what the preset published
    with pytest.raises(UserError, match=r"vicreg_cifar10\.solo_learn\) publishes no linear protocol"):
        protocol(evaluate.linear, compose_preset("vicreg_cifar10"), [])


def test_the_loss_scope_and_seed_are_compared_where_a_source_sets_them():
    """Multi-GPU sources fix over what batch the loss runs (tests/reference/ddp_scope.yaml); one device leaves it
    free; the solo-family sources seed every run with 5. A preset that drops either differs from its source."""
    multi = expected_fields("frossl_imagenet100.frossl_repo", "frossl")
    assert multi["loss.global_batch"] is False and multi["seed"] == 5
    assert expected_fields("vicreg_imagenet100.solo_learn", "vicreg")["loss.global_batch"] is True
    assert "loss.global_batch" not in expected_fields("frossl_cifar10.frossl_repo", "frossl")
    assert "seed" not in expected_fields("vicreg_imagenet.official", "vicreg")
    exact = preset_fields(compose_raw(["experiment=frossl_imagenet100", "method.global_batch=true", "seed=0"]))
    assert (exact["loss.global_batch"], exact["seed"]) != (multi["loss.global_batch"], multi["seed"])
