"""The harness of experiments/ (fast): a run's metrics through the package's one reader, the results sections, the
shared command line with --smoke, every script's --help, and the folder's own rules (short files, no copied
blocks)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from experiments import harness
from frossl_lit.runtime.loggers import read_metrics
from tests.conftest import compose_raw

EXPERIMENTS = Path(harness.__file__).parent
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py") if "\ndef main(" in p.read_text())


def write_metrics(run_dir: Path) -> None:
    (run_dir / "csv").mkdir(parents=True)
    (run_dir / "csv" / "metrics.csv").write_text(
        "epoch,step,train/loss,train/effective_rank,val/knn_top1,val/knn_train_seconds,val/knn_eval_seconds\n"
        ",0,,,0.1,,\n"          # the kNN pass before the first step
        "0,4,2.5,7.0,,,\n"
        "0,9,2.0,,,,\n"
        "0,9,,,0.3,10.0,1.5\n"  # after epoch 0
        "1,19,1.5,6.0,,,\n"
        "1,19,,,0.4,21.0,1.5\n"
    )


def test_a_runs_metrics_come_from_the_package_reader(tmp_path):
    write_metrics(tmp_path)
    rows = harness.metrics(tmp_path)
    assert rows == read_metrics(tmp_path) and len(rows) == 6
    assert rows[0] == {"step": 0, "val/knn_top1": 0.1} and isinstance(rows[1]["step"], int) and isinstance(rows[1]["epoch"], int)
    assert harness.last_values(tmp_path) == {"train/loss": 1.5, "train/effective_rank": 6.0}
    assert harness.knn_curve(tmp_path) == [(0, 0.1, 0.0), (1, 0.3, 10.0), (2, 0.4, 21.0)]
    with_eval = harness.knn_curve(tmp_path, ("val/knn_train_seconds", "val/knn_eval_seconds"))
    assert [seconds for *_, seconds in with_eval] == [0.0, 11.5, 22.5]
    assert harness.metrics(tmp_path / "nothing") == [] and harness.knn_curve(tmp_path / "nothing") == []


def test_a_results_section_has_the_date_cpu_and_command_and_replaces_its_title_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "cpu_model", lambda: "Test CPU 9000")
    out = tmp_path / "results" / "bench.md"
    out.parent.mkdir()
    out.write_text("# Bench\n\nWhat it measures.\n\n## Reading\n\nKept.\n")
    harness.write_section(out, "title A", "python -m experiments.bench --x 1", "| a |\n|---|\n| 1 |")
    harness.write_section(out, "title B", "python -m experiments.bench --x 2", "| b |")
    text = out.read_text()
    assert re.search(r"\n## \d{4}-\d\d-\d\d \d\d:\d\d — title A, Test CPU 9000, \S+, \d+ cores\n\nCommand: "
                     r"`python -m experiments.bench --x 1`\n\n\| a \|", text)
    harness.write_section(out, "title A", "python -m experiments.bench --x 3", "| a2 |", replace=True)
    text = out.read_text()
    assert text.startswith("# Bench\n\nWhat it measures.\n\n## Reading\n\nKept.\n")
    assert "--x 1" not in text and "| a |" not in text and text.index("title B") < text.index("title A")
    assert text.endswith("Command: `python -m experiments.bench --x 3`\n\n| a2 |\n") and "\n\n\n" not in text


def test_the_cpu_model_is_lscpus():
    assert harness.cpu_model() and "\n" not in harness.cpu_model()


def test_smoke_takes_the_small_defaults_and_writes_outside_the_recorded_results():
    cli = harness.parser("experiments.demo", "demo", "experiments/results/demo.md", training=True, runs=True)
    cli.add_argument("--steps", type=int, default=40)
    cli.add_argument("--runs", nargs="*", default=["a", "b"])
    plain = harness.parse(cli, ["--steps", "7"], smoke={"steps": 2, "runs": ["a"]}, smoke_extra=["x=1"])
    assert (plain.steps, plain.runs, plain.extra, plain.out, plain.runs_dir) == (7, ["a", "b"], [], "experiments/results/demo.md", "outputs/demo")
    assert plain.command == "python -m experiments.demo --steps 7"
    smoke = harness.parse(cli, ["--smoke", "--runs", "b", "--extra", "y=2"], smoke={"steps": 2, "runs": ["a"]}, smoke_extra=["x=1"])
    assert (smoke.steps, smoke.runs, smoke.extra) == (2, ["b"], ["x=1", "y=2"])  # what the command line says stays
    assert (smoke.out, smoke.runs_dir) == ("outputs/smoke/demo.md", "outputs/smoke/demo")
    assert harness.parse(cli, ["--smoke", "--out", "/tmp/x.md"]).out == "/tmp/x.md"


def test_the_cifar_small_cnn_preset_is_the_override_list_the_scripts_copied():
    copied = ["data=cifar10", "data.holdout_fraction=0.1", "backbone=small_cnn", "backbone.widths=[32,64,128,256]",
              "schedule=short", "schedule.optimizer.lr=2e-3", "trainer.enable_progress_bar=false"]
    for method in ("frossl", "vicreg"):
        assert compose_raw([f"method={method}", *copied]) == compose_raw([f"method={method}", "experiment=base/cifar10_small_cnn"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_parses_its_command_line(script, capsys):
    module = importlib.import_module(f"experiments.{script}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: python -m experiments.{script} ") and "--smoke" in usage and "--out" in usage


def test_the_experiments_folder_has_short_files_and_no_copied_blocks():
    """Each file under 250 lines; no 6 consecutive non-blank lines appear in two files (a shared piece belongs in
    experiments/harness.py or the package)."""
    files = sorted(EXPERIMENTS.glob("*.py"))
    assert {"harness", *SCRIPTS} <= {p.stem for p in files} and not list(EXPERIMENTS.glob("_results.py"))
    seen: dict[tuple[str, ...], str] = {}
    for path in files:
        lines = [line.strip() for line in path.read_text().splitlines()]
        assert len(lines) < 250, f"{path.name}: {len(lines)} lines"
        code = [line for line in lines if line]
        for start in range(len(code) - 5):
            block = tuple(code[start:start + 6])
            owner = seen.setdefault(block, path.name)
            assert owner == path.name, f"{path.name} repeats 6 lines of {owner}: {block}"
        assert "sys.path.insert" not in path.read_text(), path.name
