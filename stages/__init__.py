"""The training side: tasks and rewards, backbones, CPT/SFT/RL stages, budget ledger, evaluation,
and the trial record contract (`ptplan.stages.record`).

Names resolve lazily so that `import ptplan.stages` (and `ptplan --help`) does not import torch.
stages/ never imports ptplan.studies, ptplan.surrogates or the planner's modules, and never polars;
a `predicted-peak` hand-over policy arrives as a callable.
"""


from ptplan.stages._lazy import lazy_exports

_EXPORTS = {
    # config
    "TrialConfig": "_config", "Budget": "_config", "Allocation": "_config", "StageConfig": "_config",
    "RLConfig": "_config", "BackboneConfig": "_config", "DataConfig": "_config", "EvalConfig": "_config",
    "from_dict": "_config", "UNITS": "_config", "apply_overrides": "_config",
    # errors: one root, each class carries its failure reason
    "PtplanError": "errors", "ConfigError": "errors", "PlanError": "errors", "DataError": "errors",
    "BudgetError": "errors", "RewardError": "errors", "DivergedError": "errors", "EvalError": "errors",
    "Pruned": "errors", "TrialFailed": "errors", "ConfigMismatch": "errors", "StudyError": "errors",
    "RecommendError": "errors", "reason_of": "errors",
    # the trial record
    "STAGES": "record", "CurvePoint": "record", "FAILURE_REASONS": "record", "ood_peak": "record",
    # ledger
    "Ledger": "_ledger", "Spend": "_ledger",
    # backbones
    "BUILTIN_BACKBONES": "_backbones", "load_backbone": "_backbones", "char_tokenizer": "_backbones",
    # tasks and data
    "SUITES": "_tasks", "build_suite": "_tasks", "Example": "_tasks", "TaskData": "_tasks", "SuiteSizes": "_config",
    "SCORERS": "_scoring", "resolve_scorer": "_scoring", "load_user_data": "_userdata",
    # stages and trials
    "CPTStage": "_stages", "SFTStage": "_stages", "RLStage": "_stages", "STAGE_TYPES": "_stages",
    "evaluate": "_eval", "run_trial": "_trial", "TrialRunner": "_trial", "load_trial_config": "_trial",
    "stage_key": "_trial", "describe_diff": "_trial", "load_task_data": "_trial",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, globals(), {k: f".{v}" for k, v in _EXPORTS.items()})
