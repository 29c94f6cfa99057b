"""A checkpoint knows the run it belongs to, and a resume either continues that run or says what differs.

Every checkpoint carries the run's resolved config (:class:`RunRecord`, a callback whose state Lightning saves
with the checkpoint). Before a run resumes, or an offline command evaluates a checkpoint, :func:`check_resume`
compares it with the config at hand:

- **another run's shape** — the method, the backbone, the projector or predictor, or the dataset differ: one line
  naming both, always refused (the weights would not fit, or would silently continue as another method);
- **the schedule** — ``schedule.*``, ``trainer.max_epochs`` / ``max_steps``, the batch or the device count
  (which set the steps per epoch): refused naming the key, unless ``resume.override_schedule=true``, which
  applies the new schedule *as if the run had been configured with it from the start*, evaluated at the step the
  checkpoint reached (:class:`ScheduleOverride`): the learning rates, weight decay and momenta of every
  parameter group come from the new config, the optimizer keeps its accumulated state. Extending a finished run
  (``trainer.max_epochs=12`` on one that finished 8) thus continues the 12-epoch schedule at epoch 8;
- **the method's weights** (a loss weight, a temperature): applied, and said in one line;
- **a finished run** resumed with the same length: refused (nothing to train).

Checkpoints written before the record existed are checked by their weights' shapes only (:func:`check_shapes`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from frossl_lit.runtime.errors import UserError

RECORD_KEY = "RunRecord"
# the keys that set a run's shape (a checkpoint of another shape cannot continue) and its schedule
SHAPE_KEYS = ("method._target_", "method.projector", "method.predictor", "backbone", "data._target_")
SCHEDULE_KEYS = ("schedule", "trainer.max_epochs", "trainer.max_steps", "data.batch_size", "trainer.devices",
                 "trainer.num_nodes", "trainer.accumulate_grad_batches")


class RunRecord(L.Callback):
    """Saves the run's resolved config with every checkpoint (``checkpoint["callbacks"]["RunRecord"]``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @property
    def state_key(self) -> str:
        return RECORD_KEY

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The record of the run as it is now is kept (a resumed run may have changed its schedule)."""


def resolved(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def recorded_config(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved config a checkpoint was written with, or None (written before records existed)."""
    return ((checkpoint.get("callbacks") or {}).get(RECORD_KEY) or {}).get("config")


def _select(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for name, item in value.items() for k, v in _leaves(item, f"{prefix}.{name}").items()}
    return {prefix: value}


