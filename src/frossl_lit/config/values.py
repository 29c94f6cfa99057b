"""Values of single config keys a user can mistype that no constructor of ours takes, checked on the composed
config before anything heavy runs.

Each failure is one :class:`~frossl_lit.runtime.errors.UserError` whose message starts with the key and its value,
says what the value must be and how to fix it (:func:`frossl_lit.runtime.errors.refuse`). Checked here:

- values Lightning, torch or the training loop read: ``seed``, ``trainer.max_epochs`` / ``max_steps``,
  ``schedule.optimizer.lr`` (torch refuses a negative one only once training starts), ``data.num_workers``;
- values our constructors take without checking them: ``data.batch_size``, ``data.eval_batch_size``,
  ``data.image_size``;
- the settings of an offline evaluation (:func:`check_evaluation`).

A value a constructor takes is checked by that constructor alone, with a message of the same form that starts with
its whole key (:func:`frossl_lit.runtime.errors.require`), when ``frossl_lit.train.build`` instantiates it, before any
data is read: ``augment.recipes.<i>.*`` and ``augment.small_recipe.*``
(:class:`~frossl_lit.data.augment.ViewRecipe`, the key from :class:`~frossl_lit.data.augment.ViewAugment`),
``callbacks.knn.*`` (the kNN monitor), ``method.temperature``, ``method.momentum_*``, ``method.predictor``,
``method.invariance_weight`` (the methods), ``data.val_fraction``, ``data.format``, ``method.formulation``, ….
``build`` re-raises such a :class:`UserError` unwrapped from Hydra's ``InstantiationException``
(:func:`frossl_lit.runtime.errors.unwraps_user_errors`); a constructor's ``ValueError`` that starts with its key is
one line through :func:`frossl_lit.runtime.errors.exits_on_user_error`. Checks that span config groups are
:mod:`frossl_lit.config.checks`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from frossl_lit.runtime.errors import UserError, number, positive_int, refuse, require

__all__ = ["check", "check_evaluation", "check_values", "number", "positive_int", "refuse", "warn_slow_precision"]

_ABSENT = object()


def check(cfg: DictConfig, key: str, ok: Callable[[Any], bool], must: str, fix: str) -> None:
    """Refuse ``key``'s value (a dotted path, list indices included) unless ``ok(value)``; an absent key passes
    (its group may not have it)."""
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is not _ABSENT:
        require(key, value, ok, must, fix)


def _seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def check_values(cfg: DictConfig) -> None:
    """Refuse the first single value of a training config a run cannot use (see the module docstring)."""
    check(cfg, "seed", _seed, "must be a whole number in [0, 2**32)", "e.g. seed=0")
    batch_fix = "the batch per device, e.g. data.batch_size=256"
    check(cfg, "data.batch_size", positive_int, "must be a positive whole number", batch_fix)
    check(cfg, "data.batch_size", lambda v: v >= 2, "is too small: BatchNorm needs at least 2 images per batch", batch_fix)
    check(cfg, "data.image_size", positive_int, "must be a positive number of pixels", "e.g. data.image_size=16")
    check(cfg, "data.eval_batch_size", positive_int, "must be a positive whole number", "e.g. data.eval_batch_size=512")
    check(cfg, "data.num_workers", lambda v: isinstance(v, int) and v >= 0, "must be >= 0", "e.g. data.num_workers=4")
    _check_trainer(cfg)
    check(cfg, "schedule.optimizer.lr", lambda v: number(v) and v > 0, "must be a positive finite learning rate", "e.g. schedule.optimizer.lr=0.3")


def _check_trainer(cfg: DictConfig) -> None:
    max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1)
    check(cfg, "trainer.max_steps", lambda v: isinstance(v, int) and (v == -1 or v >= 1), "must be -1 (no limit) or >= 1", "e.g. trainer.max_steps=-1")
    if not OmegaConf.select(cfg, "trainer.fast_dev_run"):
        check(
            cfg, "trainer.max_epochs",
            lambda v: v is None or (isinstance(v, int) and (v >= 1 or (v == -1 and max_steps >= 1))),
            "must be >= 1 (or -1 with trainer.max_steps set): the run would train nothing",
            "e.g. trainer.max_epochs=10 (or schedule.max_epochs, which it follows)",
        )


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
    check(cfg, "seed", _seed, "must be a whole number in [0, 2**32)", "e.g. seed=0")
    if name == "knn":
        check(cfg, "knn.k", positive_int, "must be a positive number of neighbours", "e.g. knn.k=20")
        check(cfg, "knn.temperature", lambda v: number(v) and v > 0, "must be > 0", "e.g. knn.temperature=0.07")
