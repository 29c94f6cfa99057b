"""Why does FroSSL collapse at V = 4 views and λ = 1 with the official loss? One factor at a time, on real CIFAR-10.

    python -m experiments.views_collapse --root data/cifar10

Every run: the strided small CNN 32-64-128-256 on 32 px CIFAR-10 (from ../shared, see views_cifar10.py; the
CIFAR small-CNN preset, experiment/base/cifar10_small_cnn.yaml), batch 256, the FroSSL projector 2048-2048-1024,
``--steps`` steps, no kNN or probe. Each run changes one thing from the collapsing one (official loss, V = 4,
λ = 1, AdamW lr 2e-3 with 10% warm-up): the warm-up, the optimizer (the paper's LARS schedule), λ, the view
balance (``method.balance_views``), the paper-era multiview formulation, and the embedding width D (the
invariance term of the official loss is ≈ V·λ·(D/N)·(1 - agreement) per view, the regulariser at most
log min(N, D) in size). It records, at the last step, the effective rank of the first view's embeddings (the
exponential of the entropy of the covariance spectrum: 1 = collapsed), the regulariser and the invariance per
view; a run has collapsed when the effective rank is below 10 (of up to D = 1024). ``--runs`` picks runs by their
index in ``RUNS`` (0 first); ``--smoke``: the collapsing run alone, 2 steps of the smallest model.
"""

from __future__ import annotations

import shlex

from experiments import harness

COLLAPSING = ["augment.num_views=4", "method.invariance_weight=1.0", "method.balance_views=false"]
RUNS = {
    "V=2, λ=1 (the tuned 2-view setting)": ["augment.num_views=2", "method.invariance_weight=1.0"],
    "V=4, λ=1 (collapsing)": COLLAPSING,
    "… no warm-up": [*COLLAPSING, "schedule.lr_scheduler.warmup_fraction=0.0"],
    # LARS with the paper's warm-up at the preset's peak lr (schedule.optimizer.lr=2e-3), not the paper's 0.3: the
    # recorded run trained so (until 2026-12-03 its label said lr 0.3)
    "… LARS, paper warm-up, lr 2e-3": [
        *COLLAPSING, "schedule=paper", "schedule.lr_scheduler.warmup_epochs=null",
        "+schedule.lr_scheduler.warmup_fraction=0.1",
    ],
    "… λ = 0.5 (V·λ of 2 views)": [*COLLAPSING, "method.invariance_weight=0.5"],
    "… balance_views=true (invariance ÷ (V − 1))": [*COLLAPSING, "method.balance_views=true"],
    "V=8, λ=1, balance_views=true": ["augment.num_views=8", "method.invariance_weight=1.0", "method.balance_views=true"],
    "… paper_multiview formulation": [*COLLAPSING, "method.formulation=paper_multiview"],
    "… D = 256 (D/N = 1 instead of 4)": [*COLLAPSING, "method.projector.out_dim=256"],
}


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, "experiments/results/views_collapse.md", training=True, runs=True)
    cli.add_argument("--root", default="data/cifar10", help="folder holding cifar-10-batches-py/ (relative to the repo)")
    cli.add_argument("--steps", type=int, default=40)
    cli.add_argument("--runs", type=int, nargs="*", default=list(range(len(RUNS))), choices=range(len(RUNS)))
    args = harness.parse(cli, argv, smoke={"steps": 2, "runs": [1]}, smoke_extra=[*harness.SMOKE_TRAIN, "trainer.log_every_n_steps=1"])

    common = [
        "experiment=base/cifar10_small_cnn", f"data.root={args.root}", "schedule.max_epochs=10", f"trainer.max_steps={args.steps}",
        "callbacks.knn=null", "callbacks.probe=null", "callbacks.checkpoint_best=null",
        f"callbacks.spectrum.every_n_steps={args.steps}", "trainer.log_every_n_steps=5", *args.extra,
    ]
    lines = [
        "| run | effective rank | regulariser / view | invariance / view | collapsed |",
        "|---|---|---|---|---|",
    ]
    for index in args.runs:
        name, overrides = list(RUNS.items())[index]
        run_dir = f"{args.runs_dir}/{args.stamp}_{index}"
        if harness.train(name, ["method=frossl", *common, *overrides], run_dir) is None:
            continue
        metrics = harness.last_values(run_dir, "train/")
        views = int(next(o for o in (*COLLAPSING, *overrides)[::-1] if o.startswith("augment.num_views=")).split("=")[1])
        rank = metrics["train/effective_rank"]
        regularizer, invariance = metrics["train/frossl/regularizer"] / views, metrics["train/frossl/invariance"] / views
        line = f"| {name} | {rank:.1f} | {regularizer:.2f} | {invariance:.3f} | {'yes' if rank < 10 else 'no'} |"
        print(line, flush=True)
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    details = f"Common overrides: `{shlex.join(common)}`; each run adds its own (see `RUNS` in the script)."
    harness.record(args, f"FroSSL collapse at V=4, {args.steps} steps", table, details)


if __name__ == "__main__":
    main()
