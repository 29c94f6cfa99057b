"""Offline linear evaluation: ``python -m frossl_lit.linear ckpt=<run>/checkpoints/last.ckpt``.

The standard protocol on a frozen backbone: a linear classifier (after an affine-free BatchNorm, as the online
probe) trained with SGD + cosine for ``linear.epochs`` on the training images, each epoch with a fresh random
resized crop + flip (the pretraining recipe's crop scale and flip unless ``linear.crop_scale`` is set;
``linear.augment=false``: on fixed un-augmented features, much faster), then top-1 / top-5
on the validation split. Settings: conf/linear/standard.yaml; ``linear.head=linear`` drops the BatchNorm (a plain
Linear, the sources' head) and ``linear.precision`` runs the backbone and the head under autocast (16-mixed:
solo-learn's linear scripts, with a gradient scaler on CUDA). ``linear=from_run`` takes the protocol the run's
preset published (its ``linear_eval`` block: e.g. Adam 1e-3 with steps at 40 and 80 for FroSSL on CIFAR);
``linear.*`` overrides on the command line still apply on top. Writes ``linear.json`` in the evaluation run dir.
"""

from __future__ import annotations

import contextlib
import sys

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from frossl_lit.config.overrides import CONF_DIR, check_command_line
from frossl_lit.data.augment import ViewRecipe
from frossl_lit.evaluation import extract_features, linear_head, linear_optimizer
from frossl_lit.evaluation.linear_head import check_head
from frossl_lit.evaluation.offline import load_pretrained, report, resolve_device, run_evaluation
from frossl_lit.runtime.errors import UserError, require

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "16")


def mixed_precision(precision, device: torch.device, key: str = "linear.precision"):
    """``(autocast context factory, gradient scaler or None)`` of the offline protocol's ``precision``, as
    Lightning's precision plugins do it (the protocol is a plain loop, not a Trainer):

    - ``32-true`` / ``32`` (default): float32, no autocast (the protocol as it always ran);
    - ``bf16-mixed``: ``torch.autocast(dtype=bfloat16)`` around the backbone and the head; no scaler;
    - ``16-mixed`` (``16``, Lightning's older name, which solo-learn's scripts use): on CUDA ``torch.autocast(dtype=float16)`` and a ``GradScaler`` (Lightning's ``MixedPrecision``);
      on a CPU, which has no fp16 autocast worth the name, bf16-mixed instead, with a warning — what Lightning does
      with ``Trainer(accelerator="cpu", precision="16-mixed")`` (lightning/pytorch/trainer/connectors/
      accelerator_connector.py, ``_check_and_init_precision``). solo-learn's linear scripts set ``precision:
      16-mixed`` (OFSkean/FroSSL@e841c57 scripts/linear/{stl10,imagenet100,tiny-imagenet}/frossl.yaml:45; its
      scripts/linear/cifar/frossl.yaml:51 says ``32``) or ``16`` (vturrisi/solo-learn@9187ea3 scripts/linear/*/*.yaml:45).

    The loss is float32 either way (autocast computes cross-entropy in float32) and the features are stored float32."""
    precision = {"16": "16-mixed", "32": "32-true"}.get(str(precision), str(precision))
    require(key, precision, lambda v: v in PRECISIONS, "must be 32-true, bf16-mixed or 16-mixed",
            f"e.g. {key}=16-mixed (solo-learn's linear scripts) or {key}=32-true")
    if precision == "32-true":
        return contextlib.nullcontext, None
    dtype = torch.float16 if precision == "16-mixed" and device.type == "cuda" else torch.bfloat16
    if precision == "16-mixed" and device.type != "cuda":
        print(f"frossl_lit: warning: {key}=16-mixed on {device.type}: no fp16 autocast there, running bf16-mixed "
              f"(as Lightning does)", file=sys.stderr)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def protocol(linear: DictConfig, run_cfg: DictConfig, command_line: list[str] | None = None) -> DictConfig:
    """The linear settings to use: ``linear`` itself, or with ``linear.from_run`` the run's ``linear_eval`` block
    over it and the command line's ``linear.*`` overrides over both."""
    if not linear.get("from_run"):
        return linear
    published = run_cfg.get("linear_eval")
    if published is None:
        preset = (run_cfg.get("preset") or {}).get("source")
        why = f"the source of its preset ({preset}) publishes no linear protocol" if preset else "it was not made from an experiment preset"
        raise UserError(f"linear=from_run: this run has no linear_eval block ({why}); use linear=standard or set linear.* on the command line")
    explicit = OmegaConf.from_dotlist([o.split(".", 1)[1] for o in command_line or [] if o.startswith("linear.")])
    return OmegaConf.merge(linear, published, explicit)


def linear_evaluation(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.seed)
    run_cfg, datamodule, backbone = load_pretrained(cfg.ckpt, cfg.data_overrides, cfg.pretrain_config)
    device = resolve_device(cfg.device)
    backbone.to(device)
    command_line = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    settings = protocol(cfg.linear, run_cfg, command_line)
    autocast, scaler = mixed_precision(settings.get("precision", "32-true"), device)
    head_kind = settings.get("head", "bn_linear")
    check_head(head_kind, "linear.head")  # a bad value: one line before any feature is computed
    train_loader, val_loader = datamodule.bank_dataloader(), datamodule.val_dataloader()
    size = datamodule.augment.eval_image_size
    recipe = datamodule.augment.recipes[0]  # crop scale and flip of the run's own recipe unless set here
    scale = tuple(settings.crop_scale) if settings.crop_scale else tuple(recipe.scale)
    crop = ViewRecipe(size=size, scale=scale, jitter_prob=0.0, grayscale_prob=0.0, hflip_prob=recipe.hflip_prob)
    augmented = lambda images: datamodule.augment.view(images, crop)  # one random view per image and epoch
    def embed(loader, transform=datamodule.augment.eval_transform, label=None):
        return extract_features(backbone, loader, transform, device, autocast(), progress=label)

    fixed = None if settings.augment else embed(train_loader, label="features")
    head = linear_head(backbone.out_dim, datamodule.num_classes, head_kind, key="linear.head").to(device)
    optimizer, scheduler = linear_optimizer(head, settings)
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(settings.epochs):
        features, labels = fixed if fixed is not None else embed(train_loader, augmented, f"epoch {epoch + 1}/{settings.epochs}")
        head.train()
        for index in torch.randperm(len(labels), generator=generator).split(settings.batch_size):
            index = index.to(device)
            with autocast():
                loss = F.cross_entropy(head(features[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        scheduler.step()
    head.eval()
    features, labels = embed(val_loader, label="validation")
    with torch.no_grad(), autocast():
        scores = head(features).float()
    protocol_used = OmegaConf.to_container(settings, resolve=True)
    return report(cfg, "linear", scores, labels, datamodule.num_classes, epochs=settings.epochs, protocol=protocol_used, augment=bool(settings.augment))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")  # absolute: see train.py
def _hydra_main(cfg: DictConfig) -> float:
    return run_evaluation("linear", linear_evaluation, cfg)


def main() -> None:
    """The command line's overrides are checked first (:mod:`frossl_lit.config.overrides`), then Hydra composes and runs."""
    check_command_line("evaluate")
    _hydra_main()


if __name__ == "__main__":
    main()
