"""Every script in experiments/ end to end with ``--smoke`` on tiny data (the CIFAR ones on a tiny CIFAR-10 in the
official layout), its results file in tmp_path (experiments/results/ untouched), as ``main(argv)`` in this process
(the training runs are subprocesses, as for a user); one script also as ``python -m experiments.<script>``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, write_cifar
from tests.experiments.test_harness import SCRIPTS

pytestmark = pytest.mark.slow
RESULTS = REPO / "experiments" / "results"

# script: (its options besides --smoke/--out, given the tiny CIFAR root and tmp_path; a line its results must hold)
CASES = {
    "bench_augment": (lambda root, tmp: ["--root", str(root)], "| batched ViewAugment, 2 threads, cpu |"),
    "bench_decode": (lambda root, tmp: ["--cifar", str(root), "--scratch", str(tmp / "scratch")], "| CIFAR-10 LitData stream |"),
    "bench_losses": (lambda root, tmp: [], "| 32 | 64 | 2 |"),
    "bench_methods_cifar10": (lambda root, tmp: ["--root", str(root), "--runs-dir", str(tmp / "runs")], "| frossl_v2 | 2 |"),
    "bench_methods_digits": (lambda root, tmp: ["--runs-dir", str(tmp / "runs")], "| frossl |"),
    "bench_step": (lambda root, tmp: ["--root", str(root)], "| small_cnn | eager |"),
    "gpu_check": (lambda root, tmp: ["--root", str(root)], "| eager fp32 |"),
    "laptop_cifar10": (lambda root, tmp: ["--root", str(root), "--runs-dir", str(tmp / "runs")], "| frossl |"),
    "study_cifar10": (lambda root, tmp: ["--dir", str(tmp / "study")], "| frossl | 1 |"),
    "views_cifar10": (lambda root, tmp: ["--root", str(root), "--runs-dir", str(tmp / "runs")], "| frossl_v2 | 2 |"),
    "views_collapse": (lambda root, tmp: ["--root", str(root), "--runs-dir", str(tmp / "runs")], "| V=4, λ=1 (collapsing) |"),
}


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> Path:
    """200 training images (20 held out, 2 a class) and 20 test images, random pixels."""
    root = tmp_path_factory.mktemp("data") / "cifar10"
    write_cifar(root, num_train=200, num_test=20)
    return root


@pytest.fixture(autouse=True)
def _torch_threads():
    threads = torch.get_num_threads()  # the benchmarks set their own
    yield
    torch.set_num_threads(threads)


def results_listing() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in RESULTS.rglob("*")}


def test_every_script_has_a_smoke_case():
    assert sorted(CASES) == SCRIPTS


@pytest.mark.parametrize("script", sorted(CASES))
def test_script_runs_end_to_end_on_tiny_data(script, tiny_cifar, tmp_path, capsys):
    options, expected = CASES[script]
    before = results_listing()
    out = tmp_path / "results" / f"{script}.md"
    argv = ["--smoke", "--out", str(out), *options(tiny_cifar, tmp_path)]
    importlib.import_module(f"experiments.{script}").main(argv)
    text = out.read_text()
    assert f"Command: `python -m experiments.{script} --smoke --out {out}" in text, text
    assert expected in text, text
    assert results_listing() == before, "a smoke run wrote into experiments/results/"
    assert "failed" not in capsys.readouterr().out


def test_a_script_runs_as_a_module_from_the_repository_root(tmp_path):
    out = tmp_path / "loss_cost.md"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "experiments.bench_losses", "--smoke", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"Command: `python -m experiments.bench_losses --smoke --out {out}`" in out.read_text()


def test_laptop_tuning_runs_seven_trials_per_method_and_names_the_best(tiny_cifar, tmp_path, capsys):
    from experiments import laptop_cifar10

    out = tmp_path / "laptop.md"
    laptop_cifar10.main(["--smoke", "--tune", "--methods", "barlow_twins", "--out", str(out), "--root", str(tiny_cifar),
                         "--runs-dir", str(tmp_path / "runs")])
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| barlow_twins |")]
    assert len(rows) == 7, text
    for value in ("0.00255", "0.0051", "0.0102", "0.0204", "0.0408"):
        assert f"off_diagonal_weight={value} |" in text, text
    assert "lr 0.001 |" in text and "lr 0.004 |" in text, text
    assert "- barlow_twins: method.off_diagonal_weight=" in text and "(7 trials)" in text, text
    assert "failed" not in capsys.readouterr().out
