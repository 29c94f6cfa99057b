"""Every command-line entry point: a bad argument exits 2 with one line that says what to do; the happy paths are
in test_train.py (train), test_experiments.py (linear, knn, export, sweep_table), test_show_views.py and
data/test_stream.py (prepare)."""

from __future__ import annotations

import json

import pytest

from frossl_lit import export, sweep_table
from frossl_lit.evaluation.offline import run_evaluation
from frossl_lit.knn import knn_evaluation
from frossl_lit.linear import linear_evaluation
from tests.conftest import compose_raw


@pytest.mark.parametrize("name,evaluate", [("knn", knn_evaluation), ("linear", linear_evaluation)])
def test_offline_evaluation_of_a_missing_checkpoint_exits_2_with_one_line(name, evaluate, tmp_path, capsys):
    cfg = compose_raw([f"ckpt={tmp_path}/missing.ckpt", f"paths.output_dir={tmp_path}"], "evaluate")
    with pytest.raises(SystemExit) as stop:
        run_evaluation(name, evaluate, cfg)
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"frossl_lit: error: ckpt={tmp_path}/missing.ckpt does not exist; point it at a run's checkpoints/last.ckpt (or best-*.ckpt)"]


def test_prepare_into_an_existing_stream_exits_2_with_one_line(tmp_path, capsys):
    from frossl_lit import prepare

    (tmp_path / "stream" / "train").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        prepare.run(compose_raw([f"out={tmp_path / 'stream'}"], "prepare"))
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"frossl_lit: error: {tmp_path / 'stream'} already holds a stream; delete it or choose another out="]


def test_prepare_of_missing_data_exits_2_with_the_datasets_own_message(tmp_path, capsys):
    from frossl_lit import prepare

    with pytest.raises(SystemExit) as stop:
        prepare.run(compose_raw(["data=cifar10", f"data.root={tmp_path}", f"out={tmp_path / 'stream'}"], "prepare"))
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.strip().startswith("frossl_lit: error: CIFAR10 not found: looked for") and "Traceback" not in error
    assert not (tmp_path / "stream").exists()


def test_export_of_a_missing_checkpoint_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        export.main([str(tmp_path / "missing.ckpt"), str(tmp_path / "out.pt")])
    assert stop.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_sweep_table_of_a_folder_without_runs_exits_2_and_lists_one_that_has_them(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        sweep_table.main([str(tmp_path)])
    assert stop.value.code == 2 and "is it a finished multirun directory?" in capsys.readouterr().err
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "summary.json").write_text(json.dumps({"method": "frossl", "knn_top1": 0.5, "probe_top1": 0.4}))
    sweep_table.main([str(tmp_path)])
    printed = capsys.readouterr().out
    assert "0.5000" in printed and "0.4000" in printed
