"""No traceback for any value a user can type: every bad input below exits with status 2 and at most 3 lines on
stderr that name the key (or the given fragment), through the entry points a user runs.

One table, one runner. A row is a command (train, knn, linear, export), its arguments, and the fragment its one
line must hold; ``setup`` writes files under the test's directory first and returns more arguments. The rows run
in-process (``main()`` with ``sys.argv`` set, as the console scripts call it), so the table stays fast; one real
subprocess proves the command line behaves the same (and test_checks.py's for train). A train row gets ``TINY`` and
its own ``hydra.run.dir``; rows that fail only after the data is set up keep the run tiny (``FAST``). To add a row,
append a :class:`Row`. Below the table: command lines the override check must let through, and fp16 on a CPU.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning  # noqa: F401  imported at collection: its log handler binds to the session's stderr, not one test's capsys
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from frossl_lit.config.checks import check_config
from frossl_lit.config.overrides import precheck
from frossl_lit.runtime.errors import UserError
from tests.conftest import TINY, compose_config, run_cli, write_cifar, write_jpegs

FAST = ["trainer.max_steps=1", "callbacks.knn.at_start=false", "callbacks.plots=null"]
TINY_FOLDER = ["data=folder", "augment.recipes.0.size=32", "+augment.eval_size=32", "data.num_workers=0", "data.batch_size=4",
               "callbacks.knn.k=5"]


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...] = ()
    expect: str = ""  # what the line must hold (default: the key of the first argument)
    command: str = "train"  # train | knn | linear | export
    setup: Callable[[Path], list[str]] | None = None  # writes files under tmp_path, returns more arguments

    def fragment(self) -> str:
        return self.expect or self.args[0].lstrip("+~").split("=", 1)[0]


# -- setups: files a row needs ---------------------------------------------------------------------------------
def _text_file(tmp_path: Path, name: str = "notes.ckpt") -> Path:
    (tmp_path / name).write_text("not a checkpoint\n")
    return tmp_path / name


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_checkpoint(tmp_path: Path) -> Path:
    torch.save({"state_dict": {"backbone.w": torch.zeros(1000)}, "global_step": 3}, tmp_path / "last.ckpt")
    return _truncated(tmp_path / "last.ckpt")


_PRETRAINED: list[Path] = []


def _run_dir(tmp_path: Path) -> Path:
    """A pretraining run as frossl_lit.train leaves it, without training: .hydra/config.yaml and a checkpoint
    holding the (untrained) backbone. Made once per session (the rows only read it)."""
    if _PRETRAINED:
        return _PRETRAINED[0]
    run = tmp_path / "pretrain"
    cfg = compose_config(TINY, run)
    GlobalHydra.instance().clear()
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    backbone = instantiate(cfg.backbone)
    (run / "checkpoints").mkdir()
    record = {"RunRecord": {"config": OmegaConf.to_container(cfg, resolve=True)}}  # as frossl_lit.runtime.resume writes it
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()}, "callbacks": record},
               run / "checkpoints" / "last.ckpt")
    _PRETRAINED.append(run / "checkpoints" / "last.ckpt")
    return _PRETRAINED[0]


def _cifar(tmp_path: Path, truncate: str | None = None) -> list[str]:
    folder = write_cifar(tmp_path / "cifar10", num_train=100, num_test=20)
    if truncate:
        _truncated(folder / truncate)
    return ["data=cifar10", f"data.root={tmp_path / 'cifar10'}", "data.batch_size=8"]


def _folder(tmp_path: Path, kind: str) -> list[str]:
    root = tmp_path / "images"
    if kind == "empty":
        root.mkdir()
    elif kind == "text":
        (root / "class_0").mkdir(parents=True)
        (root / "class_0" / "readme.txt").write_text("no images here\n")
    else:
        write_jpegs(root, classes=2, per_class=6, size=24)
        if kind == "truncated":
            _truncated(next((root / "class_0").glob("*.jpg")))
        if kind == "broken":
            (root / "class_0" / "0_0.jpg").write_bytes(b"broken")
    return [*TINY_FOLDER, f"data.root={root}"]


_LOCKS: list[int] = []


def _run_in(tmp_path: Path, state: str) -> list[str]:
    """``tmp_path/run`` as another run leaves it: ``finished`` (its summary and checkpoint) or ``locked`` (a run in
    it holds the lock: a second open file description conflicts even within this process)."""
    import fcntl
    import json
    import os

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    if state == "finished":
        (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
        (run / "summary.json").write_text(json.dumps({"method": "frossl", "data": "digits", "epochs": 8, "global_step": 40}))
    else:
        descriptor = os.open(run / ".run.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(descriptor, json.dumps({"pid": 4242, "started": 0, "command": "python -m frossl_lit.train seed=1"}).encode())
        _LOCKS.append(descriptor)
    return []


def _other_backbone_config(tmp_path: Path) -> list[str]:
    """The pretraining run's checkpoint, evaluated with the config of a run whose backbone is wider."""
    last = _run_dir(tmp_path)
    cfg = OmegaConf.load(last.parent.parent / ".hydra" / "config.yaml")
    cfg.backbone.widths = [8, 32]
    OmegaConf.save(cfg, tmp_path / "wider.yaml")
    return [f"ckpt={last}", f"pretrain_config={tmp_path / 'wider.yaml'}"]


