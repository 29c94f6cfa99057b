"""The peer benchmark (issue 26): the same SSL job through frossl_lit, lightly 1.6.0 and stable-pretraining 0.1.8
on this machine: images/s, seconds per epoch and peak memory at each DataLoader worker count, then kNN top-1
after each epoch at each framework's best count, wall-clock to a kNN threshold, and where one step's time goes.

    make peers-env
    flock /tmp/frossl_heavy.lock experiments/peers/.venv/bin/python -m experiments.peers.bench --root data/cifar10

Pairs: frossl_lit ``method=frossl`` against lightly's ``FroSSLLoss``; frossl_lit ``method=vicreg`` against
stable-pretraining's VICReg (it ships no FroSSL). The setting is in ``experiments/peers/common.py``; frossl_lit
runs through ``python -m frossl_lit.train`` with its evaluation callbacks off (kNN, probe, label-free figures,
spectrum, plots: every backbone is scored afterwards by one routine, ``common.knn_top1``), the peers through
``run_lightly.py`` / ``run_spt.py``. Every run is a fresh process with 2 torch threads; peak memory is the
largest sum of PSS over the process and its DataLoader workers (sampled every 0.2 s).
Make the CIFAR-10 copy first: python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from experiments import harness
from experiments.peers import common as c

FRAMEWORKS = {"frossl_lit (FroSSL)": ("frossl_lit.train", "frossl"), "lightly (FroSSL)": ("experiments.peers.run_lightly", None),
              "frossl_lit (VICReg)": ("frossl_lit.train", "vicreg"), "stable-pretraining (VICReg)": ("experiments.peers.run_spt", None)}
PAIRS = (("frossl_lit (FroSSL)", "lightly (FroSSL)"), ("frossl_lit (VICReg)", "stable-pretraining (VICReg)"))
ENV = {**os.environ, "OMP_NUM_THREADS": str(c.THREADS), "MKL_NUM_THREADS": str(c.THREADS), "PYTHONWARNINGS": "ignore"}


def frossl_overrides(method: str, root: str, workers: int, epochs: int, fraction: float, out: Path,
                     steps: int | None) -> list[str]:
    return [
        f"method={method}", "data=cifar10", f"data.root={root}", f"data.holdout_fraction={c.HOLDOUT}",
        f"data.train_fraction={fraction}", f"data.batch_size={c.BATCH}", f"data.num_workers={workers}", "backbone=small_cnn",
        f"backbone.widths=[{','.join(map(str, c.WIDTHS))}]", f"method.projector.hidden_dims=[{c.PROJECTOR[0]},{c.PROJECTOR[1]}]",
        f"method.projector.out_dim={c.PROJECTOR[2]}", f"augment.num_views={c.VIEWS}", "schedule=short",
        f"schedule.max_epochs={epochs}", f"schedule.optimizer.lr={c.LR}", f"schedule.optimizer.weight_decay={c.WEIGHT_DECAY}",
        "trainer=cpu", "trainer.enable_progress_bar=false", "+trainer.limit_val_batches=0", "seed=0",
        # (mode: max only makes its state key differ from checkpoint_last's; nothing is monitored)
        *[f"callbacks.{name}=null" for name in ("knn", "probe", "labelfree", "spectrum", "plots", "checkpoint_best")],
        f"+callbacks.epochs={{_target_:lightning.pytorch.callbacks.ModelCheckpoint,dirpath:{out}/epochs,save_top_k:-1,every_n_epochs:1,mode:max}}",
        *([f"trainer.max_steps={steps}"] if steps else []),
    ]


def command(name: str, root: str, workers: int, epochs: int, fraction: float, out: Path, steps: int | None) -> list[str]:
    module, method = FRAMEWORKS[name]
    if method:
        return [sys.executable, "-m", module, *frossl_overrides(method, root, workers, epochs, fraction, out, steps),
                f"hydra.run.dir={out}"]
    return [sys.executable, "-m", module, "--root", root, "--workers", str(workers), "--epochs", str(epochs),
            "--fraction", str(fraction), "--out", str(out), *(["--max-steps", str(steps)] if steps else [])]


def _tree_pss_mib(root: int) -> float:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            total += sum(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                         if line.startswith("Pss:")) / 1024
        except (OSError, ValueError):
            pass
    return total


def measured(label: str, cmd: list[str], out: Path) -> dict:
    """Run ``cmd`` (its output in ``<out>.log``) sampling the process tree's memory; its launch time, seconds,
    peak MiB; a failure stops the benchmark with the log's tail."""
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{label}] {' '.join(cmd[1:])}", flush=True)
    launched = time.time()
    with open(f"{out}.log", "w") as log:
        process = subprocess.Popen(cmd, cwd=harness.REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        peak = [0.0]

        def sample() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], _tree_pss_mib(process.pid))
                time.sleep(0.2)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        sampler.join()
    if code:
        sys.exit(f"[{label}] failed ({code}):\n{Path(f'{out}.log').read_text()[-3000:]}")
    return {"launched": launched, "seconds": round(time.time() - launched, 1), "peak_mib": round(peak[0])}


