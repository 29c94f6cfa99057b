"""Values a user can mistype, checked on the composed config before anything heavy runs.

:func:`check_config` runs first in ``train()``: before seeding, before the data is read and before the kNN pass at
initialisation. Each failure is one :class:`~frossl_lit.runtime.errors.UserError` whose message starts with the config
key and its value, says what the value must be and how to fix it; the entry point prints it alone and exits 2.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from frossl_lit.config import CONF_DIR
from frossl_lit.data.stream import FORMATS
from frossl_lit.runtime.errors import UserError

_PROBABILITIES = ("hflip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")


def _fail(key: str, value: Any, must: str, fix: str) -> None:
    raise UserError(f"{key}={value!r} {must}; {fix}")


def _check(cfg: DictConfig, key: str, ok: Callable[[Any], bool], must: str, fix: str) -> None:
    """Fail with ``key``'s value unless ``ok(value)``; an absent key passes (its group may not have it)."""
    node, _, leaf = key.rpartition(".")
    parent = cfg
    for part in filter(None, node.split(".")):
        if isinstance(parent, ListConfig) and part.isdigit() and int(part) < len(parent):
            parent = parent[int(part)]
        else:
            parent = parent.get(part) if isinstance(parent, DictConfig) else None
        if parent is None:
            return
    if not isinstance(parent, DictConfig) or leaf not in parent:
        return
    value = parent[leaf]
    try:
        good = ok(value)
    except TypeError:
        good = False
    if not good:
        _fail(key, value, must, fix)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def view_range(method_target: str) -> tuple[int, int | None]:
    """The (min, max) view count the method class declares (``SSLMethod.views_supported``)."""
    return getattr(get_class(method_target), "views_supported", (2, None))


def _check_views(cfg: DictConfig) -> None:
    augment, method = cfg.get("augment"), cfg.get("method")
    if augment is None or method is None or "_target_" not in method:
        return
    _check(cfg, "augment.num_views", _positive_int, "must be a whole number of views >= 1", "e.g. augment.num_views=2")
    _check(cfg, "augment.small_views", lambda v: isinstance(v, int) and v >= 0, "must be >= 0", "e.g. augment.small_views=0")
    low, high = view_range(method._target_)
    total = augment.num_views + augment.get("small_views", 0)
    name = method._target_.rsplit(".", 1)[-1]
    if total < low or (high is not None and total > high):
        allowed = f"exactly {low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
        _fail(
            "augment.num_views", augment.num_views,
            f"gives {total} views in all, but {name} takes {allowed}",
            f"set augment.num_views={low}" + ("" if high == low else " or more") + (" and augment.small_views=0" if augment.get("small_views") else ""),
        )


def _check_recipe(cfg: DictConfig, key: str) -> None:
    for name in _PROBABILITIES:
        _check(cfg, f"{key}.{name}", lambda v: _number(v) and 0 <= v <= 1, "is a probability: it must lie in [0, 1]", f"e.g. {key}.{name}=0.5")
    _check(
        cfg, f"{key}.scale",
        lambda v: isinstance(v, ListConfig) and len(v) == 2 and all(map(_number, v)) and 0 < v[0] <= v[1] <= 1,
        "must be [min, max] with 0 < min <= max <= 1 (fractions of the image area)", f"e.g. {key}.scale=[0.08,1.0]",
    )
    _check(cfg, f"{key}.size", _positive_int, "must be a positive number of pixels", f"e.g. {key}.size=32")
    _check(cfg, f"{key}.hue", lambda v: _number(v) and 0 <= v <= 0.5, "must lie in [0, 0.5]", f"e.g. {key}.hue=0.1")


