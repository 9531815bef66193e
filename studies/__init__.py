"""Optuna side: search space, objective, storage, resume, workers, checkpoint reuse.

A plan's `study:` section becomes one Optuna study whose trials are real staged trials (stages/).
Names resolve lazily so that `import ptplan.studies` imports neither optuna nor torch.
"""


from ptplan.stages._lazy import lazy_exports

_EXPORTS = {
    # the plan (files, presets, study section) and its identity
    "Plan": "_config", "StudyPlan": "_config", "StudyConfig": "_config", "ObjectiveConfig": "_config",
    "HeartbeatConfig": "_config", "read_plan": "_config", "trial_config": "_config", "preset_names": "_config",
    "preset_text": "_config", "StudyError": "_config", "plan_fields": "_config", "fields_markdown": "_config",
    "annotate_plan": "_config",
    # search space
    "SearchSpace": "_space", "Param": "_space", "CPT_SHARE": "_space", "SFT_OF_REST": "_space",
    "SHARE_PARAMS": "_space", "short_name": "_space",
    # storage and study
    "StorageSpec": "_storage", "open_storage": "_storage", "default_storage": "_storage", "mask": "_storage",
    "SAMPLERS": "_study", "PRUNERS": "_study", "open_study": "_study", "check_identity": "_study",
    # surrogate-guided search and multi-objective pruning; no proposal twice
    "SurrogateSampler": "_surrogate_sampler", "DominatedPruner": "_prune", "pareto_points": "_prune",
    "DistinctSampler": "_distinct",
    # preflight (also called by cluster submitters before anything is queued)
    "preflight": "_preflight", "PreflightError": "_preflight", "PreflightCheck": "_preflight",
    # objective and workers
    "TrialObjective": "_objective", "Lease": "_objective",
    "Session": "_worker", "open_session": "_worker", "work": "_worker", "run_study": "_worker",
    "run_worker": "_worker", "worker_argv": "_worker", "recover": "_worker", "reap_lost": "_worker",
    "failure_reason": "_worker", "ensure_grid_cells": "_worker", "retry_failed": "_worker",
    # clusters (SLURM) and cost
    "SubmitOptions": "_slurm", "submit": "_slurm", "cancel": "_slurm", "array_tasks": "_slurm",
    "study_cost": "_accounting",
    # trial table
    "StudyTable": "_table", "study_table": "_table", "trial_row": "_table", "pareto_front": "_table",
    "to_frame": "_table", "export_table": "_table",
    # stage store
    "collect": "_gc", "store_size": "_gc", "GcResult": "_gc",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, globals(), {k: f".{v}" for k, v in _EXPORTS.items()})