def differences(old: dict[str, Any], new: dict[str, Any], key: str) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every leaf under ``key`` that differs."""
    before, after = _leaves(_select(old, key), key), _leaves(_select(new, key), key)
    return [(k, before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(config: dict[str, Any]) -> str:
    target = str(_select(config, "method._target_") or "?")
    return target.rsplit(".", 1)[-1]


def check_resume(checkpoint: dict[str, Any], cfg: DictConfig, key: str = "ckpt_path", path: str = "",
                 override_schedule: bool = False) -> list[str]:
    """Refuse a checkpoint of another shape or schedule (see the module docstring); return the notices (one line
    each) of what the resumed run changes deliberately."""
    old = recorded_config(checkpoint)
    if old is None:
        return []
    new = resolved(cfg)
    where = f"{key}={path}" if path else key
    for shape_key in SHAPE_KEYS:
        changed = differences(old, new, shape_key)
        if changed:
            name, before, after = changed[0]
            raise UserError(
                f"{where} is a checkpoint of a {_name(old)} run whose {name} is {_short(before)}, but this run's is "
                f"{_short(after)}: its weights belong to another run's shape. Resume with the checkpoint's own settings "
                f"(its run's .hydra/overrides.yaml), or start a new run without {key}")
    notices = []
    schedule_changes = [c for k in SCHEDULE_KEYS for c in differences(old, new, k)]
    if schedule_changes:
        listed = "; ".join(f"{k} {_short(a)} -> {_short(b)}" for k, a, b in schedule_changes[:3])
        if not override_schedule:
            raise UserError(
                f"{where} was trained with another schedule ({listed}); a resume restores the checkpoint's learning "
                f"rates and schedule, so the change would not apply. Add resume.override_schedule=true to apply the "
                f"new schedule from the checkpoint's step, or drop the change")
        notices.append(f"resuming with the new schedule from step {checkpoint.get('global_step')} ({listed})")
    method_changes = [c for c in differences(old, new, "method") if not any(c[0].startswith(k) for k in SHAPE_KEYS)]
    if method_changes:
        notices.append("resuming with " + "; ".join(f"{k} {_short(a)} -> {_short(b)}" for k, a, b in method_changes[:3]))
    return notices


def check_finished(checkpoint: dict[str, Any], cfg: DictConfig, key: str = "ckpt_path", path: str = "") -> None:
    """A checkpoint that ends its run's last epoch, resumed with the same length, has nothing left to train."""
    old = recorded_config(checkpoint)
    max_epochs = cfg.trainer.get("max_epochs")
    epochs_done = _epochs_done(checkpoint)
    if old is None or epochs_done is None or not isinstance(max_epochs, int) or max_epochs < 1:
        return
    if epochs_done >= max_epochs:
        raise UserError(
            f"{key}={path} ends a run that finished its {epochs_done} epochs, so trainer.max_epochs={max_epochs} "
            f"leaves nothing to train; to extend it, raise trainer.max_epochs (or schedule.max_epochs) and add "
            f"resume.override_schedule=true")


def _epochs_done(checkpoint: dict[str, Any]) -> int | None:
    """Whole epochs a checkpoint has trained (Lightning's fit-loop progress: an epoch's training part counts as
    processed once its last batch is done, which an end-of-epoch checkpoint already includes), or None."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def check_shapes(state_dict: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor], key: str, path: str) -> None:
    """One line for the first weight whose name or shape differs between a checkpoint and the model built now."""
    missing = [name for name in model_state if name not in state_dict]
    unexpected = [name for name in state_dict if name not in model_state]
    for name, tensor in model_state.items():
        if name in state_dict and tuple(state_dict[name].shape) != tuple(tensor.shape):
            raise UserError(f"{key}={path} holds {name} of shape {tuple(state_dict[name].shape)}, but this run's model "
                            f"has {tuple(tensor.shape)}: it is a checkpoint of another run's shape; resume with that "
                            f"run's settings, or start a new run without {key}")
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"holds {unexpected[0]}, which this run's model has not"
        raise UserError(f"{key}={path} {what} ({len(missing)} missing, {len(unexpected)} unexpected weights): it is a "
                        f"checkpoint of another method or backbone; resume with that run's settings, or start a new run "
                        f"without {key}")


class ScheduleOverride(L.Callback):
    """Applies the config's schedule to a resumed run (``resume.override_schedule=true``), once its optimizer and
    scheduler have been restored: see :meth:`frossl_lit.methods.base.SSLMethod.reset_schedule`."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.reset_schedule()


def check_recorded_backbone(checkpoint: dict[str, Any], run_cfg: DictConfig, key: str, path: str, config_path: str) -> None:
    """An offline command rebuilds the backbone from a run's config (``config_path``): refuse, naming both, when
    the checkpoint records another backbone than that config describes (a ``pretrain_config=`` of another run, a
    checkpoint copied into another run's directory)."""
    old = recorded_config(checkpoint)
    if old is None:
        return
    changed = differences(old, {"backbone": OmegaConf.to_container(run_cfg.backbone, resolve=True)}, "backbone")
    if changed:
        name, before, after = changed[0]
        raise UserError(f"{key}={path} was trained with {name}={_short(before)}, but {config_path} describes "
                        f"{name}={_short(after)}: evaluate it with its own run's config (pretrain_config=<its run dir>/.hydra/config.yaml)")