ROWS = [
    # -- the run directory (frossl_lit.runtime.rundir, before Hydra writes into it) -------------------------------------
    Row("run dir holding a run", (), "already holds a finished run of frossl on digits", setup=lambda p: _run_in(p, "finished")),
    Row("run dir in use", (), "is in use by process 4242", setup=lambda p: _run_in(p, "locked")),
    Row("run dir through a file", (), "cannot be used as a run directory (a part of the path is a file)",
        setup=lambda p: [f"hydra.run.dir={_text_file(p, 'a_file')}/run"]),
    Row("run dir under /proc", ("hydra.run.dir=/proc/frossl_lit_run",), "hydra.run.dir=/proc/frossl_lit_run cannot be used"),
    Row("resume both ways", ("resume.auto=true", "resume.overwrite=true"), "contradict each other"),
    # -- a checkpoint of another run's shape (frossl_lit.runtime.resume) ---------------------------------------------------
    Row("ckpt of another method", ("method=vicreg",), "is a checkpoint of a FroSSL run whose method._target_",
        setup=lambda p: [f"ckpt_path={_run_dir(p)}"]),
    Row("ckpt of another width", ("backbone.widths=[8,32]",), "whose backbone.widths is [8, 16], but this run's is [8, 32]",
        setup=lambda p: [f"ckpt_path={_run_dir(p)}"]),
    Row("knn with another run's config", (), "was trained with backbone.widths=[8, 16], but", command="knn",
        setup=_other_backbone_config),
    # -- values of the training config (frossl_lit.config.checks, before anything heavy) -------------------------------
    *(Row(f"batch {v}", (f"data.batch_size={v}",)) for v in ("-1", "abc", "0", "1")),
    Row("batch larger than the data", ("data.batch_size=100000", *FAST), "data.batch_size=100000 × 1 device(s) is more than the 1437"),
    Row("no views", ("augment.num_views=0",)),
    Row("negative lr", ("schedule.optimizer.lr=-1",)),
    Row("nan lr", ("schedule.optimizer.lr=nan",)),
    Row("negative epochs", ("trainer.max_epochs=-5",)),
    Row("no steps", ("trainer.max_steps=0",)),
    Row("negative weight", ("method.invariance_weight=-1",)),
    Row("crop scale", ("augment.recipes.0.scale=[1.5,2]",)),
    *(Row(f"val fraction {v}", (f"data.val_fraction={v}", *FAST)) for v in ("1.5", "0")),
    Row("workers", ("data.num_workers=-2",)),
    Row("cifar holdout", ("data=cifar10", "data.holdout_fraction=1.5"), "data.holdout_fraction=1.5"),
    Row("vicreg views", ("method=vicreg", "augment.num_views=4"), "augment.num_views=4"),
    *(Row(f"seed {v}", (f"seed={v}",)) for v in ("abc", "-1", "1.5")),
    Row("image size", ("data.image_size=0",)),
    Row("knn k 0", ("callbacks.knn.k=0",)),
    Row("knn k above bank_size", ("callbacks.knn.k=100000",), "callbacks.knn.k=100000 is more than callbacks.knn.bank_size=10000"),
    Row("knn k above the bank", ("callbacks.knn.k=5000", *FAST), "callbacks.knn.k=5000 is more than the 1437 images in the kNN bank"),
    Row("step checkpoints", ("callbacks.checkpoint_steps.every_n_steps=0",)),
    Row("bad divergence action", ("callbacks.divergence.action=explode",)),
    Row("ddp without devices", ("trainer=ddp", "trainer.devices=0"), "devices"),
    # -- the command line itself (frossl_lit.config.overrides, before Hydra composes) ---------------------------------
    Row("unknown method", ("method=nosuch",), "method=nosuch is not a method config; choose one of barlow_twins"),
    Row("unknown dataset", ("data=cifar",), "(did you mean data=cifar10?)"),
    Row("mistyped key", ("trainer.max_epoch=5",), "trainer.max_epoch is not a setting (did you mean trainer.max_epochs?)"),
    Row("mistyped new key", ("+trainer.max_epoch=3",), "(did you mean trainer.max_epochs?)"),
    Row("mistyped method argument", ("+method.invariance_weigth=1",), "(did you mean method.invariance_weight?)"),
    Row("key nobody reads", ("+unknown.key=1",), "nothing reads unknown.key"),
    Row("unparsable", ("data.batch_size=[1,",), "is not a valid override"),
    # -- resuming from a checkpoint -----------------------------------------------------------------------------
    Row("missing ckpt_path", ("ckpt_path=nowhere/last.ckpt",), "ckpt_path=nowhere/last.ckpt does not exist"),
    Row("text ckpt_path", (), "cannot be read", setup=lambda p: [f"ckpt_path={_text_file(p)}"]),
    Row("truncated ckpt_path", (), "cannot be read", setup=lambda p: [f"ckpt_path={_truncated_checkpoint(p)}"]),
    # -- data on disk ----------------------------------------------------------------------------------------------
    Row("missing cifar", ("data=cifar10", "data.root=nowhere"), "CIFAR10 not found"),
    Row("truncated cifar batch", FAST, "data_batch_3", setup=lambda p: _cifar(p, truncate="data_batch_3")),
    Row("missing folder", (*TINY_FOLDER, "data.root=nowhere"), "nowhere"),
    Row("empty folder", FAST, "images", setup=lambda p: _folder(p, "empty")),
    Row("folder of text", FAST, "images", setup=lambda p: _folder(p, "text")),
    Row("truncated jpeg", ("trainer.max_steps=1",), ".jpg", setup=lambda p: _folder(p, "truncated")),  # the kNN pass reads all
    Row("bad on_bad_image", ("data.on_bad_image=ignore", *FAST), "data.on_bad_image", setup=lambda p: _folder(p, "ok")),
    Row("unreadable image in a worker", ("data.num_workers=2", "data.val_fraction=0", "trainer.max_epochs=1"),
        "cannot read image", setup=lambda p: _folder(p, "broken")),
    Row("missing stream", ("data.format=litdata", "data.stream=nowhere"), "holds no stream"),
    Row("unknown formulation", ("method.formulation=batch",), "method.formulation='batch' is not one of official, paper_two_view"),
    # -- offline evaluation and export ------------------------------------------------------------------------
    *(Row(f"{c} without ckpt", (), "ckpt=<run dir>/checkpoints/last.ckpt", command=c) for c in ("knn", "linear")),
    *(Row(f"{c} missing ckpt", ("ckpt=nowhere/last.ckpt",), "ckpt=nowhere/last.ckpt does not exist", command=c) for c in ("knn", "linear")),
    *(Row(f"{c} truncated ckpt", (), "cannot be read", command=c, setup=lambda p: [f"ckpt={_truncated_checkpoint(p)}"])
      for c in ("knn", "linear")),
    Row("knn k 0", ("knn.k=0",), command="knn", setup=lambda p: [f"ckpt={_run_dir(p)}"]),
    Row("knn temperature 0", ("knn.temperature=0",), command="knn", setup=lambda p: [f"ckpt={_run_dir(p)}"]),
    Row("knn k above the bank", ("knn.k=100000",), "knn.k=100000 is more than the 1437 training images in the kNN bank",
        command="knn", setup=lambda p: [f"ckpt={_run_dir(p)}"]),
    Row("export garbage", (), "CKPT=", command="export",
        setup=lambda p: [str(_truncated(_text_file(p, "garbage.bin"))), str(p / "out.pt")]),
    Row("export into /proc", (), "cannot write /proc/nope/out.pt", command="export",
        setup=lambda p: [str(_run_dir(p)), "/proc/nope/out.pt"]),
    Row("export through a file", (), "a part of the path is a file", command="export",
        setup=lambda p: [str(_run_dir(p)), str(_text_file(p, "somefile.txt") / "out.pt")]),
]


