"""The peer benchmark end to end on tiny data (``python -m experiments.peers.bench --smoke``), in the peers' own
environment; skipped where ``make peers-env`` has not built it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / "experiments/peers/.venv/bin/python"


@pytest.mark.slow
@pytest.mark.skipif(not PYTHON.is_file(), reason="no experiments/peers/.venv (make peers-env)")
def test_peer_benchmark_runs_end_to_end_on_tiny_data(tmp_path):
    out = tmp_path / "peers.md"
    result = subprocess.run(
        [str(PYTHON), "-m", "experiments.peers.bench", "--smoke", "--workers", "0", "--out", str(out),
         "--runs-dir", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    for name in ("frossl_lit (FroSSL)", "lightly (FroSSL)", "frossl_lit (VICReg)", "stable-pretraining (VICReg)"):
        assert name in text
    assert "frossl_lit / peer" in text and "kNN top-1" in text
    assert (tmp_path / "peers_results.json").is_file() and (tmp_path / "peers_knn.png").is_file()
