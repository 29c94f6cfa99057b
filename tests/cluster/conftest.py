"""A real SLURM on this machine for the slow cluster tests: ``tests/cluster/slurm.sh up`` once per session, ``down`` at
the end when this session started it. Needs root (the script installs Debian packages and writes /etc/slurm)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("slurm.sh")


@pytest.fixture(scope="session")
def slurm():
    """SLURM up (installed and started if needed); yields the script's path."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM tests bring up slurmctld/slurmd with tests/cluster/slurm.sh, which needs root")
    if not shutil.which("sbatch") and not shutil.which("apt-get"):
        pytest.skip("no SLURM here and no apt-get to install it")
    was_up = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0
    up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, f"slurm.sh up failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}"
    yield SCRIPT
    if not was_up:
        subprocess.run([str(SCRIPT), "down"], capture_output=True, timeout=120)
