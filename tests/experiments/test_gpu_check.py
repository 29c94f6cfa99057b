"""experiments/gpu_check.py: the whole check on a CUDA GPU (``gpu`` marker, skipped without one), its smoke path
on the CPU, and the one line it answers without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, write_cifar

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def test_the_smoke_path_runs_on_the_cpu(tmp_path):
    from experiments import gpu_check

    root = tmp_path / "cifar10"
    write_cifar(root, num_train=200, num_test=20)
    out = tmp_path / "gpu_check.md"
    gpu_check.main(["--smoke", "--out", str(out), "--root", str(root)])
    text = out.read_text()
    assert f"Command: `python -m experiments.gpu_check --smoke --out {out}" in text
    assert "| eager fp32 |" in text and "| bf16 + channels-last |" in text
    assert "total torch.float32" in text and ": matches;" in text


def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    from experiments import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--out", str(tmp_path / "x.md")])
    printed = capsys.readouterr().out
    assert stopped.value.code == 2 and printed.count("\n") == 1 and "needs a CUDA GPU" in printed
    assert not (tmp_path / "x.md").exists()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_whole_check_on_a_gpu(tmp_path):
    out = tmp_path / "gpu_check.md"
    result = subprocess.run([sys.executable, "-m", "experiments.gpu_check", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    text = out.read_text()
    assert ": matches;" in text, text  # bf16 FroSSL within 1e-2 of fp32 over 200 steps
    dtypes = next(line for line in text.splitlines() if line.startswith("Under bf16 autocast:"))
    assert "total torch.float32" in dtypes and "bfloat16" not in dtypes.split("terms:")[1], dtypes  # fp32 maths
    rows = [line.split("|") for line in text.splitlines() if line.startswith(("| eager fp32 | ", "| bf16 + "))][:2]
    assert [row[4].strip() for row in rows] == ["0.00", "0.00"], text  # no host sync in a steady-state step