def outcome(name: str, out: Path) -> tuple[float, dict, list[tuple[int, Path]]]:
    """``(images/s, step profile ms, [(epoch, saved backbone)])`` of a finished run."""
    if FRAMEWORKS[name][1]:
        files = sorted((out / "epochs").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
        return json.loads((out / "summary.json").read_text())["images_per_second"], {}, list(enumerate(files, 1))
    result = json.loads((out / "result.json").read_text())
    files = sorted(out.glob("backbone_epoch*.pt"))
    return result["images_per_second"], result["profile_ms"], [(int(p.stem[-3:]), p) for p in files]


def state_of(path: Path) -> dict:
    if path.suffix == ".ckpt":
        from frossl_lit.evaluation.offline import backbone_state_dict

        return backbone_state_dict(torch.load(path, map_location="cpu", weights_only=False))
    return torch.load(path, map_location="cpu")


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser("experiments.peers.bench", __doc__, None, runs=True)
    cli.set_defaults(runs_dir="outputs/peers")
    cli.add_argument("--root", default="data/cifar10", help="CIFAR-10 in the pickle layout")
    cli.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    cli.add_argument("--steps", type=int, default=80, help="steps of each throughput run")
    cli.add_argument("--epochs", type=int, default=3, help="epochs of each kNN-curve run")
    cli.add_argument("--fraction", type=float, default=1.0, help="the curve runs' stratified share of the 45k images")
    cli.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=list(FRAMEWORKS))
    args = harness.parse(cli, argv, smoke={"workers": [0, 1], "steps": 3, "epochs": 2})
    runs = harness.path(f"{args.runs_dir}/{args.stamp}")
    root = str(c.fake_cifar(runs / "cifar10")) if args.smoke else str(harness.path(args.root))
    c.threads()
    data = c.split(root)
    train_images = len(data[0])
    table: dict[str, dict[int, dict]] = {}
    for name in args.frameworks:  # 1. throughput at each worker count (schedule of the full run, stopped early)
        for workers in args.workers:
            out = runs / f"speed_{FRAMEWORKS[name][1] or name.split()[0]}_w{workers}"
            run = measured(name, command(name, root, workers, args.epochs, 1.0, out, args.steps), out)
            ips, profile, _ = outcome(name, out)
            table.setdefault(name, {})[workers] = {**run, "images_per_second": ips, "profile_ms": profile,
                                                   "epoch_seconds": round(c.steps_per_epoch(train_images) * c.BATCH / ips, 1)}
    best = {name: max(rows, key=lambda w: rows[w]["images_per_second"]) for name, rows in table.items()}
    curves: dict[str, list[dict]] = {}
    init = c.knn_top1(None, data)
    for name in args.frameworks:  # 2. kNN after each epoch at the best worker count
        out = runs / f"curve_{FRAMEWORKS[name][1] or name.split()[0]}_w{best[name]}"
        run = measured(name, command(name, root, best[name], args.epochs, args.fraction, out, None), out)
        ips, profile, saved = outcome(name, out)
        curves[name] = [{"epoch": 0, "knn_top1": init, "seconds": 0.0}] + [
            {"epoch": e, "knn_top1": round(c.knn_top1(state_of(p), data), 4), "seconds": round(p.stat().st_mtime - run["launched"], 1)}
            for e, p in saved]
        table[name][best[name]]["curve_run"] = {**run, "images_per_second": ips}
        if profile:
            table[name][best[name]]["profile_ms"] = profile
        else:  # 3. frossl_lit's step profile: its own loop, timed (the CLI run cannot be)
            method = FRAMEWORKS[name][1]
            overrides = frossl_overrides(method, root, best[name], args.epochs, 1.0, out / "profile", max(args.steps // 2, 3))
            subprocess.run([sys.executable, "-m", "experiments.peers.profile_frossl", "--out", str(out / "profile.json"), "--",
                            *[o for o in overrides if not o.startswith("+callbacks.epochs")]],
                           cwd=harness.REPO, env=ENV, check=True, capture_output=True)
            table[name][best[name]]["profile_ms"] = json.loads((out / "profile.json").read_text())["profile_ms"]
    from experiments.peers.report import write

    write(args, table, best, curves, train_images, len(data[2]))


if __name__ == "__main__":
    main()