def _check_preset_method() -> None:
    """An experiment preset named ``<method>_<dataset>…`` sets that method's weights (``method.*``): with another
    ``method=`` they would land on that method (VICReg given FroSSL's λ) or fail to instantiate. Experiments named
    otherwise (a user's own) are left alone."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    choices = HydraConfig.get().runtime.choices
    experiment, method = choices.get("experiment"), choices.get("method")
    if not experiment or experiment == "null" or not method:
        return
    conf = CONF_DIR
    methods = sorted((p.stem for p in (conf / "method").glob("*.yaml")), key=len, reverse=True)
    own = next((m for m in methods if experiment.startswith(f"{m}_")), None)
    if own is None or own == method:
        return
    sibling = f"{method}_{experiment[len(own) + 1:]}"
    fix = (f"use experiment={sibling}, the same preset for {method}" if (conf / "experiment" / f"{sibling}.yaml").exists()
           else f"drop method= to train the preset's own method ({own})")
    _fail("method", method, f"is not the method experiment={experiment} sets its weights for", fix)


def check_config(cfg: DictConfig) -> None:
    """Raise one :class:`UserError` for the first value a run cannot use (see the module docstring)."""
    _check_preset_method()
    _check(cfg, "seed", _seed, "must be a whole number in [0, 2**32)", "e.g. seed=0")
    batch_fix = "the batch per device, e.g. data.batch_size=256"
    _check(cfg, "data.batch_size", _positive_int, "must be a positive whole number", batch_fix)
    _check(cfg, "data.batch_size", lambda v: v >= 2, "is too small: BatchNorm needs at least 2 images per batch", batch_fix)
    _check(cfg, "data.image_size", _positive_int, "must be a positive number of pixels", "e.g. data.image_size=16")
    _check(cfg, "data.eval_batch_size", _positive_int, "must be a positive whole number", "e.g. data.eval_batch_size=512")
    _check(cfg, "data.num_workers", lambda v: isinstance(v, int) and v >= 0, "must be >= 0", "e.g. data.num_workers=4")
    for key in ("data.holdout_fraction", "data.val_fraction", "data.tune_fraction"):
        _check(cfg, key, lambda v: _number(v) and 0 <= v < 1, "is a fraction: it must lie in [0, 1)", f"e.g. {key}=0.1")
    _check(cfg, "data.train_fraction", lambda v: _number(v) and 0 < v <= 1, "is a fraction: it must lie in (0, 1]", "e.g. data.train_fraction=1.0")
    _check(cfg, "data.format", lambda v: v in FORMATS, f"must be {' or '.join(FORMATS)}", "e.g. data.format=litdata data.stream=DIR")
    if cfg.get("data", {}).get("format") == "litdata":
        _check(cfg, "data.stream", lambda v: isinstance(v, str) and v != "", "must name the stream to read with data.format=litdata",
               "write one with python -m frossl_lit.prepare data=<dataset> out=DIR, then data.stream=DIR")

    _check_views(cfg)
    recipes = cfg.get("augment", {}).get("recipes")
    if isinstance(recipes, ListConfig):
        if len(recipes) == 0:
            _fail("augment.recipes", [], "is empty", "give at least one view recipe (see conf/augment/)")
        for index in range(len(recipes)):
            _check_recipe(cfg, f"augment.recipes.{index}")
    if cfg.get("augment", {}).get("small_recipe") is not None:
        _check_recipe(cfg, "augment.small_recipe")

    trainer = cfg.get("trainer", {})
    max_steps = trainer.get("max_steps", -1)
    _check(cfg, "trainer.max_steps", lambda v: isinstance(v, int) and (v == -1 or v >= 1), "must be -1 (no limit) or >= 1", "e.g. trainer.max_steps=-1")
    if not trainer.get("fast_dev_run"):
        _check(
            cfg, "trainer.max_epochs",
            lambda v: v is None or (isinstance(v, int) and (v >= 1 or (v == -1 and max_steps >= 1))),
            "must be >= 1 (or -1 with trainer.max_steps set): the run would train nothing",
            "e.g. trainer.max_epochs=10 (or schedule.max_epochs, which it follows)",
        )

    knn = cfg.get("callbacks", {}).get("knn")
    if knn is not None:
        _check(cfg, "callbacks.knn.k", _positive_int, "must be a positive number of neighbours", "e.g. callbacks.knn.k=20")
        _check(cfg, "callbacks.knn.temperature", lambda v: _number(v) and v > 0, "must be > 0", "e.g. callbacks.knn.temperature=0.07")
        _check(cfg, "callbacks.knn.every_n_epochs", _positive_int, "must be >= 1", "e.g. callbacks.knn.every_n_epochs=1 (or callbacks.knn=null)")
        _check(cfg, "callbacks.knn.bank_size", lambda v: v is None or _positive_int(v), "must be a positive number of images or null (all of them)",
               "e.g. callbacks.knn.bank_size=10000")
        bank = knn.get("bank_size")
        _check(cfg, "callbacks.knn.k", lambda v: not _positive_int(bank) or v <= bank,
               f"is more than callbacks.knn.bank_size={bank}, the images in the kNN bank", "e.g. callbacks.knn.k=20")
    callbacks = cfg.get("callbacks", {})
    monitor = (callbacks.get("checkpoint_best") or {}).get("monitor") or ""
    for prefix, producer in (("val/probe", "probe"), ("val/knn", "knn")):
        if monitor.startswith(prefix) and callbacks.get(producer) is None:
            _fail("callbacks.checkpoint_best.monitor", monitor, f"is logged by callbacks.{producer}, which is off",
                  "monitor what runs (e.g. callbacks.checkpoint_best.monitor=val/knn_top1) or set callbacks.checkpoint_best=null")
    _check(cfg, "schedule.optimizer.lr", lambda v: _number(v) and v > 0, "must be a positive finite learning rate", "e.g. schedule.optimizer.lr=0.3")
    _check(cfg, "method.invariance_weight", lambda v: _number(v) and v >= 0, "must be >= 0", "e.g. method.invariance_weight=1.0")
    _check_method_hyperparameters(cfg)
    warn_slow_precision(cfg)


def _seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def warn_slow_precision(cfg: DictConfig) -> None:
    """fp16 on a CPU runs, but about 20x slower than fp32 (no fp16 kernels, every op converts): one line on stderr,
    not a refusal (a CPU test of an fp16 setting is legitimate). Only the first process of a DDP run says it."""
    trainer = cfg.get("trainer") or {}
    precision, accelerator = str(trainer.get("precision")), str(trainer.get("accelerator", "auto"))
    if precision not in ("16", "16-mixed", "16-true", "half") or os.environ.get("LOCAL_RANK", "0") != "0":
        return
    import torch

    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        print(f"frossl_lit: warning: trainer.precision={precision} on a CPU is ~20x slower than 32-true (no fp16 kernels); "
              f"use trainer.precision=32-true, or bf16-mixed on a CPU with native bf16", file=sys.stderr)


def check_evaluation(cfg: DictConfig, name: str) -> None:
    """The settings of an offline evaluation (``conf/evaluate.yaml``; ``name``: knn or linear) a user can mistype;
    the bank size ``knn.k`` must not exceed is checked once the data is set up (:mod:`frossl_lit.knn`)."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise UserError("ckpt is not set: name the checkpoint to evaluate, e.g. ckpt=<run dir>/checkpoints/last.ckpt "
                        "(or best-*.ckpt) of a frossl_lit.train run")
    _check(cfg, "seed", _seed, "must be a whole number in [0, 2**32)", "e.g. seed=0")
    if name == "knn":
        _check(cfg, "knn.k", _positive_int, "must be a positive number of neighbours", "e.g. knn.k=20")
        _check(cfg, "knn.temperature", lambda v: _number(v) and v > 0, "must be > 0", "e.g. knn.temperature=0.07")


