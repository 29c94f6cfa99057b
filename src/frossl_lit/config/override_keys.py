"""Whether one key override fits a composed config, and the fix to suggest where it does not
(:mod:`frossl_lit.config.overrides` parses the command line and composes the configs this judges against).

:func:`problem` follows the override's dotted key through the config: an existing key must not be added again
(``+key``); a missing one is a typo of the closest existing key (``trainer.max_epoch`` → ``trainer.max_epochs``),
or, added with ``+``, must be read by something: an argument of the constructor of the node it is added to (its
``_target_``, whose signature is read; a frossl_lit class's ``**kwargs`` followed up its base classes), a new entry
of a node whose entries are all instantiated (``+callbacks.mine._target_=...``) or iterated (``study.methods``).
What it cannot judge (a list, an interpolation, a node inside one an ancestor's constructor receives whole) passes.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator
from fnmatch import fnmatch

from hydra.core.override_parser.types import Override
from hydra.utils import get_object
from omegaconf import DictConfig

# nodes whose new entries the code iterates over although they have no _target_ (per top-level config)
_ITERATED = {"compare": ("study.methods", "study.methods.*.search")}
# nodes whose keys another node's constructor receives: train.build passes ``model.*`` to the method
_PASSED_TO = {"model": "method"}


def _walk(cfg: DictConfig, parts: list[str]) -> tuple[str, DictConfig, int]:
    """Follow ``parts`` from ``cfg``: ``("exists", …)``, ``("missing", node, i)`` where ``node`` (a dict) lacks
    ``parts[i]``, or ``("unsure", …)`` where the path leaves the dicts (a list, an interpolation, a null, a value)."""
    node = cfg
    for index, part in enumerate(parts):
        if not isinstance(node, DictConfig) or node._is_none() or node._is_interpolation():
            return "unsure", node, index
        if part not in node.keys():
            return "missing", node, index
        node = node._get_node(part)
    return "exists", node, len(parts)


def problem(override: Override, cfg: DictConfig, config_name: str) -> str | None:
    """What is wrong with a key override in ``cfg``, or ``None``."""
    key, line = override.key_or_group, override.input_line
    value = line.split("=", 1)[1] if "=" in line else "..."
    parts = key.split(".")
    state, node, index = _walk(cfg, parts)
    if state == "unsure":
        return None
    if state == "exists":
        return f"{line}: {key} is already a setting; write {key}={value} (without +)" if override.is_add() else None
    path, name = parts[:index], parts[index]
    if override.is_add() or override.is_force_add():
        return _unread(cfg, path, node, name, line, value, config_name)
    close = _close_key(cfg, key)
    if override.is_delete():
        return f"{key} is not a setting, so {line} deletes nothing" + (f" (did you mean ~{close}?)" if close else "")
    if close:
        return f"{key} is not a setting (did you mean {close}?); write {close}={value}"
    if _unread(cfg, path, node, name, line, value, config_name) is None:
        return f"{key} is not a setting; to add a new key write +{key}={value}"
    return f"{key} is not a setting; print the settings with --cfg job"


def _unread(cfg: DictConfig, path: list[str], node: DictConfig, name: str, line: str, value: str, config_name: str) -> str | None:
    """Why nothing would read a new key ``name`` added to ``node`` (at ``path``), or ``None`` if something does."""
    where = ".".join(path)
    if any(fnmatch(where, pattern) for pattern in _ITERATED.get(config_name, ())):
        return None
    entries = [node._get_node(k) for k in node.keys()]
    if where and entries and all(e._is_none() or (isinstance(e, DictConfig) and "_target_" in e) for e in entries):
        return None  # a new entry of callbacks / logger: instantiated like its siblings
    holder = cfg.get(_PASSED_TO[where]) if config_name == "train" and where in _PASSED_TO else node
    if not isinstance(holder, DictConfig) or "_target_" not in holder:
        if _has_target_above(cfg, path):
            return None  # inside a node an ancestor's constructor receives whole: cannot tell
        key = line.lstrip("+").split("=", 1)[0]
        close = _close_key(cfg, key)
        or_entry = " or is a new callbacks/logger entry" if config_name == "train" else ""
        return (f"{line}: nothing reads {key}" + (f" (did you mean {close}?)" if close else "") + "; a new key goes into a "
                f"node with a _target_, as an argument of its constructor{or_entry}; print the settings with --cfg job")
    target = holder._get_node("_target_")
    if target._is_interpolation():
        return None
    target = str(target._value())
    names = _parameters(target, with_readers=where == "data")
    if names is None or name in names:
        return None
    close = difflib.get_close_matches(name, sorted(names), n=1)
    if close:
        fix = f"{where}.{close[0]}={value}" if close[0] in node.keys() else f"+{where}.{close[0]}={value}"
        return f"{line}: {name} is not an argument of {target} (did you mean {where}.{close[0]}?); write {fix}"
    return f"{line}: {name} is not an argument of {target}; it takes {', '.join(sorted(names))}"


def _has_target_above(cfg: DictConfig, path: list[str]) -> bool:
    """Whether a node between the root and the node at ``path`` (both excluded) has a ``_target_``."""
    node = cfg
    for part in path[:-1]:
        node = node._get_node(part)
        if isinstance(node, DictConfig) and "_target_" in node:
            return True
    return False


def _parameters(target: str, with_readers: bool = False) -> set[str] | None:
    """The keyword arguments ``target`` (a class or function) takes, or ``None`` when it takes any or cannot be
    imported. A frossl_lit class's ``**kwargs`` go to its base class (followed up the MRO); anyone else's may go
    anywhere (a logger's to ``wandb.init``). ``with_readers``: also those of the DataModules that read the other
    data formats from the same node (``data.format=litdata``: :data:`frossl_lit.data.formats.READERS`)."""
    try:
        found = get_object(target)
    except Exception:
        return None
    owners = [c for c in found.__mro__ if "__init__" in vars(c)] if inspect.isclass(found) else [found]
    names: set[str] = set()
    for owner in owners:
        try:
            parameters = inspect.signature(owner.__init__ if inspect.isclass(owner) else owner).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
        if not inspect.isclass(owner) or not owner.__module__.startswith("frossl_lit"):
            return None
    if with_readers:
        from frossl_lit.data.formats import READERS

        for reader in READERS.values():
            more = _parameters(reader)
            if more is None:
                return None
            names |= more
    return names


def _paths(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Every key of ``node`` as a dotted path, nested ones included (not Hydra's own)."""
    for key in node.keys():
        path = f"{prefix}{key}"
        if path == "hydra":
            continue
        yield path
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
            yield from _paths(child, f"{path}.")


def _close_key(cfg: DictConfig, key: str) -> str | None:
    """The existing key (dotted path) closest to ``key``, if one is close."""
    close = difflib.get_close_matches(key, list(_paths(cfg)), n=1, cutoff=0.8)
    return close[0] if close else None
