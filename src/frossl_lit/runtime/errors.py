"""Errors a user can fix, and the one way a command fails with one.

Every command (train, knn, linear, compare, prepare, export, show_views, sweep_table) runs its body under
:func:`exits_on_user_error`: a :class:`UserError` becomes one line on stderr, ``frossl_lit: error: <message>``, and
exit status 2, without a traceback. It is found where it arrives wrapped, too:

- inside a Hydra ``InstantiationException``: a constructor the config names raised it (the exception chain is
  followed, ``__cause__`` then ``__context__``); a constructor's own ``ValueError`` whose message starts with the
  config key (``data.val_fraction=1.2 must …``) is shown alone as well, any other failed instantiation as Hydra's
  first line and the cause's;
- raised in a DataLoader worker: torch re-raises it in the main process with the worker's whole traceback as its
  message (as the same type, or as a ``RuntimeError`` where the type cannot be rebuilt from one string); the line
  is the original message alone.

A constructor refuses a config value it takes with :func:`require` (one line, ``key=value must …; fix``: every value
is checked once, where it is used); ``frossl_lit.train.build`` re-raises such a :class:`UserError` unwrapped from
Hydra's ``InstantiationException`` (:func:`unwraps_user_errors`), so ``train()`` in-process raises it as it is.
"""

from __future__ import annotations

import contextlib
import math
import pydoc
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

PREFIX = "frossl_lit: error: "
_NAMES_ITS_KEY = re.compile(r"^[\w.]+=\S")  # ``method.temperature=0 must be > 0``
_FROM_A_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


class UserError(Exception):
    """Something in the user's data, paths or configuration is wrong; the message says what and how to fix it."""


class DataNotFoundError(UserError):
    """A dataset is missing or unreadable where the configuration points."""


def fail(message: str, status: int = 2) -> NoReturn:
    """End the command: ``message`` on stderr after :data:`PREFIX`, and exit ``status`` (2: the user's to fix)."""
    print(f"\n{PREFIX}{message}\n", file=sys.stderr)
    sys.exit(status)


@contextlib.contextmanager
def exits_on_user_error() -> Iterator[None]:
    """Run a command's body (``with exits_on_user_error():`` or as the decorator ``@exits_on_user_error()``): an
    error the user can fix (:func:`user_message`) ends it through :func:`fail`; any other propagates."""
    try:
        yield
    except Exception as error:
        message = user_message(error)
        if message is None:
            raise
        fail(message)


def user_message(error: BaseException) -> str | None:
    """The one line a user sees for ``error``, or ``None`` when it is not the user's to fix (see the module
    docstring)."""
    from hydra.errors import InstantiationException

    links = list(_chain(error))
    for link in links:
        message = _user_error_message(link)
        if message is not None:
            return message
    for link in links:
        if isinstance(link, InstantiationException):
            return _instantiation_message(link)
    return None


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and what it wraps: its ``__cause__``, else its ``__context__`` unless that was suppressed."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        if error.__cause__ is not None:
            error = error.__cause__
        else:
            error = None if error.__suppress_context__ else error.__context__


def _user_error_message(error: BaseException) -> str | None:
    """The message of a :class:`UserError`, the original one where it was raised in a DataLoader worker."""
    text = str(error)
    worker = _FROM_A_WORKER.match(text)
    if worker is None:
        return text if isinstance(error, UserError) else None
    # the worker's traceback ends with its exception: a line ``module.Name: message``, the message to the end
    parts = re.split(rf"\n(?=[\w.]*\b{worker.group(1)}: )", text)
    name, original = parts[-1].split(": ", 1) if len(parts) > 1 else ("", text.strip().splitlines()[-1])
    kind = pydoc.locate(name) if "." in name else None  # torch re-raises one it cannot rebuild as a RuntimeError
    if isinstance(error, UserError) or (isinstance(kind, type) and issubclass(kind, UserError)):
        return original.strip()
    return None


def _instantiation_message(error: BaseException) -> str:
    """A failed instantiation: the constructor's message alone where it starts with its config key, else Hydra's
    first line (the target), the config node and the cause's first line."""
    cause = error.__cause__
    if cause is not None and _NAMES_ITS_KEY.match(str(cause)):
        return str(cause)
    lines = str(error).strip().splitlines()
    head = lines[0].rstrip(":") if lines else type(error).__name__
    node = next((line.split(": ", 1)[1] for line in lines if line.startswith("full_key: ")), None)
    where = f" (config node {node})" if node else ""
    reason = (str(cause).strip().splitlines() or [""])[0] if cause is not None else ""
    return f"{head}{where}: {type(cause).__name__}: {reason}" if cause is not None else f"{head}{where}"


@contextlib.contextmanager
def unwraps_user_errors() -> Iterator[None]:
    """Where Hydra's ``instantiate`` wraps a constructor's :class:`UserError` in an ``InstantiationException``,
    raise the :class:`UserError` itself (its own cause kept); any other error propagates as it is."""
    from hydra.errors import InstantiationException

    try:
        yield
    except InstantiationException as error:
        found = next((link for link in _chain(error) if isinstance(link, UserError)), None)
        if found is None:
            raise
        raise found from found.__cause__


def refuse(key: str, value: Any, must: str, fix: str) -> NoReturn:
    """Refuse config key ``key``'s ``value``: ``key=value must; fix``, the one-line form of every value check."""
    raise UserError(f"{key}={value!r} {must}; {fix}")


def require(key: str, value: Any, ok: Callable[[Any], bool], must: str, fix: str) -> None:
    """:func:`refuse` ``value`` unless ``ok(value)`` (an ``ok`` that raises ``TypeError``, a value of the wrong
    type, refuses it too)."""
    try:
        good = ok(value)
    except TypeError:
        good = False
    if not good:
        refuse(key, value, must, fix)


def number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(value: Any) -> bool:
    """A whole number >= 1 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def whole(value: Any, low: int = 0) -> bool:
    """A whole number >= ``low`` (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def require_temperature(key: str, value: Any, example: float) -> None:
    """``key`` must be a temperature > 0 (``e.g. key=example`` in the refusal)."""
    require(key, value, lambda v: number(v) and v > 0, "must be a temperature > 0", f"e.g. {key}={example}")


def require_whole(key: str, value: Any, low: int, what: str, example: int) -> None:
    """``key`` must be a whole number of ``what`` >= ``low`` (``e.g. key=example`` in the refusal)."""
    require(key, value, lambda v: whole(v, low), f"must be a whole number of {what} >= {low}", f"e.g. {key}={example}")