def _global_batch(cfg: DictConfig) -> int | None:
    """data.batch_size × devices × nodes, where all three are numbers (``devices=auto`` is known only at run time)."""
    trainer = cfg.get("trainer") or {}
    parts = [cfg.get("data", {}).get("batch_size"), trainer.get("devices", 1), trainer.get("num_nodes", 1)]
    return math.prod(parts) if all(_positive_int(p) for p in parts) else None


def _check_method_hyperparameters(cfg: DictConfig) -> None:
    """Temperatures, target-network momenta and queue sizes of the methods that have them."""
    _check(cfg, "method.temperature", lambda v: _number(v) and v > 0, "must be a temperature > 0", "e.g. method.temperature=0.2")
    for key in ("momentum_start", "momentum_end"):
        _check(cfg, f"method.{key}", lambda v: _number(v) and 0 <= v <= 1, "is a momentum: it must lie in [0, 1]",
               f"e.g. method.{key}={0.99 if key == 'momentum_start' else 1.0}")
    method = cfg.get("method") or {}
    target = method.get("_target_")
    if target and getattr(get_class(target), "requires_predictor", False) and method.get("predictor") is None:
        name = target.rsplit(".", 1)[-1]
        _fail("method.predictor", None, f"is needed: {name} predicts one branch from the other",
              f"drop the method.predictor=null override: conf/method/{name.lower()}.yaml sets one (method.predictor.hidden_dims=[...] changes its width)")
    if _number(method.get("momentum_start")) and _number(method.get("momentum_end")) and method.momentum_start > method.momentum_end:
        _fail("method.momentum_start", method.momentum_start, f"exceeds method.momentum_end={method.momentum_end}",
              "the momentum grows towards its end value, e.g. method.momentum_start=0.99 method.momentum_end=1.0")
    _check(cfg, "method.momentum_schedule", lambda v: v in ("cosine", "constant"), "must be cosine or constant", "e.g. method.momentum_schedule=cosine")
    global_batch = _global_batch(cfg)
    _check(cfg, "method.queue_size", lambda v: _positive_int(v) and (global_batch is None or v >= global_batch),
           f"must be a whole number of keys of at least one global batch ({global_batch or 'data.batch_size × devices'})",
           f"e.g. method.queue_size={max(65536, global_batch or 0)}")
