"""Command-line overrides checked before Hydra composes: a mistyped group choice or key is one line, not a stack.

Hydra's own errors for ``method=nosuch`` or ``trainer.max_epoch=5`` are 6-16 lines, and a ``+key`` that no
constructor takes fails only once the run instantiates it (or is silently ignored). :func:`precheck` parses the
overrides with Hydra's own parser, checks group choices against the ``*.yaml`` files under ``conf/<group>/``, and
checks keys against one composition of the config with the command line's group choices (about 0.2 s; Hydra
composes again afterwards). The rules, each a :class:`~frossl_lit.runtime.errors.UserError` starting with the override:

- a group choice must be a config of that group (``method=nosuch``);
- ``key=value`` and ``~key`` need an existing key (``trainer.max_epoch=5``), ``+key=value`` a new one;
- a new key (``+key`` / ``++key``) must be read by something: an argument of the constructor of the node it is
  added to (the node's ``_target_``), or a new entry of a node whose entries are all instantiated
  (``+callbacks.mine._target_=...``) or iterated (a study's ``study.methods``); the key rules and the fixes they
  suggest are :mod:`frossl_lit.config.override_keys`.

Whatever it cannot judge passes: Hydra's flags (``--cfg``, ``--help``, ``--config-dir``…), ``hydra.*`` keys and
``hydra/...`` groups (plugins add those), sweeps of groups other than a plain list, nodes that come from an
interpolation or a list, and any command line whose composition fails (Hydra then reports it). A false refusal
costs more than a missed one: the run itself still checks what passes here.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import sys
from collections.abc import Iterator
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf

from frossl_lit.config import CONF_DIR
from frossl_lit.config.override_keys import problem as key_problem
from frossl_lit.runtime.errors import UserError, exits_on_user_error


def check_command_line(config_name: str) -> None:
    """:func:`precheck` on this process's command line, for an entry point: a problem is one line on stderr and
    exit status 2 (:func:`frossl_lit.runtime.errors.exits_on_user_error`)."""
    with exits_on_user_error():
        precheck(sys.argv[1:], config_name)


def precheck(argv: list[str], config_name: str, conf_dir: Path = CONF_DIR) -> None:
    """Raise a :class:`UserError` for the first override of ``argv`` (a command line after the program name) that
    cannot be right for ``config_name``; return silently for everything else (see the module docstring)."""
    overrides = _overrides_of(argv)
    if not overrides:
        return
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as error:
            reason = next((line for line in str(error).splitlines() if not line.startswith(("Error parsing", "See "))), "")
            raise UserError(
                f"{text} is not a valid override ({reason.strip() or 'syntax'}); write key=value, and quote a value "
                f"with spaces, commas or brackets, e.g. key='[1, 2]' (https://hydra.cc/docs/advanced/override_grammar/basic)"
            ) from None
    if any(o.key_or_group == "hydra.searchpath" for o in parsed):
        return  # groups and keys may come from elsewhere
    groups = _group_names(conf_dir, config_name)
    choices, keys = [], []
    for override in parsed:
        name = override.key_or_group
        if name.split("/")[0].split(".")[0] == "hydra":
            continue
        if name in groups or "/" in name:
            _check_choice(override, conf_dir)
            choices.append(override)
        else:
            keys.append(override)
    if keys:
        _check_keys(keys, choices, conf_dir, config_name)


def _overrides_of(argv: list[str]) -> list[str] | None:
    """The overrides of a command line, or ``None`` where Hydra is asked for something else (help, info, another
    config) or the flags do not parse (Hydra says so itself). Read with Hydra's own flag parser (an internal one;
    hydra-core is pinned below 1.4)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:
        return None
    asks_hydra = (args.help, args.hydra_help, args.info, args.shell_completion, args.config_path, args.config_name,
                  args.config_dir, args.experimental_rerun)
    return None if any(asks_hydra) else list(args.overrides)