def _main(command: str) -> Callable[..., None]:
    from frossl_lit import export, knn, linear, train

    return {"train": train.main, "knn": knn.main, "linear": linear.main, "export": export.main}[command]


def run_row(row: Row, tmp_path: Path, monkeypatch) -> int | str | None:
    """Run ``row``'s command in-process as its console script would; return the exit status."""
    monkeypatch.chdir(tmp_path)
    args = [*row.args, *(row.setup(tmp_path) if row.setup else [])]
    if row.command == "export":
        with pytest.raises(SystemExit) as stop:
            _main("export")(args)
        return stop.value.code
    directory = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={tmp_path / 'run'}"]
    argv = [*TINY, *args, *directory] if row.command == "train" else [*args, *directory]
    monkeypatch.setattr(sys, "argv", [f"frossl_lit.{row.command}", *argv])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as stop:
            _main(row.command)()
    finally:
        GlobalHydra.instance().clear()
    return stop.value.code


def assert_one_line(status: int | str | None, stderr: str, fragment: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("frossl_lit: warning:")]
    assert status == 2, stderr[-3000:]
    assert "Traceback" not in stderr and len(lines) <= 3, stderr[-3000:]
    assert lines and lines[0].startswith("frossl_lit: error: ") and fragment in "\n".join(lines), stderr[-3000:]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.command}: {r.id}" for r in ROWS])
