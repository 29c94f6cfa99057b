"""The paper's comparison at laptop scale, recorded: ``python -m experiments.study_cifar10``.

Runs ``python -m frossl_lit.compare study=cifar10_laptop dir=outputs/studies/cifar10_laptop`` (12 methods x 4
tuning trials, then 3 seeds of each best setting; the setting and every choice are in
src/frossl_lit/conf/study/cifar10_laptop.yaml), then copies its report.md, report.json and PNGs into
experiments/results/study_cifar10_laptop/ and appends the dated command, CPU and wall-clock to
experiments/results/study_cifar10_laptop.md (``--out``; the copies go to the folder of its name). Killed, it
continues where it stopped when started again. ``--smoke``: the digits study with FroSSL alone, one tuning trial
and one seed of one epoch of the smallest model.

Make the CIFAR-10 copy first: python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from experiments import harness

SMOKE = [
    "study.tune.trials=1", "study.tune.startup_trials=1", "study.final.seeds=[0]", "~study.methods.vicreg",
    "study.base=[" + ",".join(f"'{o}'" for o in ["data=digits", "schedule.max_epochs=1", "trainer.max_steps=3", *harness.SMOKE_TRAIN]) + "]",
]


def main(argv: list[str] | None = None) -> None:
    cli = harness.parser(__spec__.name, __doc__, None)
    cli.add_argument("--study", default="cifar10_laptop")
    cli.add_argument("--dir", help="the study directory (default: outputs/studies/<study>)")
    cli.add_argument("extra", nargs="*", help="extra overrides of the compare command (e.g. study.reference=frossl_8views)")
    args = harness.parse(cli, argv, smoke={"study": "digits", "dir": f"{harness.SMOKE_DIR}/study_digits"}, smoke_extra=SMOKE)
    directory = args.dir or f"outputs/studies/{args.study}"
    args.out = harness.results_file(args, f"study_{args.study}.md")
    command = [sys.executable, "-m", "frossl_lit.compare", f"study={args.study}", f"dir={directory}", *args.extra]
    started = time.perf_counter()
    subprocess.run(command, cwd=harness.REPO, check=True)
    wall = time.perf_counter() - started
    study, results = harness.path(directory), harness.path(args.out.removesuffix(".md"))
    results.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "report.json", "study.json", "knn_curves.png", "efficiency.png"):
        if (study / name).is_file():
            shutil.copy2(study / name, results / name)
    report = (study / "report.md").read_text()
    details = (f"`python -m frossl_lit.compare study={args.study} dir={directory}` took {wall / 60:.1f} minutes for this "
               f"command (a continued study: only what was left). Report, PNGs and the study's setting: "
               f"`{args.out.removesuffix('.md')}/`.")
    harness.record(args, f"study {args.study}", report.split("\n", 2)[2], details)


if __name__ == "__main__":
    main()
