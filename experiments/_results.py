"""Shared by the benchmark scripts: append a dated section with the exact command to a results file."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name as lscpu reports it (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def append_report(out: str, title: str, table: str, details: str = "") -> Path:
    """Append ``## <date> — <title>, <machine>`` + the command that ran + ``details`` + ``table`` to ``out``."""
    machine = f"{cpu_model()}, {platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    report = (
        f"\n## {time.strftime('%Y-%m-%d %H:%M')} — {title}, {machine}\n\n"
        f"Command: `python {shlex.join(sys.argv)}`\n\n" + (f"{details}\n\n" if details else "") + f"{table}\n"
    )
    path = REPO / out
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(report)
    return path
