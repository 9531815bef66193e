"""User task data: one JSONL, CSV or Parquet file per split, validated against one schema on load.

Every split has string columns `prompt` and `answer` and an optional `task`; the `cpt` split may
instead have a `text` column. `id` and `ood` are required; `cpt`, `sft` and `rl` may be left out
(an empty list). Any problem raises `DataError` naming the file, column, row and value.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ptplan.stages._scoring import DEFAULT_TOLERANCE, resolve_scorer
from ptplan.stages._tasks._base import FALLBACK_TASK, Example, TaskData
from ptplan.stages.errors import DataError

SPLITS: dict[str, bool] = {"cpt": False, "sft": False, "rl": False, "id": True, "ood": True}  # split -> required




def _rows_jsonl(path: Path, err: Any) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, Any]]]]:
    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    problem = f"invalid JSON ({exc.msg})"
                    raise err(problem, row=lineno, value=line.rstrip("\n"), has_value=True) from None
                if not isinstance(record, dict):
                    raise err("each line must be a JSON object", row=lineno, value=record, has_value=True)
                yield lineno, record

    return None, rows()


def _rows_csv(path: Path, err: Any) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, Any]]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        records = list(reader)
    for i, record in enumerate(records, start=1):
        if None in record:
            problem = f"row has more fields than the header ({len(columns)})"
            raise err(problem, row=i, value=record[None], has_value=True)
    return columns, enumerate(records, start=1)


def _rows_parquet(path: Path, err: Any) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, Any]]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any read failure is a bad file
        raise err(f"cannot read Parquet: {exc}") from None
    return list(table.column_names), enumerate(table.to_pylist(), start=1)


READERS = {
    ".jsonl": _rows_jsonl,
    ".ndjson": _rows_jsonl,
    ".csv": _rows_csv,
    ".parquet": _rows_parquet,
    ".pq": _rows_parquet,
}


def _string(record: dict[str, Any], column: str, row: int, err: Any) -> str:
    if column not in record:
        raise err("missing value", row=row, field=column)
    value = record[column]
    if value is None:
        raise err("missing (null) value", row=row, field=column, value=value, has_value=True)
    if not isinstance(value, str):
        raise err(
            f"must be a string, got {type(value).__name__} (store the column as text)",
            row=row,
            field=column,
            value=value,
            has_value=True,
        )
    if not value.strip():
        raise err("empty value", row=row, field=column, value=value, has_value=True)
    return value


def load_split(split: str, path: str | Path, default_task: str) -> list[Example] | list[str]:
    """Examples of one split (CPT documents as strings for the `cpt` split), validated."""
    path = Path(path)

    def err(problem: str, **where: Any) -> DataError:
        return DataError(problem, split=split, file=path, **where)

    if not path.is_file():
        raise err("file does not exist" if not path.exists() else "not a file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise err(f"unknown suffix {path.suffix!r}; expected one of {', '.join(READERS)}")
    try:
        columns, rows = reader(path, err)
        return _validate(split, columns, rows, err, default_task)
    except UnicodeDecodeError as exc:
        raise err(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise err(f"malformed CSV: {exc}") from None


def _validate(split: str, columns: list[str] | None, rows: Any, err: Any, default_task: str) -> list[Any]:
    text_doc = split == "cpt" and (columns is None or "text" in columns)
    if columns is not None:
        needed = ["text"] if text_doc else ["prompt", "answer"]
        for column in needed:
            if column not in columns:
                found = f"columns found: {', '.join(columns) or 'none'}"
                if split == "cpt" and column == "prompt":  # neither `text` nor `prompt`
                    raise err(f"column missing (or `prompt` and `answer`); {found}", field="text")
                raise err(f"column missing; {found}", field=column)
    has_task = columns is not None and "task" in columns
    out: list[Any] = []
    for row, record in rows:
        if split == "cpt" and (("text" in record) if columns is None else text_doc):
            out.append(_string(record, "text", row, err))
            continue
        prompt = _string(record, "prompt", row, err)
        answer = _string(record, "answer", row, err)
        if split == "cpt":
            out.append(prompt + answer)
            continue
        task = _string(record, "task", row, err) if has_task or "task" in record else default_task
        out.append(Example(prompt, answer, task))
    if not out:
        raise err("split has no rows")
    return out


def load_user_data(
    files: dict[str, str | Path],
    scorer: str = "exact",
    tolerance: float = DEFAULT_TOLERANCE,
    name: str = "user",
    ood_shift: str = "user-provided OOD split",
) -> TaskData:
    """Load and validate every split of a user's task data before anything trains.

    Args:
        files: split (`cpt`, `sft`, `rl`, `id`, `ood`) -> path; `id` and `ood` are required.
        scorer: scorer name or reward import path (see `resolve_scorer`), used for every task.
        tolerance: absolute tolerance of the `numeric` scorer.
        name: name of the data; also the task of rows without a `task` value.
        ood_shift: human-readable description of how the OOD split differs.
    """
    unknown = [s for s in files if s not in SPLITS]
    if unknown:
        raise DataError(f"unknown split {unknown[0]!r}; known splits: {', '.join(SPLITS)}", field=str(unknown[0]))
    missing = [s for s, required in SPLITS.items() if required and s not in files]
    if missing:
        raise DataError(f"no file given for required split `{missing[0]}` (required: id, ood)", split=missing[0])
    resolved = resolve_scorer(scorer, tolerance)
    loaded = {split: load_split(split, path, name) for split, path in files.items()}
    return TaskData(
        name=name,
        cpt_corpus=list(loaded.get("cpt", [])),
        sft_train=list(loaded.get("sft", [])),
        rl_train=list(loaded.get("rl", [])),
        id_test=list(loaded["id"]),
        ood_test=list(loaded["ood"]),
        ood_shift=ood_shift,
        scorers={FALLBACK_TASK: resolved},
    )