def _group_names(conf_dir: Path, config_name: str) -> set[str]:
    """Config groups: the folders of ``conf_dir`` and the groups of the primary config's defaults list (an
    ``optional local`` group may have no folder)."""
    names = {p.name for p in conf_dir.iterdir() if p.is_dir()}
    defaults = OmegaConf.load(conf_dir / f"{config_name}.yaml").get("defaults") or []
    for entry in defaults:
        if isinstance(entry, DictConfig):
            names.update(str(key).split()[-1].lstrip("/") for key in entry)
    return names


def _options(conf_dir: Path, group: str) -> list[str]:
    """The configs of a group, nested folders included (``experiment``'s ``base/cifar10_laptop``)."""
    folder = conf_dir / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def _choices_of(override: Override) -> list[str] | None:
    """The config names a group override selects, or ``None`` where that is not a plain list (glob, range…)."""
    if override.is_delete() or override.value_type is None:
        return []
    if override.value_type == ValueType.ELEMENT:
        value = override.value()
        return [] if value is None else [str(value)]
    if override.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
        return list(override.sweep_string_iterator())
    return None


def _check_choice(override: Override, conf_dir: Path) -> None:
    """Each config a group override chooses must be a ``*.yaml`` of that group's folder."""
    group = override.key_or_group
    if group.startswith("hydra/") or not (conf_dir / group).is_dir():
        return  # Hydra's and plugins' groups; a group without a folder here (conf/local)
    options = _options(conf_dir, group)
    for choice in _choices_of(override) or []:
        if choice in options:
            continue
        close = difflib.get_close_matches(choice, options, n=1)
        hint = f" (did you mean {group}={close[0]}?)" if close else ""
        raise UserError(f"{group}={choice} is not a {group} config; choose one of {', '.join(options)}{hint}")


def _compositions(choices: list, conf_dir: Path, config_name: str) -> Iterator[DictConfig]:
    """The config composed with the command line's group choices: the first choice of each sweep, then each other
    choice of each sweep in turn (composed only when a key is not found in the earlier ones). Stops where a
    composition fails or cannot be made (Hydra reports those)."""
    options = []
    for override in choices:
        values = _choices_of(override)
        if values is None:
            return
        prefix = "~" if override.is_delete() else "++" if override.is_force_add() else "+" if override.is_add() else ""
        name = override.key_or_group + (f"@{override.package}" if override.package else "")
        options.append([override.input_line] if len(values) < 2 else [f"{prefix}{name}={value}" for value in values])
    variants = [[o[0] for o in options]]
    variants += [[*variants[0][:i], value, *variants[0][i + 1:]] for i, o in enumerate(options) for value in o[1:]]
    if GlobalHydra.instance().is_initialized():
        return  # inside another Hydra app: not ours to clear
    for overrides in variants:
        try:
            cfg = _compose(str(conf_dir), config_name, tuple(overrides))
        except Exception:
            return
        if cfg.hydra.sweeper.get("params"):
            return  # a sweep config (+sweep=...) may choose other groups per job
        yield cfg


@functools.lru_cache(maxsize=16)
def _compose(conf_dir: str, config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    """One composition (read only; cached for processes that check many command lines, such as the tests)."""
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _check_keys(keys: list[Override], choices: list[Override], conf_dir: Path, config_name: str) -> None:
    """Each key override against the compositions, composed lazily: refused only where none of them takes it."""
    compositions = _compositions(choices, conf_dir, config_name)
    seen: list[DictConfig] = []

    def configs() -> Iterator[DictConfig]:
        yield from seen
        for cfg in compositions:
            seen.append(cfg)
            yield cfg

    for index, override in enumerate(keys):
        if _set_on_the_command_line(override.key_or_group, keys[:index]):
            continue  # its node was replaced or retargeted by an earlier override: the composition does not show it
        first = None
        for cfg in configs():
            problem = key_problem(override, cfg, config_name)
            if problem is None:
                break
            first = first or problem
        else:
            if first:
                raise UserError(first)


def _set_on_the_command_line(key: str, earlier: list[Override]) -> bool:
    """Whether an earlier override sets a node above ``key`` (``node={...}``) or its ``node._target_``."""
    for override in earlier:
        node = override.key_or_group.removesuffix("._target_")
        if key.startswith(f"{node}.") and not override.is_delete():
            return True
    return False
