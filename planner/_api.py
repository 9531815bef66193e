"""The Python API. The `ptplan` command line is a thin layer over these functions.

    plan = ptplan.Plan.load("quick", overrides={"budget.total": 8e11})
    study = ptplan.Study(plan)
    study.run(trials=8, jobs=2)
    rec = ptplan.recommend(study, budget=8e11)
    ptplan.report(study, out="report/")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptplan.studies import Plan

if TYPE_CHECKING:
    from ptplan.stages import CurvePoint, TrialConfig
    from ptplan.studies import StudyTable

    from ._recommend import Recommendation
    from ._report import Report


def trial_config(plan: "str | Path | Plan | TrialConfig", overrides: list[str] | dict | None = None) -> "TrialConfig":
    """The trial configuration of a plan file, preset, `Plan` or `TrialConfig` (overrides applied).

    Only the trial sections are read: a plan without a searchable `study:` section still runs."""
    from ptplan.stages import TrialConfig
    from ptplan.studies import read_plan
    from ptplan.studies import trial_config as from_mapping

    if isinstance(plan, TrialConfig):
        return from_mapping(plan.to_dict(), overrides) if overrides else plan
    if isinstance(plan, Plan):
        return from_mapping(plan.data, overrides)
    data, _ = read_plan(plan)
    return from_mapping(data, overrides)


def run_trial(plan: "str | Path | Plan | TrialConfig", out: str | Path, *, overrides: list[str] | dict | None = None,
              store: str | Path | None = None, on_point: "Callable[[CurvePoint], None] | None" = None,
              on_progress: Callable[[str, float, float], None] | None = None) -> dict:
    """Run one staged trial (CPT -> SFT -> RL) into `out` and return its record (`result.json`).

    Re-running into the same folder resumes it: finished stages are reused. A failed trial raises
    `ptplan.TrialFailed` after recording everything so far; `.reason` names the failure class.

    Args:
        store: folder of content-addressed stage checkpoints (default `out/stages`).
        on_point: called with each evaluation point; on_progress with (stage, spent, slice).
    """
    return trial_runner(trial_config(plan, overrides), out, store=store, on_point=on_point,
                        on_progress=on_progress).run()


def trial_runner(config: "TrialConfig", out: str | Path, store: str | Path | None = None, **hooks: Any):
    """A `ptplan.stages.TrialRunner` for `config` with the hand-over policy its plan asks for
    (`.run()` runs it; `.dest` is where this attempt wrote its record)."""
    from ptplan.stages import TrialRunner
    from ptplan.surrogates import handover_policy_for

    return TrialRunner(config, out, store, handover_policy=handover_policy_for(config), **hooks)


class Study:
    """The Optuna study of a plan: created by `run`, resumed by running the same plan again.

    Args:
        plan: a `Plan`, a plan file or a preset name.
        overrides: plan fields to set (`{"study.storage": "journal:///tmp/j.log"}` or `["k=v"]`).
    """

    def __init__(self, plan: "str | Path | Plan", overrides: list[str] | dict | None = None):
        self.plan = Plan.load(plan, overrides)
        self._session = None

    def __repr__(self) -> str:
        return f"Study({self.plan.name!r}, run_dir={str(self.plan.run_dir)!r})"

    @property
    def name(self) -> str:
        return self.plan.name

    def run(self, trials: int | None = None, jobs: int = 1, echo: Callable[[str], None] | None = None):
        """Run until `trials` trials are COMPLETE in total (default `study.trials` or the grid size),
        with `jobs` local worker processes. Returns the run's summary (`.reached`, `.stopped`)."""
        from ptplan.studies import run_study, worker_argv

        session, result, _codes = run_study(self.plan, trials, jobs, echo or (lambda line: None), worker_argv)
        self._session = session
        return result

    def session(self):
        """The opened storage and Optuna study (an existing study; never creates one)."""
        if self._session is None:
            from ptplan.studies import open_session

            self._session = open_session(self.plan, create=False, must_exist=self.plan.study.storage is None,
                                         check=False)
        return self._session

    @property
    def optuna_study(self):
        return self.session().admin

    def status(self) -> "StudyTable":
        """Trials (one flat row each), state counts, the Pareto front and compute saved by reuse."""
        from ptplan.studies import study_table

        return study_table(self.session().admin, self.plan)

    def table(self):
        """The trial table as a polars DataFrame (the columns of `ptplan export`)."""
        from ptplan.studies import to_frame

        return to_frame(self.status().rows)


def _table_of(source: Any) -> tuple[Any, "Study | None", "StudyTable | None"]:
    """Trial rows from a Study (read once), a StudyTable, a polars frame, row dicts or an exported
    Parquet/CSV file; with the Study and its StudyTable where there is one."""
    from ptplan.studies import StudyTable

    if isinstance(source, Study):
        status = source.status()
        return status.rows, source, status
    if isinstance(source, StudyTable):
        return source.rows, None, source
    if isinstance(source, (str, Path)):
        import polars as pl

        path = Path(source)
        if not path.exists():
            from ptplan.stages import RecommendError

            raise RecommendError(f"trial table {path} does not exist (export one with `ptplan export`)")
        return (pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)), None, None
    return source, None, None


def recommend(study_or_table: Any, budget: float | None = None, objective: str = "balanced") -> "Recommendation":
    """The allocation to run at `budget` for `objective` (ood | id | balanced | weight=W), with
    predicted ID/OOD intervals and the trials behind it. `.to_dict()` is what `--json` prints."""
    from ._recommend import recommend as _recommend

    table, study, _ = _table_of(study_or_table)
    return _recommend(table, budget, objective, items=items_of(study.plan) if study is not None else None)


def items_of(plan: "Plan") -> dict[str, int] | None:
    """Evaluation items behind one ID / OOD score of a plan's built-in suite (None for user files)."""
    data = plan.trial.data
    if data.files:
        return None
    return {"id": data.sizes.id_test, "ood": data.sizes.ood_test}


def report(study_or_table: Any, out: str | Path | None = None, budget: float | None = None,
           objective: str = "balanced", title: str | None = None) -> "Report":
    """Write report.md, report.html and PNG plots to `out` (default `<run folder>/report`)."""
    from ._report import build_report

    table, study, status = _table_of(study_or_table)
    front, unit, base_dir = None, None, None
    if status is not None:
        unit = status.unit
    if study is not None:
        base_dir = study.plan.run_dir
        front = status.front if study.plan.study.objective.kind == "multi" else None
        title = title or f"ptplan report: {study.name}"
        out = out or study.plan.run_dir / "report"
    if out is None:
        from ptplan.stages import RecommendError

        raise RecommendError("report needs `out` (a folder) when given a table rather than a Study")
    return build_report(table, Path(out), budget=budget, objective=objective, base_dir=base_dir,
                        items=items_of(study.plan) if study is not None else None,
                        title=title or "ptplan report", front=front, unit=unit)