def test_a_bad_input_is_one_line_that_names_it(row, tmp_path, monkeypatch, capsys):
    status = run_row(row, tmp_path, monkeypatch)
    assert_one_line(status, capsys.readouterr().err, row.fragment())


def test_the_real_command_line_says_the_same(tmp_path):
    """A real process (``python -m``, sys.argv, the exit status) with the same check in front of Hydra. compare's
    imports are light (the train command's own CLI test is in test_checks.py)."""
    result = run_cli(["study=digitz", f"dir={tmp_path}/study"], cwd=tmp_path, timeout=120, module="frossl_lit.compare")
    assert_one_line(result.returncode, result.stderr, "study=digitz is not a study config; choose one of")
    assert "(did you mean study=digits?)" in result.stderr and not (tmp_path / "study").exists()


# command lines used elsewhere (tests, experiments, compare, the README) that the precheck must let through
VALID = [
    ("train", []),
    ("train", [*TINY, "hydra.run.dir=/tmp/x/run"]),
    ("train", ["-m", "method=frossl,vicreg,barlow_twins", *TINY, "trainer.max_epochs=1", "hydra.sweep.dir=/tmp/x"]),
    ("train", ["-m", "method=simclr,mocov2,byol,simsiam"]),
    ("train", ["-m", "+sweep=frossl_views", "experiment=frossl_cifar10"]),
    ("train", ["-m", "+sweep=methods_x_datasets", "hydra/launcher=slurm"]),
    ("train", ["-m", "experiment=glob(*_cifar10)", "method.invariance_weight=2"]),
    ("train", ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.direction=maximize",
               "hydra.sweeper.storage=sqlite:////tmp/x/optuna.db", "hydra.sweeper.study_name=frossl", "hydra.sweep.subdir=.",
               "optimized_metric=knn_top1", "seed=0", "data=digits", "schedule.max_epochs=4", "callbacks.plots=null",
               "method=vicreg", "method.variance_weight=${method.invariance_weight}", "data.tune_fraction=0.2",
               "schedule.optimizer.lr=tag(log, interval(0.0005, 0.008))", "method.invariance_weight=tag(log, interval(5.0, 50.0))"]),
    ("train", ["schedule.optimizer.lr='tag(log, interval(1e-3, 1e-2))'"]),
    ("train", ["experiment=frossl_cifar10_laptop", "trainer.precision=32-true"]),
    ("train", ["experiment=vicreg_imagenet_official", "+trainer.enable_checkpointing=false", "+callbacks.seen={_target_: x.Seen}"]),
    # Lightning's DDP launcher re-runs the command line of rank 0 for the other ranks
    ("train", [*TINY, "trainer=ddp", "trainer.devices=2", 'hydra.run.dir="/tmp/x/run"', "hydra.job.name=train_ddp_process_1",
               "hydra.output_subdir=null"]),
    ("train", ["trainer=ddp", "trainer.strategy.timeout.minutes=0", "+trainer.strategy.timeout.seconds=20",
               "+callbacks.hang._target_=tests.test_train.HangRank", "+callbacks.hang.rank=1", "+callbacks.hang.seconds=5"]),
    ("train", ["+callbacks.killer._target_=tests.test_train.KillRank", "+callbacks.killer.rank=1", "+callbacks.killer.step=3"]),
    ("train", ["data=stl10", "augment.recipes.0.size=32", "+augment.eval_size=32"]),
    ("train", ["data=imagenet", "augment.recipes.0.size=32", "augment.eval_size=32"]),
    ("train", ["data=cifar10", "data.format=litdata", "data.stream=s3://bucket/cifar", "+data.cache_dir=/local"]),
    ("train", ["schedule=paper", "schedule.lr_scheduler.warmup_epochs=null", "+schedule.lr_scheduler.warmup_fraction=0.1"]),
    ("train", ["+trainer.limit_val_batches=0", "+trainer.accumulate_grad_batches=2", "callbacks.knn=null", "~callbacks.plots"]),
    ("train", ["logger=wandb", "+logger.wandb.entity=me", "model.compile=true", "ckpt_path=/tmp/x/last.ckpt"]),
    ("train", ["--cfg", "job", "method=vicreg"]),
    ("train", ["--help"]),
    ("train", ["--info"]),
    ("train", ["--config-dir", "/tmp/mine", "local=mine"]),
    ("train", ["hydra.verbose=true", "hydra.job.chdir=false"]),
    ("evaluate", ["ckpt=/tmp/x/last.ckpt", "knn.k=5", "data_overrides=['data.root=/data']", "linear=from_run", "linear.epochs=2"]),
    ("compare", ["study=digits", "study.tune.trials=1", "phases=[report]", "dir=/tmp/x"]),
    ("compare", ["study.name=smoke", "study.final.seeds=[0,1]", "study.thresholds=[0.9]", "phases=[]",
                 "study.base=['data=digits','schedule.max_epochs=3','callbacks.plots=null']",
                 "+study.methods.mmcr={overrides: ['method=mmcr'], search: {schedule.optimizer.lr: 'tag(log, interval(1e-3, 1e-2))'}}"]),
    ("train", ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0", "optimized_metric=rankme",
               "callbacks.checkpoint_last=null", "method.invariance_weight=interval(0.5, 1.0)"]),
    ("prepare", ["data=cifar10", "data.root=/data/cifar10", "out=/tmp/x/stream"]),
]


@pytest.mark.parametrize("config_name,argv", VALID, ids=[f"{c}: {' '.join(a)[:60]}" for c, a in VALID])
def test_the_precheck_lets_every_valid_command_line_through(config_name, argv):
    GlobalHydra.instance().clear()
    precheck(argv, config_name)
    assert not GlobalHydra.instance().is_initialized()


def test_fp16_on_a_cpu_warns_in_one_line_and_runs(tmp_path, capsys):
    check_config(compose_config(["trainer.precision=16-mixed", "trainer.accelerator=cpu"], tmp_path))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("frossl_lit: warning: trainer.precision=16-mixed on a CPU is ~20x slower")
    check_config(compose_config(["trainer.precision=32-true", "trainer.accelerator=cpu"], tmp_path))
    assert capsys.readouterr().err == ""


def test_a_refused_override_names_itself_before_hydra_composes():
    with pytest.raises(UserError, match=r"^\+method\.invariance_weigth=1: invariance_weigth is not an argument of .*FroSSL"):
        precheck(["+method.invariance_weigth=1"], "train")
