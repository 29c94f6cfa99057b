"""Every method in conf/method/ joins one Hydra multirun (``-m method=…``) with its defaults, one job each."""

from __future__ import annotations

import json

from tests.conftest import CONF_DIR, TINY, run_cli

METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))


def test_every_method_joins_one_multirun(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", f"method={','.join(METHODS)}", *TINY, "trainer.max_steps=2", "callbacks.knn=null",
                      "callbacks.checkpoint_best.monitor=val/probe_top1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert sorted(p.name.split("_", 1)[1] for p in jobs) == [f"{m}_digits" for m in METHODS]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert {s["method"] for s in summaries} == set(METHODS) and all(s["global_step"] == 2 for s in summaries)
