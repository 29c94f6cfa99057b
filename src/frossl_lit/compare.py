"""Compare methods the way a reviewer accepts: ``python -m frossl_lit.compare study=digits``.

A study (``conf/study/<name>.yaml``) names methods, each with its own search space, and runs three phases into
one directory (``dir``, default ``outputs/studies/<study.name>``):

1. **tune** — for every method the same number of trials (``study.tune.trials``), Optuna TPE through Hydra's
   Optuna sweeper (``python -m frossl_lit.train -m hydra/sweeper=optuna``), maximising ``study.metric`` on a
   tuning split carved from the training images (``study.tune.overrides``, by default ``data.tune_fraction``):
   the reported split is never seen while tuning. Trials are kept in ``<dir>/optuna.db`` (SQLite; one Optuna
   study per method, named after it) and write their runs to ``<dir>/tuning/<method>/trial_<k>``.
2. **final** — each method's best trial again on every seed of ``study.final.seeds``, on the reported split,
   into ``<dir>/final/<method>/seed_<s>``.
3. **report** — ``<dir>/report.md``, ``report.json`` and PNGs (:mod:`frossl_lit.reports.study_report`).

Every run is a child process (``python -m frossl_lit.train``), its output in ``<dir>/logs/``
(:mod:`frossl_lit.runtime.study`). A study that is killed and started again with the same command continues:
finished trials and final runs are not redone, and an interrupted one resumes from its ``checkpoints/last.ckpt`` (a
trial interrupted mid-run is marked failed in Optuna, kept out of the count, and asked again with the same
parameters). Trial ``k``'s sampler is seeded with ``study.tune.seed + k`` and its parameters depend only on that
seed and the trials before it, so an interrupted study asks exactly the parameters an uninterrupted one asks.
Starting it again with a different setting (base, search space, a method's overrides) into the same directory is
refused; more trials or seeds extend it.
"""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from frossl_lit.config.overrides import CONF_DIR, check_command_line
from frossl_lit.runtime.errors import UserError, exits_on_user_error
from frossl_lit.runtime.study import Study, log

PHASES = ("tune", "final", "report")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="compare")  # absolute: see train.py
@exits_on_user_error()
def _hydra_main(cfg: DictConfig) -> None:
    from frossl_lit.reports.study_report import write_report

    directory = Path(cfg.dir)
    lock_path = directory / ".lock"
    study = Study(cfg.study, directory)
    unknown = [p for p in cfg.phases if p not in PHASES]
    if unknown:
        raise UserError(f"phases={list(cfg.phases)}: {unknown} unknown; choose from {list(PHASES)}, e.g. phases=[report]")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another compare process is running this study ({directory}); wait for it or stop it, "
                                f"then start this command again") from None
            study.check_setting()
            log(f"study {cfg.study.name} in {directory}: {len(study.methods)} methods x {cfg.study.tune.trials} trials, "
                f"seeds {list(cfg.study.final.seeds)}")
            for method in study.methods:
                if "tune" in cfg.phases:
                    study.tune(method)
                if "final" in cfg.phases:
                    study.final(method)
            if "report" in cfg.phases:
                log(f"report: {write_report(study)}")
    except KeyboardInterrupt:
        print(f"\nfrossl_lit: interrupted; start the same command again to continue the study in {directory}\n", file=sys.stderr)
        sys.exit(130)


def main() -> None:
    """The command line's overrides are checked first (:mod:`frossl_lit.config.overrides`), then Hydra composes and runs."""
    check_command_line("compare")
    _hydra_main()


if __name__ == "__main__":
    main()
