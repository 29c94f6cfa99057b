"""The one harness of the scripts in experiments/: their command line, training runs, a run's figures, and the
dated results sections.

- :func:`parser` / :func:`parse`: the options every script shares (``--out``, ``--smoke``; ``--extra``,
  ``--runs-dir`` and ``--stamp`` for the scripts that train) and the exact command, for the record;
- :func:`train`: ``python -m frossl_lit.train <overrides>`` in a subprocess into its own run directory, returning
  the run's ``summary.json`` (a finished run is reused, an interrupted one resumes from its ``last.ckpt``, a run of
  other settings is refused: :func:`frossl_lit.config.compose.settings_changed`);
- :func:`metrics`, :func:`summary`, :func:`last_values`, :func:`knn_curve`: what a run directory holds
  (``csv/metrics.csv`` through the package's one reader, :func:`frossl_lit.runtime.loggers.read_metrics`);
- :func:`record`: append (or replace) a section of ``experiments/results/<name>.md`` with the date, the CPU
  model, the exact command, the details and the table.

``--smoke`` runs a script end to end on the smallest sizes (tests/experiments runs every script so, on tiny data);
its results go to ``outputs/smoke/`` unless ``--out`` says otherwise, never to experiments/results/.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE_DIR = "outputs/smoke"
# what --smoke adds to every training run of a script: the smallest model (the tests' widths), no optional callbacks
SMOKE_TRAIN = [
    "backbone.widths=[8,16]", "method.projector.hidden_dims=[32]", "method.projector.out_dim=16", "data.batch_size=32",
    "data.eval_batch_size=64", "callbacks.plots=null", "callbacks.labelfree=null", "callbacks.checkpoint_best=null",
]


# -- the command line ------------------------------------------------------------------------------------------
def parser(module: str, doc: str | None, out: str | None, training: bool = False,
           runs: bool = False) -> argparse.ArgumentParser:
    """The script's parser, ``python -m <module>`` as its program, with ``--out`` (its results file, relative to
    the repository; ``out=None``: the script names it) and ``--smoke``; ``training``: ``--extra`` Hydra overrides
    for every run; ``runs``: its runs' ``--runs-dir`` and ``--stamp``."""
    name = module.rsplit(".", 1)[-1]
    result = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--out", default=out, help="the results file (appended to), relative to the repository")
    result.add_argument("--smoke", action="store_true",
                        help=f"the smallest sizes, to check the script end to end in seconds (results: {SMOKE_DIR}/)")
    if training:
        result.add_argument("--extra", nargs="*", default=[], help="extra Hydra overrides for every run")
    if runs:
        result.add_argument("--runs-dir", default=f"outputs/{name}", help="where the run directories go")
        result.add_argument("--stamp", default=time.strftime("%Y-%m-%d_%H-%M-%S"),
                            help="the runs' directory prefix: an earlier invocation's reuses its finished runs and "
                                 "resumes its interrupted ones")
    return result


def parse(cli: argparse.ArgumentParser, argv: list[str] | None = None, smoke: dict | None = None,
          smoke_extra: list[str] = ()) -> argparse.Namespace:
    """The parsed options and ``args.command``, the exact command. With ``--smoke``: each option of ``smoke`` the
    command line left at its default takes the smoke value, ``smoke_extra`` goes before ``args.extra``, and the
    results file and run directories default to ``outputs/smoke/``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = cli.parse_args(argv)
    args.command = f"{cli.prog} {shlex.join(argv)}".strip()
    if args.smoke:
        moved = {key: f"{SMOKE_DIR}/{Path(cli.get_default(key)).name}" for key in ("out", "runs_dir") if cli.get_default(key)}
        for key, value in {**moved, **(smoke or {})}.items():
            if getattr(args, key) == cli.get_default(key):
                setattr(args, key, value)
        if hasattr(args, "extra"):
            args.extra = [*smoke_extra, *args.extra]
    return args


def results_file(args: argparse.Namespace, name: str) -> str:
    """``args.out``, else ``experiments/results/<name>`` (``outputs/smoke/<name>`` with ``--smoke``)."""
    return args.out or f"{SMOKE_DIR if args.smoke else 'experiments/results'}/{name}"


def path(relative: str | Path, output: bool = False) -> Path:
    """A path of the command line: relative to the repository (where the scripts run their commands); ``output``:
    a file the script writes (its folder is made)."""
    if output:
        (REPO / relative).parent.mkdir(parents=True, exist_ok=True)
    return REPO / relative


# -- training runs and what they leave ---------------------------------------------------------------------------
def train(name: str, overrides: list[str], run_dir: str | Path) -> dict | None:
    """Run ``python -m frossl_lit.train <overrides> hydra.run.dir=<run_dir>`` from the repository and return its
    summary (``command_seconds``: the command's wall-clock, start-up included), or None when it failed (the tail
    of its stderr printed). A run finished there earlier is returned as it is; an interrupted one resumes."""
    from frossl_lit.config.compose import settings_changed

    run_dir = path(run_dir)
    if changed := settings_changed(overrides, run_dir):  # never reuse or resume a run of other settings as this one
        raise SystemExit(f"[{name}] {run_dir} holds a run of other settings ({'; '.join(f'{k}: {a!r} there, {b!r} now' for k, a, b in changed[:3])}); "
                         "pass another --runs-dir (or --stamp), or remove that directory to run it again")
    if (run_dir / "summary.json").is_file():
        print(f"[{name}] finished earlier in {run_dir}", flush=True)
        return summary(run_dir)
    command = [sys.executable, "-m", "frossl_lit.train", *overrides, f"hydra.run.dir={run_dir}"]
    if run_dir.is_dir():  # an interrupted run continues from its last.ckpt (same curve, same clock)
        command.append("resume.auto=true")
    print(f"[{name}] {shlex.join(command[1:])}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode:
        print(f"[{name}] failed:\n{result.stderr[-4000:]}", flush=True)
        return None
    return {**summary(run_dir), "command_seconds": round(time.perf_counter() - started, 1)}


def summary(run_dir: str | Path) -> dict:
    """The run's ``summary.json``."""
    return json.loads((path(run_dir) / "summary.json").read_text())


def metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Every row of the run's ``csv/metrics.csv`` (the package's reader: values as floats, empty cells left out)."""
    from frossl_lit.runtime.loggers import read_metrics

    return read_metrics(path(run_dir))


def last_values(run_dir: str | Path, prefix: str = "train/") -> dict[str, float]:
    """The last logged value of each metric whose name starts with ``prefix``."""
    values: dict[str, float] = {}
    for row in metrics(run_dir):
        values.update({key: value for key, value in row.items() if key.startswith(prefix)})
    return values


def knn_curve(run_dir: str | Path, clocks: tuple[str, ...] = ("val/knn_train_seconds",)) -> list[tuple[int, float, float]]:
    """``(epoch, kNN top-1, seconds)`` of every kNN pass of the run: the one before training at (0, top-1, 0),
    then one per epoch evaluated, its seconds the sum of the ``clocks`` columns (passes without them left out)."""
    rows = [row for row in metrics(run_dir) if "val/knn_top1" in row]
    curve = [(0, rows[0]["val/knn_top1"], 0.0)] if rows else []
    for row in rows[1:]:
        if "epoch" in row and all(clock in row for clock in clocks):
            curve.append((row["epoch"] + 1, row["val/knn_top1"], sum(row[clock] for clock in clocks)))
    return curve


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- the results files -------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` reports it ("Model name"), else ``/proc/cpuinfo``'s, else the platform's."""
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in listing.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return f"{cpu_model()}, {platform.machine()}, {len(os.sched_getaffinity(0))} cores"


HEADING = re.compile(r"^## \d{4}-\d\d-\d\d \d\d:\d\d — (.*)$")


def write_section(out: str | Path, title: str, command: str, body: str, replace: bool = False) -> Path:
    """Append ``## <date> — <title>, <machine>``, ``Command: `<command>``` and ``body`` to ``out`` (relative to the
    repository); ``replace``: the sections of that title already there are removed first."""
    target = path(out, output=True)
    text = target.read_text() if target.is_file() else ""
    if replace:
        kept, keep = [], True
        for line in text.splitlines(keepends=True):
            heading = HEADING.match(line.rstrip("\n"))
            if heading or line.startswith("## "):
                keep = not (heading and heading.group(1).startswith(f"{title}, "))
                if not keep and kept and kept[-1] == "\n":
                    kept.pop()  # the blank line before the removed section
            if keep:
                kept.append(line)
        text = "".join(kept)
    section = f"\n## {time.strftime('%Y-%m-%d %H:%M')} — {title}, {machine()}\n\nCommand: `{command}`\n\n{body.strip()}\n"
    target.write_text(text + section)
    return target


def record(args: argparse.Namespace, title: str, table: str, details: str = "", replace: bool = False) -> Path:
    """:func:`write_section` into ``args.out`` with the script's exact command: ``details``, then ``table``."""
    target = write_section(args.out, title, args.command, (f"{details}\n\n" if details else "") + table, replace)
    print(f"recorded in {target}")
    return target


def fix_mmap_threshold() -> None:
    """glibc maps every allocation above 128 KiB afresh and unmaps it when freed (no dynamic threshold), so the
    resident high-water mark of one call is the memory that call needed."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except OSError:
        pass


def _status_mib(key: str) -> float | None:
    try:
        return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) / 1024
    except (OSError, AttributeError):
        return None


class PeakMemory:
    """``with PeakMemory() as peak: …`` → ``peak.mib``: the resident high-water mark inside the block above the
    resident memory before it (``/proc/self/clear_refs`` reset, ``VmHWM`` read); None where /proc cannot tell."""

    mib: float | None = None

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the resident memory now
            self._before = _status_mib("VmRSS")
        except OSError:
            self._before = None
        return self

    def __exit__(self, *exc) -> None:
        after = _status_mib("VmHWM")
        if self._before is not None and after is not None:
            self.mib = after - self._before
