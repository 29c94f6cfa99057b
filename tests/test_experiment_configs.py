"""Experiment presets smoke-run, sweeps run each job once (DDP included), the SLURM launcher instantiates,
W&B offline runs carry what the dashboards need and resume into the same run, offline evaluation agrees with
the online probe, and two 'nodes' on this machine train together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from frossl_lit.sweep_table import collect
from frossl_lit.sweep_table import main as sweep_table_main
from frossl_lit.train import train
from tests.conftest import CONF_DIR, TINY, compose_config, compose_raw, free_port, make_tiny_dataset, run_cli

PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
# shrink what the presets set for GPUs: tiny data in the real formats, CPU, fp32, small widths, a few steps
SMOKE = [
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=1", "trainer.precision=32-true", "trainer.strategy=auto",
    "trainer.sync_batchnorm=false", "trainer.max_steps=1", "trainer.enable_progress_bar=false",
    "method.projector.hidden_dims=[64]", "method.projector.out_dim=32", "data.batch_size=2", "data.eval_batch_size=8",
    "data.num_workers=0", "callbacks.spectrum.every_n_steps=1", "model.compile=false", "model.channels_last=false",
    # a ResNet's checkpoints, plots and kNN passes are most of a smoke run; test_resume.py and test_train.py cover them
    "callbacks.checkpoint_best=null", "callbacks.checkpoint_last=null", "+trainer.enable_checkpointing=false",
    "callbacks.plots=null", "callbacks.knn=null", "callbacks.labelfree=null",
]


# what a method needs besides SMOKE to train on a batch of 2: W-MSE whitens sub-batches of whitening_size samples,
# and 2 samples of 32 dimensions whiten only with a shrinkage
SMOKE_BY_METHOD = {"wmse": ["method.whitening_size=2", "method.whitening_eps=0.5"]}


class Seen(L.Callback):
    """What a run really trained with: the optimizer's groups, the method's hyperparameters, the views per batch."""

    last: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        groups = [{k: g[k] for k in ("initial_lr", "weight_decay", "momentum") if k in g} for g in trainer.optimizers[0].param_groups]
        Seen.last = {"groups": groups, "hparams": dict(pl_module.hparams), "views": len(batch[0]),
                     "backbone": type(pl_module.backbone).__name__}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_trains_with_its_own_values(preset, tmp_path):
    published = compose_config([f"experiment={preset}"], tmp_path / "run")
    choices = HydraConfig.get().runtime.choices
    method, dataset = choices["method"], choices["data"]
    assert preset.startswith(f"{method}_{dataset}"), "a preset is named <method>_<dataset>[_<variant>]"
    data_dir, recipes = tmp_path / "run" / "data", len(published.augment.recipes)
    extra = make_tiny_dataset(dataset, data_dir, num_recipes=recipes)
    seen = f"+callbacks.seen={{_target_: {__name__}.Seen}}"
    own = SMOKE_BY_METHOD.get(method, [])
    cfg = compose_config([f"experiment={preset}", *SMOKE, *own, *extra, seen], tmp_path / "run")
    if published.preset.get("source"):  # the published settings use LARS, SGD (W-MSE: Adam; DINO ViT: AdamW) at lr × batch / 256
        assert cfg.schedule.optimizer._target_ in ("timm.optim.Lars", "torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW")
        assert cfg.schedule.lr_reference_batch == 256
    summary = train(cfg)
    assert summary["global_step"] == 1 and summary["method"] == method and summary["data"] == dataset
    # what trained is the preset's: method weights, views, backbone, optimizer (lr scaled by batch 2 / 256)
    trained = Seen.last
    shrunk = {o.split("=")[0].removeprefix("method.") for o in own}  # a batch of 2 cannot hold W-MSE's whitening groups
    for key, value in published.method.items():
        if key not in ("_target_", "projector", "predictor", *shrunk):
            assert trained["hparams"][key] == value, f"{preset}: method.{key}"
    assert trained["views"] == published.augment.num_views + published.augment.small_views
    kinds = {"SmallCNN": "SmallCNN", "resnet": "ResNet", "vit_": "VisionTransformer"}
    assert trained["backbone"] == next(k for part, k in kinds.items() if part in f"{published.backbone._target_} {published.backbone.get('name')}")
    optimizer = published.schedule.optimizer
    scale = 2 / published.schedule.lr_reference_batch if published.schedule.get("lr_reference_batch") else 1.0
    for group in trained["groups"]:  # weights (and a static-lr predictor's), then biases + norms unless they decay too
        no_decay = group["weight_decay"] == 0.0
        lr_scale = published.schedule.get("no_decay_lr_scale", 1.0) if no_decay else 1.0
        assert group["initial_lr"] == pytest.approx(optimizer.lr * scale * lr_scale)
        assert group.get("momentum") == optimizer.get("momentum")
    assert {g["weight_decay"] for g in trained["groups"]} == (
        {optimizer.weight_decay} if published.schedule.get("decay_bias_and_norm") else {optimizer.weight_decay, 0.0})


def test_paper_schedule_scales_lr_by_global_batch_and_warms_up(tmp_path):
    """LARS at 0.3 × 64/256, linear warm-up from 3e-5 over 10 of 20 epochs (22 steps each), bias/norm group without decay."""
    cfg = compose_config([*TINY, "schedule=paper", "schedule.max_epochs=20", "trainer.max_steps=4", "trainer.log_every_n_steps=1"], tmp_path)
    train(cfg)
    import csv

    with open(tmp_path / "csv" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("lr-Lars/pg1")]
    peak, warmup_steps, start = 0.3 * 64 / 256, 10 * (1437 // 64), 3e-5  # solo-learn warms up from 3e-5 (unscaled)
    for row in rows:
        step = int(row["step"])
        assert float(row["lr-Lars/pg1"]) == pytest.approx(start + (peak - start) * step / warmup_steps, rel=1e-5, abs=1e-9)
        assert float(row["lr-Lars/pg2"]) == pytest.approx(float(row["lr-Lars/pg1"]))
    assert len(rows) >= 3


@pytest.mark.slow  # 13 s; make test keeps tests/losses/test_mmcr.py's four-method multirun
def test_sweep_runs_three_jobs_and_the_table_lists_them(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "method=frossl,vicreg,barlow_twins", *TINY, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = collect(sweep)
    assert [row["method"] for row in rows] == ["frossl", "vicreg", "barlow_twins"]
    assert all(row["knn_top1"] is not None and row["probe_top1"] is not None for row in rows)
    sweep_table_main([str(sweep), "--csv", str(tmp_path / "table.csv")])
    printed = capsys.readouterr().out
    assert all(name in printed for name in ("method=frossl", "method=vicreg", "method=barlow_twins"))
    assert len((tmp_path / "table.csv").read_text().splitlines()) == 4


@pytest.mark.slow  # about 20 s or more: make test-full
def test_multirun_with_ddp_trains_each_job_once(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["-m", "method=frossl,vicreg", *TINY, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=1",
         "data.batch_size=32", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_frossl_digits", "1_vicreg_digits"]  # no job launched twice, no nested sweep
    assert result.stdout.count("frossl_lit summary") == 2
    for job in jobs:
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["global_step"] == 1437 // 64
        lines = (sweep / job / "csv" / "metrics.csv").read_text().splitlines()
        assert sum(1 for line in lines if line.split(",")[0] == "0") > 0  # one job's log, written once


def test_submitit_slurm_launcher_composes_and_instantiates():
    cfg = compose_raw(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher" and launcher.params["partition"] == "gpu"
    cfg = compose_raw(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"], return_hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == 4 and cfg.hydra.launcher.nodes == 2 and cfg.hydra.launcher.gpus_per_node == 4


def _wandb_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow  # about 20 s or more: make test-full
def test_wandb_offline_run_has_dashboard_content_and_resume_keeps_the_run_id(tmp_path):
    env = {"WANDB_BASE_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    first = tmp_path / "first"
    result = run_cli([*TINY, "logger=wandb", "trainer.max_epochs=1", "callbacks.spectrum.every_n_steps=1", f"hydra.run.dir={first}"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = _wandb_files(first)
    run_id = run.name.rsplit("-", 1)[1]
    records = (run / f"run-{run_id}.wandb").read_bytes()
    for needle in (b"frossl_digits", b"train/frossl/regularizer", b"train/effective_rank", b"train/spectrum", b"val/knn_top1", b"invariance_weight"):
        assert needle in records, needle
    assert (first / "curves.png").is_file() and (first / "spectrum.png").is_file()
    second = tmp_path / "second"
    result = run_cli(
        [*TINY, "logger=wandb", "trainer.max_epochs=2", "resume.override_schedule=true", f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={second}"],
        cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (resumed,) = _wandb_files(second)
    assert resumed.name.endswith(run_id)


@pytest.mark.slow  # about 20 s or more: make test-full
def test_offline_linear_and_knn_agree_with_the_online_figures(tmp_path):
    run_dir = tmp_path / "pretrain"
    result = run_cli(["trainer.max_epochs=15", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    for module in ("linear", "knn"):
        out = subprocess.run(
            [sys.executable, "-m", f"frossl_lit.{module}", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / module}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    linear = json.loads((tmp_path / "linear" / "linear.json").read_text())
    knn = json.loads((tmp_path / "knn" / "knn.json").read_text())
    assert abs(linear["linear_top1"] - summary["probe_top1"]) <= 0.02, (linear, summary)
    assert knn["knn_top1"] == pytest.approx(summary["knn_top1"], abs=1e-6)
    exported = tmp_path / "backbone.pt"
    subprocess.run([sys.executable, "-m", "frossl_lit.export", str(ckpt), str(exported)], check=True, cwd=tmp_path)
    from frossl_lit.models import SmallCNN

    SmallCNN([32, 64, 128]).load_state_dict(torch.load(exported))


@pytest.mark.slow  # 15 s; make test keeps tests/test_train.py's two-process DDP run
def test_two_nodes_through_torchrun_write_one_summary(tmp_path):
    port, run_dir = free_port(), tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("WANDB_API_KEY", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}",
             "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "frossl_lit.train", *TINY,
             "trainer=ddp", "trainer.devices=1", "trainer.num_nodes=2", "trainer.max_epochs=1", "data.batch_size=32",
             f"hydra.run.dir={run_dir}"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 1437 // 64
    assert sum(out.count("frossl_lit summary") for out, _ in outputs) == 1
