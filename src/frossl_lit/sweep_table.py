"""Print one row per job of a finished sweep: ``python -m frossl_lit.sweep_table outputs/multirun/<time>``.

Reads each job's ``summary.json`` and ``.hydra/overrides.yaml``; ``--csv FILE`` also writes the table as CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

COLUMNS = ("job", "overrides", "probe_top1", "knn_top1_init", "knn_top1", "epochs", "wall_seconds")


def collect(sweep_dir: Path) -> list[dict]:
    rows = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        summary = json.loads(summary_path.read_text())
        overrides_path = summary_path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.is_file() else []
        rows.append({"job": summary_path.parent.name, "overrides": " ".join(overrides or []), **summary})
    return rows


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) and value <= 1.0 else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dir)
    if not rows:
        print(f"frossl_lit: error: no */summary.json under {args.sweep_dir}; is it a finished multirun directory?", file=sys.stderr)
        raise SystemExit(2)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {args.sweep_dir}")
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in COLUMNS))
    Console(width=200).print(table)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
