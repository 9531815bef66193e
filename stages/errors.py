"""Every ptplan error derives from `PtplanError`; each class carries the failure reason it stands for.

A trial's failure reason is read from the exception (`reason_of`), never from a class name.
"""

from __future__ import annotations


class PtplanError(Exception):
    """Root of ptplan's errors. `reason` is the failure class a trial records for it."""

    reason = "error"


class ConfigError(PtplanError, ValueError):
    """A plan field has a bad value; `path` names the field."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.detail = message
        super().__init__(f"`{path}` {message}")

    def under(self, prefix: str) -> "ConfigError":
        if not prefix or self.path == prefix or self.path.startswith(prefix + "."):  # already the full path
            return self
        return ConfigError(f"{prefix}.{self.path}", self.detail)


class PlanError(PtplanError, ValueError):
    """A plan file cannot be read or names an unknown preset."""


class DataError(PtplanError, ValueError):
    """A user data file that does not match the schema.

    Attributes name where: `split`, `file`, `field` (column), `row` (1-based: the line of a JSONL
    file, the data row of a CSV file after its header, the row of a Parquet file) and `value`.
    """

    reason = "data_error"
    MAX_VALUE_CHARS = 80

    def __init__(self, problem: str, *, split: str | None = None, file=None, field: str | None = None,
                 row: int | None = None, value=None, has_value: bool = False):
        self.problem, self.split, self.file, self.field, self.row, self.value = problem, split, file, field, row, value
        where = []
        if split is not None:
            where.append(f"split `{split}`")
        if file is not None:
            where.append(f"file {str(file)!r}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"column `{field}`")
        message = (", ".join(where) + ": " if where else "") + problem
        if has_value:
            shown = repr(value)
            cut = self.MAX_VALUE_CHARS
            message += f" (value: {shown[:cut] + '...' if len(shown) > cut else shown})"
        super().__init__(message)


class BudgetError(PtplanError, ValueError):
    """The budget cannot pay for what the allocation asks (e.g. less than one step of a stage)."""

    reason = "budget"


class RewardError(PtplanError, RuntimeError):
    """A user reward callable raised or returned something that is not one score per completion."""

    reason = "reward_error"


class DivergedError(PtplanError, RuntimeError):
    """The training loss became NaN or infinite."""

    reason = "diverged"


class EvalError(PtplanError, RuntimeError):
    """Evaluation itself failed (not the model being wrong)."""

    reason = "eval_error"


class Pruned(PtplanError):
    """A caller's evaluation hook asked to stop the trial early (a study's pruner)."""

    reason = "pruned"


class TrialFailed(PtplanError, RuntimeError):
    """A trial ended with status `failed`; everything recorded so far is on disk."""

    def __init__(self, reason: str, message: str, result: dict | None = None):
        self.reason, self.message, self.result = reason, message, result
        super().__init__(f"trial failed ({reason}): {message}")


class ConfigMismatch(PtplanError, ValueError):
    """An existing trial folder holds a different configuration."""


class StudyError(PtplanError, RuntimeError):
    """A study cannot be opened, resumed or run; the message says why and what to do."""


class RecommendError(PtplanError, ValueError):
    """The trial table cannot support a recommendation (too few trials, no scores)."""


def reason_of(err: BaseException) -> str:
    """The failure reason a trial records for `err` (one of `record.FAILURE_REASONS`)."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    for e in (err, err.__cause__):
        if isinstance(e, PtplanError) and e.reason != "error":
            return e.reason
    if isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        return "oom"
    try:
        import torch

        if isinstance(err, torch.OutOfMemoryError):
            return "oom"
    except ImportError:  # pragma: no cover - torch is a dependency of the stages
        pass
    return "error"
