"""User data: JSONL/CSV/Parquet round trip and schema errors that name file, column, row and value."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptplan.stages._tasks import Example
from ptplan.stages._userdata import DataError, load_user_data

ROWS = {
    "sft": [{"prompt": "rc:ACG=", "answer": "CGT", "task": "revcomp"}, {"prompt": "gc:GGA=", "answer": "2", "task": "gc"}],
    "rl": [{"prompt": "rc:TTA=", "answer": "TAA", "task": "revcomp"}],
    "id": [{"prompt": "rc:CCA=", "answer": "TGG", "task": "revcomp"}, {"prompt": "gc:AAA=", "answer": "0", "task": "gc"}],
    "ood": [{"prompt": "rc:GATTACA=", "answer": "TGTAATC", "task": "revcomp_long"}],
}


def write(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.table({c: [row.get(c) for row in rows] for c in columns}), path)
    return path


def write_all(tmp_path: Path, suffix: str, rows: dict[str, list[dict]] = ROWS) -> dict[str, Path]:
    return {split: write(tmp_path / f"{split}{suffix}", split_rows) for split, split_rows in rows.items()}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_round_trip(tmp_path, suffix):
    files = write_all(tmp_path, suffix)
    files["cpt"] = write(tmp_path / f"cpt{suffix}", [{"text": "ACGTACGT"}, {"text": "tl1:ATG=M"}])
    data = load_user_data(files, name="mine")
    assert data.name == "mine"
    assert data.cpt_corpus == ["ACGTACGT", "tl1:ATG=M"]
    for split, attr in (("sft", "sft_train"), ("rl", "rl_train"), ("id", "id_test"), ("ood", "ood_test")):
        assert getattr(data, attr) == [Example(r["prompt"], r["answer"], r["task"]) for r in ROWS[split]]
    assert data.score("TGG", data.id_test[0]) == 1.0 and data.score("TGA", data.id_test[0]) == 0.0


def test_optional_splits_default_task_and_cpt_from_pairs(tmp_path):
    files = {
        "id": write(tmp_path / "id.csv", [{"prompt": "a=", "answer": "1.0"}]),
        "ood": write(tmp_path / "ood.jsonl", [{"prompt": "b=", "answer": "2"}]),
        "cpt": write(tmp_path / "cpt.parquet", [{"prompt": "c=", "answer": "3"}]),
    }
    data = load_user_data(files, scorer="numeric", tolerance=0.5, name="assay")
    assert data.sft_train == [] and data.rl_train == []
    assert data.cpt_corpus == ["c=3"]
    assert data.id_test == [Example("a=", "1.0", "assay")]
    assert data.score("1.4", data.id_test[0]) == 1.0 and data.score("1.6", data.id_test[0]) == 0.0
    assert data.reward_fn()(["2", "9"], answer=["2", "2"]) == [1.0, 0.0]


def test_set_f1_scorer_by_name(tmp_path):
    rows = [{"prompt": "go:P12345=", "answer": "GO:0005634, GO:0003677"}]
    data = load_user_data({"id": write(tmp_path / "id.jsonl", rows), "ood": write(tmp_path / "o.jsonl", rows)}, scorer="set_f1")
    assert data.score("GO:0005634", data.ood_test[0]) == pytest.approx(2 / 3)


def _bad(tmp_path: Path, name: str, rows: list[dict], columns: list[str] | None = None) -> dict[str, Path]:
    files = write_all(tmp_path, ".jsonl")
    files["sft"] = write(tmp_path / name, rows, columns)
    return files


GOOD = {"prompt": "rc:A=", "answer": "T"}

BAD_CASES = {
    # case: (file name, rows, columns, expected fragments of the message)
    "missing column csv": ("bad.csv", [{"prompt": "p="}], ["prompt"], ["bad.csv", "`answer`", "column missing"]),
    "missing column parquet": ("bad.parquet", [{"answer": "x"}], ["answer"], ["bad.parquet", "`prompt`", "column missing"]),
    "missing key jsonl": ("bad.jsonl", [GOOD, {"prompt": "p="}], None, ["bad.jsonl", "row 2", "`answer`", "missing"]),
    "empty value csv": ("bad.csv", [GOOD, GOOD, {"prompt": "p=", "answer": ""}], None, ["bad.csv", "row 3", "`answer`", "empty", "''"]),
    "blank value jsonl": ("bad.jsonl", [{"prompt": "   ", "answer": "x"}], None, ["bad.jsonl", "row 1", "`prompt`", "'   '"]),
    "int answer jsonl": ("bad.jsonl", [GOOD, {"prompt": "p=", "answer": 7}], None, ["row 2", "`answer`", "got int", "value: 7"]),
    "int answer parquet": ("bad.parquet", [{"prompt": "p=", "answer": 7}], None, ["bad.parquet", "row 1", "`answer`", "value: 7"]),
    "null prompt parquet": ("bad.parquet", [GOOD, {"prompt": None, "answer": "x"}], None, ["row 2", "`prompt`", "null", "None"]),
    "empty task csv": ("bad.csv", [{"prompt": "p=", "answer": "a", "task": ""}], None, ["bad.csv", "row 1", "`task`", "''"]),
    "list task jsonl": ("bad.jsonl", [{"prompt": "p=", "answer": "a", "task": ["x"]}], None, ["`task`", "['x']"]),
    "empty split": ("bad.jsonl", [], None, ["bad.jsonl", "split `sft`", "no rows"]),
    "unknown suffix": ("bad.txt", [], None, ["bad.txt", "unknown suffix '.txt'", ".jsonl"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_raises_data_error_naming_where(tmp_path, case):
    name, rows, columns, fragments = BAD_CASES[case]
    if name.endswith(".txt"):
        files = write_all(tmp_path, ".jsonl")
        files["sft"] = tmp_path / name
        files["sft"].write_text("prompt,answer\n")
    else:
        files = _bad(tmp_path, name, rows, columns)
    with pytest.raises(DataError) as info:
        load_user_data(files)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(info.value, ValueError) and info.value.split == "sft"


def test_missing_file_and_invalid_json(tmp_path):
    files = write_all(tmp_path, ".jsonl")
    files["rl"] = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match=r"split `rl`, file '.*nowhere\.csv': file does not exist"):
        load_user_data(files)
    files = write_all(tmp_path, ".jsonl")
    files["ood"].write_text(json.dumps(GOOD) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"ood\.jsonl', row 3: invalid JSON .*value: '\{not json'"):
        load_user_data(files)
    files["ood"].write_text('["a list"]\n')
    with pytest.raises(DataError, match=r"row 1: each line must be a JSON object"):
        load_user_data(files)


def test_csv_row_with_extra_fields(tmp_path):
    files = write_all(tmp_path, ".jsonl")
    files["id"] = tmp_path / "id.csv"
    files["id"].write_text("prompt,answer\na=,b\nc=,d,EXTRA\n")
    with pytest.raises(DataError, match=r"id\.csv', row 2: row has more fields.*EXTRA"):
        load_user_data(files)


def test_required_and_unknown_splits(tmp_path):
    files = write_all(tmp_path, ".jsonl")
    del files["ood"]
    with pytest.raises(DataError, match="required split `ood`"):
        load_user_data(files)
    files = write_all(tmp_path, ".jsonl")
    files["test"] = files.pop("id")
    with pytest.raises(DataError, match="unknown split 'test'; known splits: cpt, sft, rl, id, ood"):
        load_user_data(files)


def test_cpt_split_needs_text_or_pairs(tmp_path):
    files = write_all(tmp_path, ".jsonl")
    files["cpt"] = write(tmp_path / "cpt.csv", [{"doc": "ACGT"}])
    with pytest.raises(DataError, match=r"cpt\.csv', column `text`: column missing \(or `prompt` and `answer`\)"):
        load_user_data(files)
    files["cpt"] = write(tmp_path / "cpt.jsonl", [{"text": "ACGT"}, {"text": 5}])
    with pytest.raises(DataError, match=r"row 2, column `text`"):
        load_user_data(files)


def test_unknown_scorer_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="'levenshtein'"):
        load_user_data(write_all(tmp_path, ".jsonl"), scorer="levenshtein")
