#!/usr/bin/env python
"""The paper's comparison at laptop scale, recorded: ``python experiments/study_cifar10.py``.

Runs ``python -m frossl_lit.compare study=cifar10_laptop dir=outputs/studies/cifar10_laptop`` (12 methods x 4
tuning trials, then 3 seeds of each best setting; the setting and every choice are in
src/frossl_lit/conf/study/cifar10_laptop.yaml), then copies its report.md, report.json and PNGs into
experiments/results/study_cifar10_laptop/ and appends the dated command, CPU and wall-clock to
experiments/results/study_cifar10_laptop.md. Killed, it continues where it stopped when started again.

Make the CIFAR-10 copy first: python ../shared/tools/cifar10_from_jpg.py ../shared/data/cifar10-train-jpg.tar.gz data/cifar10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from _results import REPO, append_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="cifar10_laptop")
    parser.add_argument("--dir", default="outputs/studies/cifar10_laptop")
    parser.add_argument("overrides", nargs="*", help="extra overrides of the compare command (e.g. study.reference=frossl_8views)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "frossl_lit.compare", f"study={args.study}", f"dir={args.dir}", *args.overrides]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    wall = time.perf_counter() - started
    study, results = REPO / args.dir, REPO / "experiments" / "results" / f"study_{args.study}"
    results.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "report.json", "study.json", "knn_curves.png", "efficiency.png"):
        if (study / name).is_file():
            shutil.copy2(study / name, results / name)
    report = (study / "report.md").read_text()
    details = (f"`python -m frossl_lit.compare study={args.study} dir={args.dir}` took {wall / 60:.1f} minutes for this "
               f"command (a continued study: only what was left). Report, PNGs and the study's setting: "
               f"`experiments/results/study_{args.study}/`.")
    append_report(f"experiments/results/study_{args.study}.md", f"study {args.study}", report.split("\n", 2)[2], details)


if __name__ == "__main__":
    main()
