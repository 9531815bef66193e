"""Opening a plan's Optuna study: sampler and pruner registries, create-or-resume, identity check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ptplan.stages.errors import StudyError
from ptplan.stages.record import REPORT_STEPS

from ._storage import mask

if TYPE_CHECKING:
    import optuna

    from ._config import StudyPlan

IDENTITY_ATTR, FINGERPRINT_ATTR, SOURCE_ATTR = "ptplan_identity", "ptplan_fingerprint", "ptplan_source"
DATA_ATTR = "ptplan_data"  # split -> SHA-256 of the user data file the trials were trained on


def _tpe(plan: "StudyPlan", seed: int | None):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def _gp(plan, seed):
    import optuna

    return optuna.samplers.GPSampler(seed=seed)


def _nsga2(plan, seed):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, plan.target() // 2)))


def _random(plan, seed):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(plan, seed):
    import optuna

    return optuna.samplers.GridSampler(plan.space.grid_space(), seed=seed)


def _surrogate(plan, seed):
    from ._surrogate_sampler import SurrogateSampler

    return SurrogateSampler(plan, seed=seed)


# name -> factory(plan, seed); one registry, the plan validator reads its keys.
SAMPLERS: dict[str, Callable] = {"tpe": _tpe, "gp": _gp, "nsga2": _nsga2, "random": _random, "grid": _grid,
                                 "surrogate": _surrogate}


def _median():
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def _hyperband():
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=REPORT_STEPS)


def _halving():
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)


def _nop():
    import optuna

    return optuna.pruners.NopPruner()


def _dominated():
    """Multi-objective only: Optuna's pruners are single-objective, so Optuna gets none and the
    objective consults `studies._prune.DominatedPruner` itself."""
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable] = {"median": _median, "hyperband": _hyperband, "successive_halving": _halving,
                                "none": _nop, "dominated": _dominated}


def sampler_seed(plan: "StudyPlan", index: int | None, n_trials: int = 0) -> int:
    """Grid workers share one seed (the cell order); any other process gets a stream of its own,
    derived from the plan seed and what is unique to the process and run (see `_distinct`)."""
    from ._distinct import process_seed

    base = plan.study.seed if plan.study.seed is not None else plan.trial.seed
    if plan.grid:
        return base
    return process_seed(base, index, n_trials)


def open_study(plan: "StudyPlan", storage, url: str, *, index: int | None = 0, create: bool = True,
               check: bool = True, admin: bool = False) -> "optuna.Study":
    """Load the plan's study (or create it); refuse one created from a different plan.

    `admin` gives a handle with a random sampler, for bookkeeping outside `optimize`.
    """
    import optuna

    from ._storage import quiet_optuna

    quiet_optuna()
    if admin:
        sampler, pruner = optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()
    else:
        sampler = None  # chosen once the study's size is known (it keys the process's stream)
        pruner = PRUNERS[plan.study.objective.pruner]() if plan.study.objective.kind == "weighted" else _nop()
    try:
        study = optuna.load_study(study_name=plan.name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if not create:
            raise StudyError(f"no study named {plan.name!r} in {mask(url)}; start it with `ptplan run`") from None
        study = optuna.create_study(storage=storage, study_name=plan.name, directions=plan.directions,
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    if not admin:
        study.sampler = _process_sampler(plan, index, len(study.get_trials(deepcopy=False)))
    if check:
        check_identity(study, plan, url)
    return study


def _upgraded(old: dict) -> dict | None:
    """A stored identity with the trial fields added since it was written filled in at their defaults
    (a study made by an earlier ptplan is the same study if it set none of them), or None."""
    import json

    from ptplan.stages import ConfigError, TrialConfig

    from ._config import MACHINE_FIELDS

    try:
        trial = TrialConfig.from_dict(old.get("trial") or {}).to_dict()
    except (ConfigError, TypeError):
        return None
    for key in MACHINE_FIELDS:
        trial.pop(key, None)
    return json.loads(json.dumps({**old, "trial": trial}, default=str))
def _process_sampler(plan: "StudyPlan", index: int | None, n_trials: int):
    """The plan's sampler on this process's stream; outside a grid, wrapped so it never repeats a trial."""
    from ._distinct import DistinctSampler

    seed = sampler_seed(plan, index, n_trials)
    sampler = SAMPLERS[plan.study.sampler](plan, seed)
    return sampler if plan.grid else DistinctSampler(sampler, plan, seed=seed + 1)


def check_identity(study: "optuna.Study", plan: "StudyPlan", url: str) -> None:
    """First use: record the plan's identity in the study. Later: refuse a different plan, showing how."""
    attrs = study.user_attrs
    identity, fingerprint = plan.identity(), plan.fingerprint()
    if IDENTITY_ATTR not in attrs:
        if study.get_trials(deepcopy=False):
            raise StudyError(f"study {plan.name!r} in {mask(url)} has trials but was not created by ptplan; "
                             "set `study.name` to start a new study")
        study.set_user_attr(IDENTITY_ATTR, identity)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
        study.set_user_attr(SOURCE_ATTR, plan.source)
        _check_data(study, plan, url)
        return
    if attrs.get(FINGERPRINT_ATTR) == plan.fingerprint(legacy=True) != fingerprint:  # made before data digests
        study.set_user_attr(IDENTITY_ATTR, identity)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    elif attrs.get(FINGERPRINT_ATTR) == fingerprint or _upgraded(attrs[IDENTITY_ATTR]) == identity:
        _check_data(study, plan, url)
        return
    else:
        _refuse(attrs, plan, identity, url)
    _check_data(study, plan, url)


def _check_data(study: "optuna.Study", plan: "StudyPlan", url: str) -> None:
    """User data is identified by content: a changed file is refused once trials completed on the old
    content; while none has (e.g. every trial failed on the bad file), the fixed content is adopted."""
    from optuna.trial import TrialState

    digests = plan.data_digests()
    old = study.user_attrs.get(DATA_ATTR)
    if not digests or old == digests:
        return
    if old:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        changed = [s for s in sorted(set(old) | set(digests)) if old.get(s) != digests.get(s)]
        if done:
            raise StudyError(
                f"study {plan.name!r} in {mask(url)}: the content of data split(s) {', '.join(changed)} changed since "
                f"{len(done)} trial(s) completed on the old content ("
                + ", ".join(f"{s}: {str(old.get(s))[:12]} -> {str(digests.get(s))[:12]}" for s in changed)
                + "); their results would not be comparable; restore the files, or set `study.name` / `study.dir` "
                "to start a new study")
    study.set_user_attr(DATA_ATTR, digests)


def _refuse(attrs: dict, plan: "StudyPlan", identity: dict, url: str) -> None:
    from ptplan.stages import describe_diff

    diff = describe_diff(attrs[IDENTITY_ATTR], identity) or ["(same fields, different ptplan identity version)"]
    raise StudyError(
        f"study {plan.name!r} in {mask(url)} was created from a different plan (search space, objective, budget "
        f"or fixed trial settings); its trials would not be comparable, so ptplan refuses to mix them:\n  "
        + "\n  ".join(diff)
        + "\nrun the original plan to continue it, or set `study.name` / `study.dir` to start a new study")
