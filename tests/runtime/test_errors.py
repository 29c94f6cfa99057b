"""The one way a command fails (frossl_lit.runtime.errors.exits_on_user_error): a UserError is one line on stderr and
exit status 2, also wrapped by Hydra's instantiate or raised in a DataLoader worker; anything else propagates."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from frossl_lit.runtime.errors import PREFIX, UserError, exits_on_user_error


class Refuses:
    """A constructor that rejects its value as the DataModules and methods do."""

    def __init__(self, kind: str) -> None:
        if kind == "user":
            raise UserError("data.root=nowhere holds no images; point it at a folder of class folders")
        if kind == "keyed":
            raise ValueError("data.val_fraction=1.5 must lie in [0, 1)")
        raise ValueError("unknown ResNet 'resnet7'")


class RefusedImage(UserError):
    """A UserError torch cannot rebuild from one string (two arguments): it re-raises it as a RuntimeError."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path} ({reason}); set data.on_bad_image=skip to leave it out")


class Unreadable(Dataset):
    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        if self.error is RefusedImage:
            raise RefusedImage(f"class_0/{index}.jpg", "truncated")
        raise self.error(f"cannot read image class_0/{index}.jpg; check data.root")


def _exit_line(body, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        exits_on_user_error()(body)()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(PREFIX)
    return lines[0].removeprefix(PREFIX)


def test_a_user_error_is_one_line_and_status_2(capsys):
    def body():
        raise UserError("seed=-1 must be a whole number in [0, 2**32); e.g. seed=0")

    assert _exit_line(body, capsys) == "seed=-1 must be a whole number in [0, 2**32); e.g. seed=0"


@pytest.mark.parametrize("kind,line", [
    ("user", "data.root=nowhere holds no images; point it at a folder of class folders"),
    ("keyed", "data.val_fraction=1.5 must lie in [0, 1)"),  # a constructor's own check that names its key
    ("other", "Error in call to target 'tests.runtime.test_errors.Refuses' (config node data): ValueError: unknown ResNet 'resnet7'"),
])
def test_a_constructor_that_refuses_a_config_value_is_one_line(kind, line, capsys):
    config = {"data": {"_target_": "tests.runtime.test_errors.Refuses", "kind": kind}}
    assert _exit_line(lambda: instantiate(config), capsys) == line


def test_a_user_error_behind_other_exceptions_is_found(capsys):
    def body():
        try:
            raise UserError("ckpt=x.ckpt does not exist")
        except UserError as error:
            raise RuntimeError("loading failed") from error

    assert _exit_line(body, capsys) == "ckpt=x.ckpt does not exist"


@pytest.mark.parametrize("error", [UserError, RefusedImage], ids=["rebuilt as itself", "re-raised as RuntimeError"])
def test_a_user_error_in_a_dataloader_worker_is_its_own_message(error, capsys):
    loader = DataLoader(Unreadable(error), batch_size=2, num_workers=1)
    line = _exit_line(lambda: next(iter(loader)), capsys)
    assert line.startswith("cannot read image class_0/") and "Traceback" not in line and "worker" not in line


@pytest.mark.parametrize("error", [ValueError, KeyError])
def test_any_other_error_propagates(error):
    with pytest.raises(error):
        with exits_on_user_error():
            raise error("a bug, not the user's to fix")
    batches = iter(DataLoader(Unreadable(error), batch_size=2, num_workers=1))
    try:
        with pytest.raises(error), exits_on_user_error():
            next(batches)
    finally:  # the raised error holds the iterator: left to the collector, its shutdown waits out a 5 s join
        batches._shutdown_workers()
