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

Every run is a child process (``python -m frossl_lit.train``), its output in ``<dir>/logs/``. A study that is
killed and started again with the same command continues: finished trials and final runs are not redone, and
an interrupted one resumes from its ``checkpoints/last.ckpt`` (a trial interrupted mid-run is marked failed in
Optuna, kept out of the count, and asked again with the same parameters). Trial ``k``'s sampler is seeded with
``study.tune.seed + k`` and its parameters depend only on that seed and the trials before it, so an interrupted
study asks exactly the parameters an uninterrupted one asks. Starting it again with a different setting (base,
search space, a method's overrides) into the same directory is refused; more trials or seeds extend it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from frossl_lit.config.overrides import CONF_DIR, check_command_line
from frossl_lit.runtime.errors import UserError
from frossl_lit.runtime.fileio import atomic_write

PHASES = ("tune", "final", "report")
# what may change between two starts of one study: more trials, more seeds, thresholds and the report
EXTENSIBLE = ("tune.trials", "final.seeds", "thresholds", "reference", "name")


@dataclass(frozen=True)
class Method:
    name: str
    overrides: tuple[str, ...]
    search: dict[str, str]  # override key -> Hydra Optuna sweeper expression, e.g. tag(log, interval(0.1, 4))


def methods_of(study: DictConfig) -> list[Method]:
    if not study.get("methods"):
        raise UserError("study.methods is empty: name at least one method, e.g. study.methods.frossl.overrides=[method=frossl]")
    found = []
    for name, spec in study.methods.items():
        search = {str(k): str(v) for k, v in (spec.get("search") or {}).items()}
        if not search:
            raise UserError(f"study.methods.{name}.search is empty: give it at least one hyperparameter to tune, e.g. "
                            f"schedule.optimizer.lr: tag(log, interval(1e-3, 1e-2))")
        found.append(Method(str(name), tuple(str(o) for o in spec.get("overrides") or ()), search))
    return found


def _log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}


