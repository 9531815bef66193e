"""ptplan: plan post-training compute (CPT / SFT / RL) for biological reasoning models.

The public face. Names resolve on first use, so `import ptplan` is instant and pulls in neither
torch nor optuna:

    import ptplan
    plan = ptplan.Plan.load("quick", overrides={"budget.total": 8e11})
    study = ptplan.Study(plan)
    study.run(trials=8, jobs=2)
    rec = ptplan.recommend(study, budget=8e11)
    ptplan.report(study, out="report/")

Subpackages: `ptplan.stages` (training and the trial record), `ptplan.studies` (Optuna),
`ptplan.surrogates` (scikit-learn models).
"""

from ptplan.stages._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # the API
    "Plan": "ptplan.studies", "Study": "._api", "run_trial": "._api", "trial_config": "._api",
    "recommend": "._api", "report": "._api", "Recommendation": "._recommend", "Report": "._report",
    "Finding": "._report", "preset_names": "ptplan.studies", "StudyTable": "ptplan.studies",
    "TrialConfig": "ptplan.stages",
    # errors: one root; `reason` names the failure class
    "PtplanError": "ptplan.stages", "ConfigError": "ptplan.stages", "PlanError": "ptplan.stages",
    "DataError": "ptplan.stages", "BudgetError": "ptplan.stages", "RewardError": "ptplan.stages",
    "DivergedError": "ptplan.stages", "EvalError": "ptplan.stages", "TrialFailed": "ptplan.stages",
    "ConfigMismatch": "ptplan.stages", "StudyError": "ptplan.stages", "RecommendError": "ptplan.stages",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
