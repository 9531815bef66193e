"""The training side: tasks and rewards, backbones, CPT/SFT/RL stages, budget ledger, evaluation.

Names resolve lazily so that `import ptplan.stages` (and `ptplan --help`) does not import torch.
stages/ never imports studies/ or planner/, and never polars.
"""

from importlib import import_module

_EXPORTS = {
    # config
    "TrialConfig": "_config", "Budget": "_config", "Allocation": "_config", "StageConfig": "_config",
    "RLConfig": "_config", "BackboneConfig": "_config", "DataConfig": "_config", "EvalConfig": "_config",
    "ConfigError": "_config", "from_dict": "_config", "UNITS": "_config", "STAGES": "_config", "apply_overrides": "_config",
    # ledger
    "Ledger": "_ledger", "Spend": "_ledger", "BudgetError": "_ledger",
    # backbones
    "BUILTIN_BACKBONES": "_backbones", "load_backbone": "_backbones", "char_tokenizer": "_backbones",
    # tasks and data
    "SUITES": "_tasks", "build_suite": "_tasks", "Example": "_tasks", "TaskData": "_tasks", "SuiteSizes": "_tasks",
    "SCORERS": "_scoring", "resolve_scorer": "_scoring", "load_user_data": "_userdata", "DataError": "_userdata",
    # stages and trials
    "CPTStage": "_stages", "SFTStage": "_stages", "RLStage": "_stages", "STAGE_TYPES": "_stages",
    "DivergedError": "_stages", "RewardError": "_scoring", "evaluate": "_eval", "EvalError": "_eval",
    "run_trial": "_trial", "TrialRunner": "_trial", "TrialFailed": "_trial", "ConfigMismatch": "_trial",
    "CurvePoint": "_trial", "load_trial_config": "_trial", "FAILURE_REASONS": "_trial", "ood_peak": "_trial",
    "stage_key": "_trial", "describe_diff": "_trial",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ptplan.stages' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
