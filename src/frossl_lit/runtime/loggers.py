"""Loggers. W&B runs online only when it has a key *and* can reach its server; otherwise offline. The CSV logger
writes ``metrics.csv`` whole and atomically (:class:`AtomicCSVLogger`)."""

from __future__ import annotations

import csv
import io
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_warn

from frossl_lit.runtime.fileio import atomic_write, temporary_path, write_error


def _wandb_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(url: str, timeout: float) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode(requested: str = "auto", timeout: float = 3.0) -> str:
    """``online`` / ``offline`` / ``auto``: auto is online only with an API key and a reachable server."""
    if requested not in ("auto", "online", "offline"):
        raise ValueError(f"logger.wandb.mode={requested!r} must be auto, online or offline")
    if requested == "offline" or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return "offline"
    if not _wandb_key_present():
        if requested == "online":
            rank_zero_warn("W&B: no API key (set WANDB_API_KEY or run `wandb login`); logging offline instead.")
        return "offline"
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    if not _reachable(url, timeout):
        rank_zero_warn(f"W&B: {url} is unreachable; logging offline (sync later with `wandb sync <run dir>/wandb`).")
        return "offline"
    return "online"


def wandb_logger(
    save_dir: str, mode: str = "auto", id: str | None = None, experiment: str | None = None, **kwargs: Any
) -> WandbLogger:
    """A Lightning ``WandbLogger`` whose runs land in ``<save_dir>/wandb`` and never wait on the network.

    ``id`` continues an existing run (train.py passes the id recorded in the checkpoint it resumes from).
    ``experiment`` (the preset's name, if any) becomes the group and a tag, so a preset's runs sit together.
    """
    if experiment:
        kwargs["group"] = experiment
        kwargs["tags"] = [*kwargs.get("tags", []), experiment]
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    resolved = wandb_mode(mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    if id is not None:
        kwargs.update(id=id, resume="allow")
    return WandbLogger(save_dir=save_dir, offline=resolved == "offline", **kwargs)


class _AtomicExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer appends rows to ``metrics.csv`` and truncates and rewrites it whenever a new column
    appears: a run killed during either leaves a cut or an empty file. This one keeps every row and replaces the
    file whole at each save (:func:`frossl_lit.runtime.fileio.atomic_write`), as it does ``hparams.yaml``. A save costs a
    write of the whole log, a few hundred kB for a long run, every ``flush_logs_every_n_steps`` steps."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._rows: list[dict[str, Any]] = []

    def log_hparams(self, params: dict[str, Any]) -> None:
        from lightning.pytorch.core.saving import save_hparams_to_yaml

        self.hparams.update(params)
        path = Path(self.log_dir, self.NAME_HPARAMS_FILE)
        temporary = temporary_path(path)
        try:  # Lightning's YAML writer (it knows how to store any hyperparameter), then the rename
            save_hparams_to_yaml(temporary, self.hparams)
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise write_error(path, error) from None

    def save(self) -> None:
        if not self.metrics:
            return
        self._record_new_keys()
        self._rows.extend(self.metrics)
        self.metrics = []
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write(self.metrics_file_path, text.getvalue())


class AtomicCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` whose files are replaced whole and atomically (:class:`_AtomicExperimentWriter`)."""

    @property
    @rank_zero_experiment  # other ranks get a no-op writer, as with Lightning's logger
    def experiment(self) -> _AtomicExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AtomicExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Every row of a run's ``<run dir>/csv/metrics.csv`` (empty when there is none): the values it logged, as
    floats (``step`` and ``epoch`` as ints); a column the row left empty is not in its dict. The one reader of
    metrics.csv (resume, the run's plots, the study report, experiments/)."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            values: dict[str, float] = {key: float(value) for key, value in row.items() if key and value not in ("", None)}
            for key in ("step", "epoch"):
                if key in values:
                    values[key] = int(values[key])
            rows.append(values)
    return rows


def read_csv_history(ckpt_path: str, up_to_step: int) -> list[dict[str, float]]:
    """The rows that the run a checkpoint belongs to logged before the checkpoint's step (its
    ``<run dir>/csv/metrics.csv``; empty when there is none), and the validation rows logged at that step (the
    evaluation of the epoch the checkpoint ends). Later rows are left out: the resumed run logs those steps again."""
    rows = []
    for values in read_metrics(Path(ckpt_path).resolve().parents[1]):
        evaluation_only = all(key.startswith("val/") for key in values if key not in ("step", "epoch"))
        if "step" in values and (values["step"] < up_to_step or (values["step"] == up_to_step and evaluation_only)):
            rows.append(values)
    return rows


def continue_csv_history(loggers: list, rows: list[dict[str, float]]) -> None:
    """Write ``rows`` first into each CSV logger's ``metrics.csv`` so that a resumed run's file holds every step."""
    for logger in loggers:
        if isinstance(logger, CSVLogger) and rows:
            writer = logger.experiment  # creating it clears an earlier metrics.csv in the same directory
            writer.metrics.extend(dict(row) for row in rows)
            writer.save()
