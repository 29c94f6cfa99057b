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


EQUAL_LOSS = """
import torch
from lightly.loss import FroSSLLoss
from frossl_lit.losses.frossl import frossl_loss

torch.manual_seed(0)
for n, d, views, lam in ((64, 16, 2, 1.0), (16, 64, 2, 0.25), (32, 32, 4, 2.0)):
    z = [torch.randn(n, d, dtype=torch.float64, requires_grad=True) for _ in range(views)]
    theirs = FroSSLLoss(invariance_weight=lam)(z)
    g_theirs = torch.autograd.grad(theirs, z)
    ours, _ = frossl_loss(z, invariance_weight=lam, formulation="official")
    g_ours = torch.autograd.grad(ours, z)
    assert torch.allclose(theirs, ours, rtol=1e-12, atol=1e-12), (n, d, views, theirs.item(), ours.item())
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(g_theirs, g_ours)), (n, d, views)
print("equal")
"""


@pytest.mark.slow
@pytest.mark.skipif(not PYTHON.is_file(), reason="no experiments/peers/.venv (make peers-env)")
def test_lightly_frossl_loss_is_this_projects_official_formulation_in_float64():
    """The pair lightly (FroSSL) / frossl_lit (FroSSL) trains one loss: lightly 1.6's FroSSLLoss and
    ``frossl_loss(formulation="official")`` agree in value and gradient (lightly detaches the trace, which is the
    constant D once every column has unit norm), for N > D, N < D (its N×N Gram) and 4 views."""
    result = subprocess.run([str(PYTHON), "-c", EQUAL_LOSS], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "equal" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
