"""Hydra multirun + Lightning DDP: each job must train once, and each job must start from a clean slate.

Lightning's DDP launcher starts ranks 1..N-1 by re-running the command line (``sys.argv``) with a fixed
``hydra.run.dir``. Inside a multirun job that command line is the whole sweep (``-m method=a,b,c``), so every
child would start the sweep again. While a job trains, :func:`single_job_command_line` rewrites ``sys.argv`` to
this job's own overrides and points Hydra's run directory at the job's directory, so the children join the job
that started them.

The launcher also leaves the job's rendezvous in the sweep process (``LOCAL_RANK``, ``MASTER_PORT``… in
``os.environ`` and an initialised process group whose other ranks have exited); the next job would take those
for an externally created world and wait on dead peers. After each job both are removed again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

_RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK", "RANK")


@contextmanager
def single_job_command_line() -> Iterator[None]:
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv, saved_dir = list(sys.argv), hydra_cfg.run.dir
    saved_env = {name: os.environ.get(name) for name in _RENDEZVOUS_VARIABLES}
    sys.argv = [saved_argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_dir
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
