"""One study directory (``python -m frossl_lit.compare``): its setting, its Optuna storage, its tuning trials and
final runs, each run a child process ``python -m frossl_lit.train`` whose output goes to ``<dir>/logs/``.

:class:`Study` holds what the command's phases do to the directory (:mod:`frossl_lit.compare` describes them):
:meth:`Study.check_setting` refuses a directory of another setting, :meth:`Study.tune` runs a method's Optuna
trials (an interrupted one is marked failed and asked again), :meth:`Study.final` its best setting on every
seed; :func:`run_child` runs one training and names its log's error line when it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from frossl_lit.runtime.errors import PREFIX, UserError
from frossl_lit.runtime.fileio import atomic_write

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


def log(message: str) -> None:
    """One line of the study's progress on stdout, with the time."""
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}


def run_child(arguments: list[str], log_path: Path) -> None:
    """``python -m frossl_lit.train ARGS`` with its output in ``log_path``; a failure names the log's last line."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as handle:
        handle.write(f"\n$ python -m frossl_lit.train {' '.join(arguments)}\n")
        handle.flush()
        code = subprocess.run([sys.executable, "-m", "frossl_lit.train", *arguments], stdout=handle, stderr=subprocess.STDOUT,
                              env=_child_env()).returncode
    if code != 0:
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "no output")
        reason = reason.strip().removeprefix(PREFIX)[:600]
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
        interrupted = study.user_attrs.get("interrupted_trials", [])
        return [t for t in study.get_trials(deepcopy=False) if t.state in done and t.number not in interrupted]

    @staticmethod
    def recover_interrupted(study) -> int:
        """Mark trials left running by a killed study as failed-interrupted and ask their parameters again."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        stale = [t for t in trials if t.state == TrialState.RUNNING]
        if stale:  # recorded on the study (Optuna's public API has no user attrs for another process's trial)
            study.set_user_attr("interrupted_trials", [*study.user_attrs.get("interrupted_trials", []), *(t.number for t in stale)])
        for trial in stale:
            study.tell(trial.number, state=TrialState.FAIL)
        if stale and not waiting:
            study.enqueue_trial(stale[-1].params)  # the same setting, resumed from its run directory
        return len(stale)

    def trial_dir(self, method: Method, index: int) -> Path:
        return self.dir / "tuning" / method.name / f"trial_{index:03d}"

    def tune(self, method: Method) -> None:
        tune = self.cfg.tune
        study = self.optuna_study(method)
        if self.recover_interrupted(study):
            log(f"{method.name}: a trial was interrupted; it runs again from its last checkpoint")
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
            log(f"{method.name}: tuning trial {index + 1}/{tune.trials}" + (" (resumed)" if checkpoint.is_file() else ""))
            run_child(arguments, self.dir / "logs" / f"tune_{method.name}_{index:03d}.log")
            trial = self.counted_trials(study)[-1] if len(self.counted_trials(study)) > index else None
            if trial is None:
                raise UserError(f"trial {index} of {method.name} left no result in {self.storage}; see {self.dir / 'logs'}")
            log(f"{method.name}: trial {index + 1} {dict(trial.params)} -> {self.cfg.metric} = {trial.value}")

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
            log(f"{method.name}: final run, seed {seed}, {best}" + (" (resumed)" if checkpoint.is_file() else ""))
            run_child(arguments, self.dir / "logs" / f"final_{method.name}_seed{seed}.log")
