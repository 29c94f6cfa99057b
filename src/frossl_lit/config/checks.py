"""Checks of the composed training config that span several config groups, before anything heavy runs.

:func:`check_config` runs first in ``train()``: before seeding, before the data is read and before the kNN pass at
initialisation. It refuses a combination no single constructor can see: views against the method
(``augment.num_views`` against the view counts the method's class takes), an experiment preset against the
method (``experiment=frossl_…`` with ``method=vicreg``), the best-checkpoint monitor against the callbacks that
log it, a key queue against the global batch (``data.batch_size`` × ``trainer.devices`` × ``num_nodes``), and what
a method class checks itself on the whole config (its ``check_config(cfg, global_batch)``, e.g. W-MSE's whitening
sub-batch against the batch).
Then the values of single keys (:mod:`frossl_lit.config.values`). Each failure is one
:class:`~frossl_lit.runtime.errors.UserError` whose message starts with the config key and its value, says what
the value must be and how to fix it; the entry point prints it alone and exits 2.
"""

from __future__ import annotations

import math

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from frossl_lit.config import CONF_DIR
from frossl_lit.config.values import check, check_values, positive_int, refuse, warn_slow_precision


def check_config(cfg: DictConfig) -> None:
    """Raise one :class:`UserError` for the first value a run cannot use (see the module docstring)."""
    _check_preset_method()
    check_values(cfg)
    _check_views(cfg)
    _check_monitor(cfg)
    _check_queue(cfg)
    _check_method(cfg)
    warn_slow_precision(cfg)


def view_range(method_target: str) -> tuple[int, int | None]:
    """The (min, max) view count the method class declares (``SSLMethod.views_supported``)."""
    return getattr(get_class(method_target), "views_supported", (2, None))


def _check_views(cfg: DictConfig) -> None:
    """``augment.num_views`` + ``augment.small_views`` against the view counts the method takes."""
    augment, method = cfg.get("augment"), cfg.get("method")
    if augment is None or method is None or "_target_" not in method:
        return
    check(cfg, "augment.num_views", positive_int, "must be a whole number of views >= 1", "e.g. augment.num_views=2")
    check(cfg, "augment.small_views", lambda v: isinstance(v, int) and v >= 0, "must be >= 0", "e.g. augment.small_views=0")
    low, high = view_range(method._target_)
    total = augment.num_views + augment.get("small_views", 0)
    name = method._target_.rsplit(".", 1)[-1]
    if total < low or (high is not None and total > high):
        allowed = f"exactly {low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
        refuse(
            "augment.num_views", augment.num_views,
            f"gives {total} views in all, but {name} takes {allowed}",
            f"set augment.num_views={low}" + ("" if high == low else " or more") + (" and augment.small_views=0" if augment.get("small_views") else ""),
        )


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
    refuse("method", method, f"is not the method experiment={experiment} sets its weights for", fix)


def _check_monitor(cfg: DictConfig) -> None:
    """The best checkpoint's monitor must be logged by a callback that runs."""
    monitor = OmegaConf.select(cfg, "callbacks.checkpoint_best.monitor") or ""
    for prefix, producer in (("val/probe", "probe"), ("val/knn", "knn")):
        if monitor.startswith(prefix) and OmegaConf.select(cfg, f"callbacks.{producer}") is None:
            refuse("callbacks.checkpoint_best.monitor", monitor, f"is logged by callbacks.{producer}, which is off",
                   "monitor what runs (e.g. callbacks.checkpoint_best.monitor=val/knn_top1) or set callbacks.checkpoint_best=null")


def _global_batch(cfg: DictConfig) -> int | None:
    """data.batch_size × devices × nodes, where all three are numbers (``devices=auto`` is known only at run time)."""
    parts = [OmegaConf.select(cfg, "data.batch_size"), OmegaConf.select(cfg, "trainer.devices", default=1),
             OmegaConf.select(cfg, "trainer.num_nodes", default=1)]
    return math.prod(parts) if all(positive_int(p) for p in parts) else None


def _check_queue(cfg: DictConfig) -> None:
    """A key queue (MoCo) holds at least one global batch (checked again at setup with the real world size)."""
    global_batch = _global_batch(cfg)
    target = OmegaConf.select(cfg, "method._target_")
    # a method whose queue is optional (SwAV's: ``queue_optional = True``) takes 0 for none
    optional = bool(target) and getattr(get_class(target), "queue_optional", False)
    check(cfg, "method.queue_size",
          lambda v: (optional and v == 0 and not isinstance(v, bool)) or (positive_int(v) and (global_batch is None or v >= global_batch)),
          f"must be a whole number of keys of at least one global batch ({global_batch or 'data.batch_size × devices'})"
          + (", or 0 for no queue" if optional else ""),
          f"e.g. method.queue_size={max(65536, global_batch or 0)}" if not optional else "e.g. method.queue_size=0")


def _check_method(cfg: DictConfig) -> None:
    """A method class may define ``check_config(cfg, global_batch)`` (a classmethod; ``global_batch`` is None where
    the device count is not a number) to refuse what its constructor cannot see, e.g. W-MSE's sub-batch size."""
    target = OmegaConf.select(cfg, "method._target_")
    hook = getattr(get_class(target), "check_config", None) if target else None
    if hook is not None:
        hook(cfg, _global_batch(cfg))