def run_child(arguments: list[str], log_path: Path) -> None:
    """``python -m frossl_lit.train ARGS`` with its output in ``log_path``; a failure names the log's last line."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n$ python -m frossl_lit.train {' '.join(arguments)}\n")
        log.flush()
        code = subprocess.run([sys.executable, "-m", "frossl_lit.train", *arguments], stdout=log, stderr=subprocess.STDOUT,
                              env=_child_env()).returncode
    if code != 0:
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "no output")
        reason = reason.strip().removeprefix("frossl_lit: error: ")[:600]
        raise UserError(f"a run of the study failed (exit {code}): {reason}; its whole output is in {log_path}. "
                        f"Fix the cause and start the same command again: finished runs are kept (a changed study "
                        f"setting goes into a new dir=...)")


class Study:
    """One study directory: its Optuna storage, its tuning trials and final runs."""

    def __init__(self, cfg: DictConfig, directory: Path) -> None:
        self.cfg, self.dir = cfg, directory
        self.methods = methods_of(cfg)
        self.storage = f"sqlite:///{(directory / 'optuna.db').resolve()}"
        tune = cfg.tune
        if not isinstance(tune.trials, int) or tune.trials < 1:
            raise UserError(f"study.tune.trials={tune.trials!r} must be a whole number >= 1 (the same for every method), e.g. 4")
        seeds = list(cfg.final.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise UserError(f"study.final.seeds={seeds} must be distinct whole numbers >= 0, e.g. [0,1,2]")

    # -- the setting a directory holds ---------------------------------------------------------------------
    def check_setting(self) -> None:
        """Refuse to continue a directory that holds a study of another setting (more trials/seeds extend it)."""
        stored_path = self.dir / "study.json"
        current = OmegaConf.to_container(self.cfg, resolve=True)
        if stored_path.is_file():
            stored = json.loads(stored_path.read_text())
            for key in sorted(set(stored) | set(current)):
                if key in ("tune", "final"):
                    for sub in sorted(set(stored.get(key, {})) | set(current.get(key, {}))):
                        if f"{key}.{sub}" not in EXTENSIBLE and stored.get(key, {}).get(sub) != current.get(key, {}).get(sub):
                            self._refuse(f"study.{key}.{sub}", stored.get(key, {}).get(sub), current.get(key, {}).get(sub))
                elif key not in EXTENSIBLE and stored.get(key) != current.get(key):
                    self._refuse(f"study.{key}", stored.get(key), current.get(key))
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(stored_path, json.dumps(current, indent=1) + "\n")

    def _refuse(self, key: str, stored: Any, current: Any) -> None:
        raise UserError(
            f"{self.dir} holds a study whose {key} was {stored!r}, not {current!r}: its trials would not be comparable. "
            f"Start this setting in a new directory (dir=outputs/studies/<new name>), or delete {self.dir} to redo it"
        )

    # -- phase 1: tuning --------------------------------------------------------------------------------------
    def optuna_study(self, method: Method):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(study_name=method.name, storage=self.storage, direction="maximize", load_if_exists=True)

    @staticmethod
    def counted_trials(study) -> list:
        """The trials that used the budget, in order: finished ones (a failed setting counts; an interrupted one not)."""
        from optuna.trial import TrialState

        done = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        return [t for t in study.get_trials(deepcopy=False) if t.state in done and not t.user_attrs.get("interrupted")]

    @staticmethod
    def recover_interrupted(study) -> int:
        """Mark trials left running by a killed study as failed-interrupted and ask their parameters again."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        stale = [t for t in trials if t.state == TrialState.RUNNING]
        for trial in stale:
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study._storage.set_trial_state(trial._trial_id, TrialState.FAIL)
        if stale and not waiting:
            study.enqueue_trial(stale[-1].params)  # the same setting, resumed from its run directory
        return len(stale)

    def trial_dir(self, method: Method, index: int) -> Path:
        return self.dir / "tuning" / method.name / f"trial_{index:03d}"

    def tune(self, method: Method) -> None:
        tune = self.cfg.tune
        study = self.optuna_study(method)
        if self.recover_interrupted(study):
            _log(f"{method.name}: a trial was interrupted; it runs again from its last checkpoint")
        while (index := len(self.counted_trials(study))) < tune.trials:
            run_dir = self.trial_dir(method, index)
            checkpoint = run_dir / "checkpoints" / "last.ckpt"
            arguments = [
                "-m", "hydra/sweeper=optuna",
                "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1", "hydra.sweeper.direction=maximize",
                f"hydra.sweeper.storage={self.storage}", f"hydra.sweeper.study_name={method.name}",
                f"hydra.sweeper.sampler.seed={int(tune.seed) + index}",
                f"hydra.sweeper.sampler.n_startup_trials={int(tune.startup_trials)}",
                "hydra.sweeper.max_failure_rate=1.0",
                f"hydra.sweep.dir={run_dir}", "hydra.sweep.subdir=.",
                f"optimized_metric={self.cfg.metric}", f"seed={int(tune.seed)}",
                *self.cfg.base, *method.overrides, *tune.overrides,
                "resume.auto=true",  # an interrupted trial continues from its own last checkpoint
                *(f"{key}={expression}" for key, expression in method.search.items()),
            ]
            _log(f"{method.name}: tuning trial {index + 1}/{tune.trials}" + (" (resumed)" if checkpoint.is_file() else ""))
            run_child(arguments, self.dir / "logs" / f"tune_{method.name}_{index:03d}.log")
            trial = self.counted_trials(study)[-1] if len(self.counted_trials(study)) > index else None
            if trial is None:
                raise UserError(f"trial {index} of {method.name} left no result in {self.storage}; see {self.dir / 'logs'}")
            _log(f"{method.name}: trial {index + 1} {dict(trial.params)} -> {self.cfg.metric} = {trial.value}")

    def best_params(self, method: Method) -> dict[str, Any]:
        from optuna.trial import TrialState

        trials = [t for t in self.counted_trials(self.optuna_study(method))
                  if t.state == TrialState.COMPLETE and t.value is not None and t.value == t.value]
        if not trials:
            raise UserError(f"no tuning trial of {method.name} finished with a finite {self.cfg.metric}: widen or move "
                            f"its search space (study.methods.{method.name}.search) and start again in a new dir")
        best = max(trials, key=lambda t: (t.value, -t.number))  # ties: the earlier trial
        return dict(best.params)

    # -- phase 2: final runs ----------------------------------------------------------------------------------
    def final_dir(self, method: Method, seed: int) -> Path:
        return self.dir / "final" / method.name / f"seed_{seed}"

    def final(self, method: Method) -> None:
        best = self.best_params(method)
        for seed in self.cfg.final.seeds:
            run_dir = self.final_dir(method, seed)
            if (run_dir / "summary.json").is_file():
                continue
            checkpoint = run_dir / "checkpoints" / "last.ckpt"
            arguments = [
                *self.cfg.base, *method.overrides, *self.cfg.final.overrides,
                *(f"{key}={value}" for key, value in best.items()),
                f"seed={seed}", f"hydra.run.dir={run_dir}",
                "resume.auto=true",  # an interrupted final run continues from its own last checkpoint
            ]
            _log(f"{method.name}: final run, seed {seed}, {best}" + (" (resumed)" if checkpoint.is_file() else ""))
            run_child(arguments, self.dir / "logs" / f"final_{method.name}_seed{seed}.log")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="compare")  # absolute: see train.py
def _hydra_main(cfg: DictConfig) -> None:
    from frossl_lit.reports.study_report import write_report

    directory = Path(cfg.dir)
    lock_path = directory / ".lock"
    try:
        study = Study(cfg.study, directory)
        unknown = [p for p in cfg.phases if p not in PHASES]
        if unknown:
            raise UserError(f"phases={list(cfg.phases)}: {unknown} unknown; choose from {list(PHASES)}, e.g. phases=[report]")
        directory.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another compare process is running this study ({directory}); wait for it or stop it, "
                                f"then start this command again") from None
            study.check_setting()
            _log(f"study {cfg.study.name} in {directory}: {len(study.methods)} methods x {cfg.study.tune.trials} trials, "
                 f"seeds {list(cfg.study.final.seeds)}")
            for method in study.methods:
                if "tune" in cfg.phases:
                    study.tune(method)
                if "final" in cfg.phases:
                    study.final(method)
            if "report" in cfg.phases:
                report = write_report(study)
                _log(f"report: {report}")
    except UserError as error:
        print(f"\nfrossl_lit: error: {error}\n", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\nfrossl_lit: interrupted; start the same command again to continue the study in {directory}\n", file=sys.stderr)
        sys.exit(130)


def main() -> None:
    """The command line's overrides are checked first (:mod:`frossl_lit.config.overrides`), then Hydra composes and runs."""
    check_command_line("compare")
    _hydra_main()


if __name__ == "__main__":
    main()
