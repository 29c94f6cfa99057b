"""A Hydra Optuna sweep that a killed process continues: ``-m hydra/sweeper=optuna_resumable`` with
``hydra.sweeper.storage=sqlite:///<file>``, ``hydra.sweeper.study_name=<name>`` and ``resume.auto=true``.

Hydra's Optuna sweeper (1.3) reloads a stored study but then asks ``n_trials`` *more* trials, numbers its jobs
from 0 again (so job 0 of a second start lands in the directory of the first start's job 0) and leaves a trial
whose process was killed in state RUNNING forever. :class:`ContinueStudy`, a Hydra callback the sweeper config
installs, runs in the sweep process before Hydra instantiates the sweeper and makes ``n_trials`` the *study's*
size instead:

- a trial left RUNNING is told FAIL through Optuna's public ``tell`` and its parameters are asked again
  (:func:`recover_interrupted`, ``frossl_lit.compare``'s recovery for a batch of trials);
- the sweeper runs only ``n_trials`` minus the trials that already used the budget (completed, failed or
  pruned; an interrupted one does not count);
- job numbers continue after the study's last trial (``${hydra.job.num}`` in ``hydra.sweep.subdir`` becomes
  ``${frossl_trial:${hydra.job.num}}``), so job *k* is Optuna trial *k* and no directory of a first start is reused;
- a seeded sampler (``hydra.sweeper.sampler.seed``) is seeded with seed + the study's trials so far, as
  ``frossl_lit.compare`` does: the same seed again would draw the first start's parameters again.

The DDP ranks of a trial never see any of this: their command line is the trial's own overrides
(:mod:`frossl_lit.runtime.hydra_ddp`), without ``-m`` and without the sweeper.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

_first_job = {"number": 0}  # the study's trial count when this sweep started; set in the sweep process only

OmegaConf.register_new_resolver("frossl_trial", lambda job_num: int(job_num) + _first_job["number"], replace=True)


def _say(message: str) -> None:
    print(f"frossl_lit: {message}", flush=True)


def recover_interrupted(study) -> int:
    """Tell every trial left RUNNING by a killed sweep FAIL and enqueue each one's parameters again (unless an
    earlier start already did: trials wait). Unlike :meth:`Study.recover_interrupted` (one trial at a time, as
    ``compare`` runs them) every stale trial is asked again: with ``hydra.sweeper.n_jobs`` > 1 a batch's trials
    are all RUNNING until the whole batch returns. They are recorded as the study's ``interrupted_trials``, so
    :meth:`Study.counted_trials` does not count them."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == TrialState.WAITING for t in trials)
    stale = [t for t in trials if t.state == TrialState.RUNNING]
    if stale:
        study.set_user_attr("interrupted_trials", [*study.user_attrs.get("interrupted_trials", []), *(t.number for t in stale)])
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        if not waiting:
            study.enqueue_trial(trial.params)
    return len(stale)


class ContinueStudy(Callback):
    """Hydra callback: turn a restarted Optuna sweep on stored storage into the continuation of its study."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        from frossl_lit.runtime.study import Study

        sweeper = config.hydra.sweeper
        if not sweeper.get("storage") or not sweeper.get("study_name"):
            return  # an in-memory study ends with its process: nothing to continue
        names = {s.study_name for s in optuna.study.get_all_study_summaries(storage=sweeper.storage)}
        if sweeper.study_name not in names:
            return
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
        if interrupted := recover_interrupted(study):
            _say(f"{sweeper.study_name}: {interrupted} interrupted trial(s) marked failed; their parameters run again")
        done = len(Study.counted_trials(study))
        trials = study.get_trials(deepcopy=False)
        # ask() hands out the waiting (enqueued) trials first, then new numbers: job k is trial first + k
        _first_job["number"] = len(trials) - sum(t.state == TrialState.WAITING for t in trials)
        with read_write(sweeper):
            sweeper.n_trials = max(0, int(sweeper.n_trials) - done)
            if sweeper.get("sampler") and sweeper.sampler.get("seed") is not None:
                sweeper.sampler.seed = int(sweeper.sampler.seed) + _first_job["number"]  # not the first start's samples
        subdir = OmegaConf.to_container(config.hydra.sweep)["subdir"]  # unresolved
        if _first_job["number"] and "${hydra.job.num}" in str(subdir):
            # each job's config is composed again from the command line's overrides (conf/hydra/default.yaml's
            # subdir would win over a config's), so the numbering goes in as one more of them
            numbered = str(subdir).replace("${hydra.job.num}", "${frossl_trial:${hydra.job.num}}").replace("'", "\\'")
            with read_write(config.hydra.overrides):
                config.hydra.overrides.hydra.append(f"hydra.sweep.subdir='{numbered}'")
        _say(f"{sweeper.study_name}: {done} trial(s) already done, {sweeper.n_trials} to run "
            f"(jobs from {_first_job['number']})")
