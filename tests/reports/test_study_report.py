"""frossl_lit.reports.study_report and .study_plots on a study's directory as the compare command leaves it: the
figures of report.json, the tables of report.md and the PNGs, without training (the whole command runs in
tests/test_compare.py)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from frossl_lit.reports.study_report import write_report
from frossl_lit.runtime.study import Method

# per method and seed: kNN top-1 before training and after each of 3 epochs
CURVES = {"frossl": {0: [0.1, 0.4, 0.6, 0.8], 1: [0.1, 0.5, 0.7, 0.9]}, "vicreg": {0: [0.1, 0.3, 0.4, 0.5], 1: [0.1, 0.3, 0.5, 0.7]}}


@dataclass
class Trial:
    params: dict
    value: float | None
    state: TrialState = TrialState.COMPLETE


class FakeStudy:
    """What write_report reads of a :class:`frossl_lit.runtime.study.Study`, over files written here."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.cfg = OmegaConf.create({"name": "smoke", "metric": "knn_top1", "thresholds": [0.6], "reference": "frossl",
                                     "final": {"seeds": [0, 1]}})
        self.methods = [Method(name, (f"method={name}",), {"schedule.optimizer.lr": "interval(0.1, 1)"}) for name in CURVES]
        self.trials = {name: [Trial({"schedule.optimizer.lr": lr}, top1) for lr, top1 in ((0.1, 0.5), (0.3, 0.7))] for name in CURVES}
        for method in self.methods:
            for index, trial in enumerate(self.trials[method.name]):
                self._write(self.trial_dir(method, index), {"knn_top1": trial.value, "rankme": 10 * trial.value}, [])
            for seed, curve in CURVES[method.name].items():
                summary = {"knn_top1": curve[-1], "probe_top1": curve[-1] - 0.1, "images_per_epoch": 100,
                           "step_seconds": 0.01, "peak_memory_gib": 1.0, "peak_memory_kind": "rss", "wall_seconds": 3.0}
                self._write(self.final_dir(method, seed), summary, curve)

    @staticmethod
    def _write(run_dir: Path, summary: dict, curve: list[float]) -> None:
        (run_dir / "csv").mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps(summary))
        with open(run_dir / "csv" / "metrics.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "epoch", "val/knn_top1", "val/knn_train_seconds"])
            writer.writeheader()
            writer.writerow({"step": 0, "val/knn_top1": curve[0]} if curve else {"step": 0})
            for epoch, top1 in enumerate(curve[1:]):
                writer.writerow({"step": 10 * (epoch + 1), "epoch": epoch, "val/knn_top1": top1, "val/knn_train_seconds": epoch + 1.0})

    def optuna_study(self, method: Method) -> str:
        return method.name

    def counted_trials(self, name: str) -> list[Trial]:
        return self.trials[name]

    def best_params(self, method: Method) -> dict:
        return max(self.trials[method.name], key=lambda t: t.value).params

    def trial_dir(self, method: Method, index: int) -> Path:
        return self.dir / "tuning" / method.name / f"trial_{index:03d}"

    def final_dir(self, method: Method, seed: int) -> Path:
        return self.dir / "final" / method.name / f"seed_{seed}"


def test_the_report_holds_each_methods_figures_over_seeds_and_its_plots(tmp_path):
    path = write_report(FakeStudy(tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    frossl, vicreg = report["results"]["frossl"], report["results"]["vicreg"]
    assert frossl["knn_top1"]["mean"] == pytest.approx(0.85) and frossl["knn_top1"]["n"] == 2
    assert frossl["crossings"]["0.6"]["per_seed_epochs"] == [2, 2] and frossl["crossings"]["0.6"]["reached"] == 2
    assert vicreg["crossings"]["0.6"]["per_seed_epochs"] == [None, 3] and vicreg["crossings"]["0.6"]["reached"] == 1
    assert frossl["best_params"] == {"schedule.optimizer.lr": 0.3}
    assert report["paired"]["vicreg"]["knn_top1"]["mean"] == pytest.approx(0.25)  # frossl minus vicreg, same seeds
    assert report["timing"]["frossl"]["seconds_to"]["0.6"]["mean"] == pytest.approx(2.0)
    assert report["rank_agreement"]["rankme"]["tau"] == pytest.approx(1.0)  # rankme ranks the trials as the kNN does
    markdown = path.read_text()
    assert "| frossl | 2 |" in markdown and "| vicreg | 2 |" in markdown and "(1/2 reached)" in markdown
    for png in ("knn_curves.png", "efficiency.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"![{png}]({png})" in markdown
