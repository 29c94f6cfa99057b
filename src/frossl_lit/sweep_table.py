"""Print one row per job of a finished sweep: ``python -m frossl_lit.sweep_table outputs/multirun/<time>``.

Reads each job's ``summary.json`` and ``.hydra/overrides.yaml``; ``--csv FILE`` also writes the table as CSV.

``--by-setting`` prints one row per setting instead: jobs are grouped by method and by their overrides minus
``seed=…`` (and minus ``method=…``, which has its own column), so a sweep such as
``-m method=frossl,vicreg seed=0,1,2`` gives two rows. Each row shows how many seeds (jobs) it holds and the
mean ± 95% Student-t confidence interval over them of ``knn_top1``, ``probe_top1`` and ``wall_seconds``
(``frossl_lit.reports.stats.mean_ci``); a setting run with a single seed shows its value with ``(1 seed)``. A figure
missing from some jobs' summaries is averaged over the others, and ``[n=k]`` says over how many. With
``--by-setting``, ``--csv FILE`` writes the grouped rows: ``<metric>_mean``, ``_low``, ``_high`` and ``_n``
per metric (``_low``/``_high`` empty for one seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import yaml

from frossl_lit.reports.stats import format_ci, mean_ci
from frossl_lit.runtime.errors import UserError, exits_on_user_error

COLUMNS = ("job", "overrides", "probe_top1", "knn_top1_init", "knn_top1", "epochs", "wall_seconds")
GROUP_METRICS = {"knn_top1": 4, "probe_top1": 4, "wall_seconds": 1}  # metric -> decimals shown
GROUP_COLUMNS = ("method", "setting", "seeds", "jobs", *GROUP_METRICS)
CSV_GROUP_COLUMNS = ("method", "setting", "seeds", "jobs",
                     *(f"{metric}_{part}" for metric in GROUP_METRICS for part in ("mean", "low", "high", "n")))
_SEED = re.compile(r"^\+{0,2}seed=")  # seed=1, +seed=1, ++seed=1; not data.seed=1
_METHOD = re.compile(r"^\+{0,2}method=")


def collect(sweep_dir: Path) -> list[dict]:
    rows = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        summary = json.loads(summary_path.read_text())
        overrides_path = summary_path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.is_file() else []
        rows.append({"job": summary_path.parent.name, "overrides": " ".join(overrides or []), **summary,
                     "override_list": list(overrides or [])})
    return rows


def _setting(row: dict) -> tuple[str | None, tuple[str, ...], str]:
    """``(method, setting overrides, seed)`` of one job: its overrides without ``seed=`` and ``method=``."""
    tokens = row.get("override_list", row.get("overrides", "").split())
    method = row.get("method") or next((t.split("=", 1)[1] for t in tokens if _METHOD.match(t)), None)
    seed = next((t.split("=", 1)[1] for t in tokens if _SEED.match(t)), "default")
    return method, tuple(t for t in tokens if not _SEED.match(t) and not _METHOD.match(t)), seed


def group(rows: list[dict]) -> list[dict]:
    """One dict per (method, setting) in order of first appearance, with ``mean_ci`` of each metric."""
    groups: dict[tuple, list[dict]] = {}
    settings: dict[tuple, tuple[str, ...]] = {}
    seeds: dict[tuple, list[str]] = {}
    for row in rows:
        method, setting, seed = _setting(row)
        key = (method, tuple(sorted(setting)))  # the same setting even if Hydra wrote the overrides in another order
        groups.setdefault(key, []).append(row)
        settings.setdefault(key, setting)
        seeds.setdefault(key, []).append(seed)
    grouped = []
    for key, members in groups.items():
        grouped.append({
            "method": key[0],
            "setting": " ".join(settings[key]),
            "seeds": len(members),
            "distinct_seeds": len(set(seeds[key])),
            "jobs": ",".join(member["job"] for member in members),
            **{metric: mean_ci([member.get(metric) for member in members]) for metric in GROUP_METRICS},
        })
    return grouped


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) and value <= 1.0 else str(value)


def _group_cell(row: dict, column: str) -> str:
    if column in GROUP_METRICS:
        text = format_ci(row[column], digits=GROUP_METRICS[column])
        return f"{text} [n={row[column]['n']}]" if 0 < row[column]["n"] < row["seeds"] else text
    value = row[column]
    return "(defaults)" if column == "setting" and not value else _cell(value)


def _csv_number(value: float) -> float | str:
    return "" if value != value else value  # NaN -> empty cell


def _group_csv_row(row: dict) -> dict:
    out = {column: row[column] for column in ("method", "setting", "seeds", "jobs")}
    for metric in GROUP_METRICS:
        for part in ("mean", "low", "high"):
            out[f"{metric}_{part}"] = _csv_number(row[metric][part])
        out[f"{metric}_n"] = row[metric]["n"]
    return out


@exits_on_user_error()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--by-setting", action="store_true",
                        help="one row per method and setting (overrides minus seed=) with mean ± 95%% CI over seeds")
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dir)
    if not rows:
        raise UserError(f"no */summary.json under {args.sweep_dir}; is it a finished multirun directory?")
    from rich.console import Console
    from rich.markup import escape  # overrides such as tags=[a,b] and our [n=2] are not rich markup
    from rich.table import Table

    if args.by_setting:
        grouped = group(rows)
        table = Table(title=f"sweep {args.sweep_dir}: mean ± 95% CI over seeds")
        for column in GROUP_COLUMNS:
            table.add_column(column)
        for row in grouped:
            table.add_row(*(escape(_group_cell(row, column)) for column in GROUP_COLUMNS))
        Console(width=200).print(table)
        for row in grouped:
            if row["distinct_seeds"] < row["seeds"]:
                print(f"frossl_lit: note: {row['method']} {row['setting'] or '(defaults)'} has {row['seeds']} jobs but "
                      f"only {row['distinct_seeds']} distinct seed= values; its interval may be too narrow", file=sys.stderr)
        if args.csv:
            with open(args.csv, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=CSV_GROUP_COLUMNS)
                writer.writeheader()
                writer.writerows(_group_csv_row(row) for row in grouped)
        return

    table = Table(title=f"sweep {args.sweep_dir}")
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(_cell(row.get(column))) for column in COLUMNS))
    Console(width=200).print(table)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
