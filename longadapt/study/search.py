"""The learning-rate search of a (model, task) as an Optuna study.

Every trial is recorded in an Optuna storage (``search.storage``, an Optuna storage URL; default a SQLite
file in the study folder), one Optuna study per (task, model, model weights), so that the searches can be
read with Optuna's own tools and shared between machines through a database server. A trial is one
fine-tuning run with the search's seed, scored on dev; the study's records (``OUT/stages/``) remain the
source of the report.

- ``grid``: trial ``k`` runs the ``k``-th rate; trials are independent and run in parallel processes.
- ``tpe``: trial ``k`` asks Optuna's TPE sampler (seeded with ``sampler_seed + k``) given the completed
  trials before it, so a search that is stopped and run again proposes the same rates. A trial left
  ``RUNNING`` by a killed process is marked failed when its slot runs again (one process runs a slot).
"""

from __future__ import annotations

import logging
from typing import Any

from longadapt.study.plan import Plan, Stage

logger = logging.getLogger(__name__)

PARAM = "learning_rate"


def storage_url(plan: Plan) -> str:
    return plan.spec.search.storage or f"sqlite:///{(plan.out / 'search.db').resolve()}"


def open_storage(plan: Plan):
    """The search storage (created when new). The scheduler opens it once before starting any stage, so
    that parallel trials never race to create the database's tables."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan.out.mkdir(parents=True, exist_ok=True)
    url = storage_url(plan)
    if url.startswith("sqlite"):  # parallel trials write to one file: wait for its lock instead of failing
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    return optuna.storages.RDBStorage(url)


def _study(plan: Plan, stage: Stage, sampler: Any = None):
    import optuna
    from longadapt.evaluation.fingerprint import model_fingerprint

    storage = open_storage(plan)
    weights = model_fingerprint(plan.model_dir(stage.model))["sha256"][:12]
    return optuna.create_study(storage=storage, study_name=f"{plan.spec.name}/{stage.task}/{stage.model}/{weights}",
                               direction="maximize", load_if_exists=True, sampler=sampler)


def _distribution(plan: Plan, model: str):
    from optuna.distributions import FloatDistribution

    s = plan.spec.search
    rates = plan.grid(model)
    low, high = (min(rates), max(rates)) if s.method == "grid" else s.range
    return FloatDistribution(float(low), float(high), log=True)


def tpe_rate(plan: Plan, stage: Stage) -> tuple[float, Any]:
    """Trial ``stage.slot``'s rate from TPE (a completed trial of this slot in the storage is reused);
    returns the rate and the Optuna trial to tell."""
    import optuna
    from optuna.trial import TrialState

    s = plan.spec.search
    startup = s.startup_trials or min(3, s.trials)
    sampler = optuna.samplers.TPESampler(seed=s.sampler_seed + stage.slot, n_startup_trials=startup)
    study = _study(plan, stage, sampler)
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("slot") != stage.slot:
            continue
        if t.state == TrialState.COMPLETE:
            return float(t.params[PARAM]), None
        if t.state == TrialState.RUNNING:  # left by a killed attempt of this slot
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            logger.info("trial %d of %s (slot %d) was left running by a stopped process: marked failed", t.number,
                        study.study_name, stage.slot)
    trial = study.ask({PARAM: _distribution(plan, stage.model)})
    trial.set_user_attr("slot", stage.slot)
    return float(trial.params[PARAM]), (study, trial)


def record_trial(plan: Plan, stage: Stage, lr: float, value: float, handle: Any, run: dict[str, Any]) -> None:
    """Tell Optuna the trial's dev value (TPE), or add the finished grid trial to the storage."""
    import optuna
    from optuna.trial import TrialState

    attrs = {"slot": stage.slot, "seed": plan.spec.search.seed, "test": float(run["score"]),
             "run": str(plan.run_dir(stage.task, stage.model, lr, plan.spec.search.seed).relative_to(plan.out))}
    if handle is not None:
        study, trial = handle
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, value)
        return
    if plan.spec.search.method != "grid":
        return  # a TPE trial already complete in the storage
    study = _study(plan, stage)
    if any(t.params.get(PARAM) == lr and t.state == TrialState.COMPLETE  # a grid trial is known by its rate
           for t in study.get_trials(deepcopy=False)):
        return
    study.add_trial(optuna.trial.create_trial(params={PARAM: lr}, distributions={PARAM: _distribution(plan, stage.model)},
                                              value=value, user_attrs=attrs))
