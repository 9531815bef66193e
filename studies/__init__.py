"""Optuna side: search space, objective, storage, resume, workers, checkpoint reuse.

A plan's `study:` section becomes one Optuna study whose trials are real staged trials (stages/).
Names resolve lazily so that `import ptplan.studies` imports neither optuna nor torch.
"""

from importlib import import_module

_EXPORTS = {
    # plan section and identity
    "StudyPlan": "_config", "StudyConfig": "_config", "ObjectiveConfig": "_config", "HeartbeatConfig": "_config",
    "StudyError": "_config",
    # search space
    "SearchSpace": "_space", "Param": "_space", "CPT_SHARE": "_space", "SFT_OF_REST": "_space",
    # storage and study
    "StorageSpec": "_storage", "open_storage": "_storage", "default_storage": "_storage", "mask": "_storage",
    "SAMPLERS": "_study", "PRUNERS": "_study", "open_study": "_study", "check_identity": "_study",
    # surrogate-guided search and multi-objective pruning; no proposal twice
    "SurrogateSampler": "_surrogate_sampler", "DominatedPruner": "_prune", "DistinctSampler": "_distinct",
    # preflight (also called by cluster submitters before anything is queued)
    "preflight": "_preflight", "PreflightError": "_preflight", "PreflightCheck": "_preflight",
    # objective and workers
    "TrialObjective": "_objective", "Lease": "_objective",
    "Session": "_worker", "open_session": "_worker", "work": "_worker", "run_study": "_worker",
    "run_worker": "_worker", "worker_argv": "_worker", "recover": "_worker", "reap_lost": "_worker",
    "failure_reason": "_worker", "ensure_grid_cells": "_worker", "retry_failed": "_worker",
    # trial table
    "StudyTable": "_table", "study_table": "_table", "trial_row": "_table", "pareto_front": "_table",
    "to_frame": "_table", "export_table": "_table",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ptplan.studies' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
