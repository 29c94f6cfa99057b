"""Every key in conf/ is read by the code it configures: no option that nothing uses.

Each group option and each experiment preset is composed; in the composed config a node with ``_target_`` may only
hold keys its target accepts (its signature, following ``**kwargs`` up the class hierarchy; view recipes: the
fields of ``ViewRecipe``), and a plain key must be read somewhere in the package's source (or by another config value, ``${paths.data_dir}``). The ``preset`` block is
documentation of a preset's source (checked against the published settings in ``test_presets.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from functools import cache

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from frossl_lit.data.augment import ViewRecipe
from tests.conftest import CONF_DIR, REPO, compose_raw

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
RECIPE_PARAMETERS = {"recipes", "small_recipe"}  # ViewAugment takes these as ViewRecipe fields
DOCUMENTATION = {"preset"}
SOURCE = "\n".join(p.read_text() for p in (REPO / "src" / "frossl_lit").rglob("*.py"))
INTERPOLATIONS = "\n".join(re.findall(r"\$\{[^}]*\}", "\n".join(p.read_text() for p in CONF_DIR.rglob("*.yaml"))))


@cache
def accepted(target: str) -> tuple[frozenset[str], bool]:
    """``(parameter names, takes any keyword)`` of a ``_target_``, following ``**kwargs`` to base classes."""
    obj = get_object(target)
    names: set[str] = set()
    for owner in inspect.getmro(obj) if inspect.isclass(obj) else [obj]:
        function = owner.__init__ if inspect.isclass(obj) else owner
        if inspect.isclass(obj) and "__init__" not in vars(owner):
            continue
        parameters = inspect.signature(function).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return frozenset(names), False
    return frozenset(names), True


def unused_keys(node, path: str = "") -> list[str]:
    problems = []
    if isinstance(node, list):
        for index, item in enumerate(node):
            problems += unused_keys(item, f"{path}.{index}")
        return problems
    if not isinstance(node, dict):
        return problems
    target = node.get("_target_")
    if target is not None:
        names, any_keyword = accepted(target)
        for key in node.keys() - HYDRA_KEYS:
            if key not in names and not any_keyword:
                problems.append(f"{path}.{key} (not a parameter of {target})")
    for key, value in node.items():
        where = f"{path}.{key}".lstrip(".")
        if key in HYDRA_KEYS or key in DOCUMENTATION:
            continue
        if key in RECIPE_PARAMETERS and value is not None:
            fields = {f.name for f in dataclasses.fields(ViewRecipe)}
            for index, recipe in enumerate(value if isinstance(value, list) else [value]):
                problems += [f"{where}.{index}.{k} (not a ViewRecipe field)" for k in recipe if k not in fields]
            continue
        if target is None and not _read(where, str(key)) and not _is_collection(node):
            problems.append(f"{where} (no code reads it)")
        problems += unused_keys(value, where)
    return problems


def _read(where: str, key: str) -> bool:
    """Read by the package's code, or by another config value (``${paths.data_dir}``)."""
    return bool(re.search(rf"\b{re.escape(key)}\b", SOURCE)) or f"{{{where}" in INTERPOLATIONS or f"{where}}}" in INTERPOLATIONS


def _is_collection(node: dict) -> bool:
    """Named entries (callbacks.*, logger.*): every value a target node or null."""
    return all(value is None or (isinstance(value, dict) and "_target_" in value) for value in node.values())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = [[]] + [[f"{group}={option}"] for group in ("method", "backbone", "data", "augment", "schedule", "trainer", "logger", "linear")
                for option in _options(group)] + [[f"experiment={preset}"] for preset in _options("experiment")]


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) or "defaults" for c in CASES])
def test_every_key_is_read_by_the_code_it_configures(overrides):
    config = "evaluate" if overrides and overrides[0].startswith("linear=") else "train"
    cfg = compose_raw([*overrides, "ckpt=x"] if config == "evaluate" else overrides, config)
    problems = unused_keys(OmegaConf.to_container(cfg, resolve=False))
    assert not problems, f"keys nothing reads: {problems}"


def test_the_checker_finds_an_unread_key():
    assert unused_keys({"_target_": "frossl_lit.models.Projector", "in_dim": 3, "last_batch_norm": True}) == [
        ".last_batch_norm (not a parameter of frossl_lit.models.Projector)"
    ]
    assert unused_keys({"schedule": {"cooldown_epochs": 3}}) == ["schedule.cooldown_epochs (no code reads it)"]
    assert unused_keys({"recipes": [{"size": 8, "colour": 1}]}) == ["recipes.0.colour (not a ViewRecipe field)"]
