"""Every method in conf/method/ joins one Hydra multirun (``-m method=…``) with its defaults, one job each."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CONF_DIR, TINY, run_cli

METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))


@pytest.mark.slow  # 16 s; test_compare.py's Optuna sweep keeps a Hydra multirun in make test
def test_every_method_joins_one_multirun(tmp_path):
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("data.batch_size=")]  # W-MSE whitens sub-batches of 128
    result = run_cli(["-m", f"method={','.join(METHODS)}", *tiny, "trainer.max_steps=2", "callbacks.knn=null", "callbacks.labelfree=null", "data.batch_size=128",
                      "callbacks.checkpoint_best.monitor=val/probe_top1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert sorted(p.name.split("_", 1)[1] for p in jobs) == [f"{m}_digits" for m in METHODS]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert {s["method"] for s in summaries} == set(METHODS) and all(s["global_step"] == 2 for s in summaries)


@pytest.mark.slow  # 8-11 minutes on 2 cores: the acceptance command, digits with every default
@pytest.mark.timeout(1500)  # its child's own limit, above pyproject's 600 s
def test_the_contrastive_and_asymmetric_baselines_gain_five_knn_points_on_digits(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "method=simclr,mocov2,byol,simsiam", "trainer.enable_progress_bar=false",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = {s["method"]: s for s in (json.loads(p.read_text()) for p in sweep.glob("*/summary.json"))}
    assert sorted(summaries) == ["byol", "mocov2", "simclr", "simsiam"]
    for method, summary in summaries.items():
        assert summary["knn_top1"] >= summary["knn_top1_init"] + 0.05, (method, summary["knn_top1_init"], summary["knn_top1"])


@pytest.mark.slow  # about 10-15 minutes on 2 cores: the acceptance command of the clustering/distillation/whitening baselines
@pytest.mark.timeout(2400)
def test_the_clustering_distillation_and_whitening_baselines_gain_five_knn_points_on_digits(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "method=swav,dino,wmse,corinfomax", "trainer.enable_progress_bar=false",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=2400)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = {s["method"]: s for s in (json.loads(p.read_text()) for p in sweep.glob("*/summary.json"))}
    assert sorted(summaries) == ["corinfomax", "dino", "swav", "wmse"]
    for method, summary in summaries.items():
        assert summary["knn_top1"] >= summary["knn_top1_init"] + 0.05, (method, summary["knn_top1_init"], summary["knn_top1"])
