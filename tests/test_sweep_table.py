"""sweep_table --by-setting on fake multirun folders: seeds of one setting pooled into mean ± CI, settings kept apart.

The per-job table's happy path with real training is in test_experiments.py, its error exit in test_cli.py.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from frossl_lit import sweep_table
from frossl_lit.reports.stats import format_ci, mean_ci

# (method, overrides, knn_top1, probe_top1, wall_seconds) per job, in Hydra's job order
JOBS = [
    ("frossl", ["method=frossl", "optim.lr=0.1", "seed=0"], 0.80, 0.70, 100.0),
    ("frossl", ["method=frossl", "optim.lr=0.1", "seed=1"], 0.82, 0.71, 104.0),
    ("frossl", ["method=frossl", "optim.lr=0.1", "seed=2"], 0.81, 0.73, 102.0),
    ("frossl", ["method=frossl", "optim.lr=0.2", "seed=0"], 0.60, 0.50, 90.0),
    ("frossl", ["method=frossl", "optim.lr=0.2", "seed=1"], 0.64, 0.52, 95.0),
    ("vicreg", ["method=vicreg", "optim.lr=0.1", "seed=0"], 0.75, None, 120.0),
    ("vicreg", ["method=vicreg", "optim.lr=0.1", "seed=1"], 0.77, 0.66, 121.0),
    ("vicreg", ["method=vicreg", "optim.lr=0.1", "seed=2"], 0.79, 0.68, 125.0),
    ("barlow_twins", ["method=barlow_twins", "optim.lr=0.1", "+seed=7"], 0.70, 0.60, 99.0),
]


def make_sweep(root, jobs=JOBS):
    for index, (method, overrides, knn, probe, wall) in enumerate(jobs):
        job = root / str(index)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / "summary.json").write_text(json.dumps(
            {"method": method, "data": "cifar10", "knn_top1": knn, "probe_top1": probe, "epochs": 10, "wall_seconds": wall}
        ))
    return root


def by_key(grouped):
    return {(row["method"], row["setting"]): row for row in grouped}


def test_group_pools_the_seeds_of_each_setting_and_never_mixes_settings(tmp_path):
    grouped = by_key(sweep_table.group(sweep_table.collect(make_sweep(tmp_path))))
    assert list(grouped) == [("frossl", "optim.lr=0.1"), ("frossl", "optim.lr=0.2"), ("vicreg", "optim.lr=0.1"),
                             ("barlow_twins", "optim.lr=0.1")]
    assert [row["seeds"] for row in grouped.values()] == [3, 2, 3, 1]
    assert [row["jobs"] for row in grouped.values()] == ["0,1,2", "3,4", "5,6,7", "8"]
    for (method, setting), row in grouped.items():
        members = [job for job in JOBS if job[0] == method and setting in job[1]]
        for column, metric in ((2, "knn_top1"), (3, "probe_top1"), (4, "wall_seconds")):
            expected = mean_ci([job[column] for job in members])
            assert row[metric] == pytest.approx(expected, nan_ok=True)
    assert grouped[("frossl", "optim.lr=0.1")]["knn_top1"]["mean"] == pytest.approx(0.81)
    assert grouped[("frossl", "optim.lr=0.2")]["knn_top1"]["mean"] == pytest.approx(0.62)
    assert grouped[("vicreg", "optim.lr=0.1")]["probe_top1"]["n"] == 2  # the job without a probe figure is left out


def test_group_takes_the_same_overrides_in_another_order_as_one_setting(tmp_path):
    jobs = [("frossl", ["seed=0", "optim.lr=0.1", "data.batch_size=64"], 0.5, 0.4, 1.0),
            ("frossl", ["data.batch_size=64", "optim.lr=0.1", "seed=1"], 0.6, 0.5, 2.0),
            ("frossl", ["data.batch_size=64", "data.seed=3", "seed=1"], 0.6, 0.5, 2.0)]  # data.seed is a setting
    grouped = sweep_table.group(sweep_table.collect(make_sweep(tmp_path, jobs)))
    assert [(row["setting"], row["seeds"]) for row in grouped] == [("optim.lr=0.1 data.batch_size=64", 2),
                                                                  ("data.batch_size=64 data.seed=3", 1)]


def test_by_setting_prints_one_row_per_setting_with_mean_and_interval(tmp_path, capsys):
    sweep_table.main([str(make_sweep(tmp_path / "sweep")), "--by-setting"])
    captured = capsys.readouterr()
    printed = captured.out
    knn = mean_ci([0.80, 0.82, 0.81])
    assert format_ci(knn, digits=4) in printed
    assert format_ci(mean_ci([100.0, 104.0, 102.0]), digits=1) in printed
    assert "0.7000 (1 seed)" in printed  # barlow_twins, a single seed
    assert f"{format_ci(mean_ci([0.66, 0.68]), digits=4)} [n=2]" in printed  # vicreg's probe over 2 of 3 seeds
    assert "seed=" not in printed.replace("data.seed", "")
    assert captured.err == ""


def test_by_setting_csv_writes_the_grouped_rows(tmp_path):
    out = tmp_path / "grouped.csv"
    sweep_table.main([str(make_sweep(tmp_path / "sweep")), "--by-setting", "--csv", str(out)])
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert [row["seeds"] for row in rows] == ["3", "2", "3", "1"]
    first = rows[0]
    assert (first["method"], first["setting"], first["jobs"]) == ("frossl", "optim.lr=0.1", "0,1,2")
    expected = mean_ci([0.80, 0.82, 0.81])
    for part in ("mean", "low", "high"):
        assert float(first[f"knn_top1_{part}"]) == pytest.approx(expected[part])
    assert first["knn_top1_n"] == "3"
    single = rows[3]
    assert float(single["probe_top1_mean"]) == pytest.approx(0.60)
    assert single["probe_top1_low"] == "" and single["probe_top1_high"] == ""  # one seed: no interval
    assert rows[2]["probe_top1_n"] == "2"


def test_the_per_job_table_stays_the_default(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    sweep_table.main([str(sweep), "--csv", str(tmp_path / "jobs.csv")])
    printed = capsys.readouterr().out
    assert "optim.lr=0.1 seed=2" in printed and "±" not in printed
    with open(tmp_path / "jobs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(JOBS) and list(rows[0]) == list(sweep_table.COLUMNS)


def test_by_setting_notes_a_setting_whose_jobs_repeat_a_seed(tmp_path, capsys):
    jobs = [("frossl", ["optim.lr=0.1"], 0.5, 0.4, 1.0), ("frossl", ["optim.lr=0.1"], 0.5, 0.4, 1.0)]
    sweep_table.main([str(make_sweep(tmp_path, jobs)), "--by-setting"])
    captured = capsys.readouterr()
    assert "0.5000 ± 0.0000" in captured.out
    assert "2 jobs but only 1 distinct seed= values" in captured.err


def test_a_setting_without_any_value_of_a_metric_shows_a_dash(tmp_path):
    jobs = [("frossl", ["seed=0"], 0.5, None, 1.0), ("frossl", ["seed=1"], 0.6, None, 2.0)]
    (row,) = sweep_table.group(sweep_table.collect(make_sweep(tmp_path, jobs)))
    assert row["setting"] == "" and row["probe_top1"]["n"] == 0 and math.isnan(row["probe_top1"]["mean"])
    assert sweep_table._group_cell(row, "probe_top1") == "—"
    assert sweep_table._group_cell(row, "setting") == "(defaults)"
