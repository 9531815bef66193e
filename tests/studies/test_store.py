"""Default storage and study identity: the journal by default, older SQLite studies kept, user data
identified by content (a corrected copy elsewhere is the same study until trials complete on it)."""

import json

import optuna
import pytest

from ptplan.studies import StudyError, StudyPlan, default_storage
from ptplan.studies._study import DATA_ATTR, FINGERPRINT_ATTR, IDENTITY_ATTR, check_identity

from conftest import MICRO


def test_default_storage_is_a_journal_and_an_existing_sqlite_study_keeps_working(tmp_path):
    assert default_storage(tmp_path, jobs=1).startswith("journal://")
    (tmp_path / "study.db").touch()
    assert default_storage(tmp_path, jobs=1).startswith("sqlite:///")
    with pytest.raises(StudyError, match="serves one worker"):
        default_storage(tmp_path, jobs=2)


def _plan(tmp_path, ood):
    files = {}
    for split in ("id", "ood_a", "ood_b"):
        path = tmp_path / f"{split}.jsonl"
        if not path.exists():
            path.write_text(json.dumps({"prompt": f"{split}:", "answer": "A"}) + "\n")
        files[split] = str(path)
    data = json.loads(json.dumps(MICRO))
    data["data"] = {"files": {"id": files["id"], "ood": files[ood]}, "scorer": "exact"}
    data["study"] = {"dir": str(tmp_path / "run")}
    return StudyPlan.from_mapping(data)


def test_data_is_identified_by_content_not_path(tmp_path):
    study = optuna.create_study(directions=["maximize", "maximize"])
    first = _plan(tmp_path, "ood_a")
    check_identity(study, first, "memory")
    assert set(study.user_attrs[DATA_ATTR]) == {"id", "ood"}
    (tmp_path / "ood_b.jsonl").write_text((tmp_path / "ood_a.jsonl").read_text().replace("A", "T"))
    moved = _plan(tmp_path, "ood_b")  # another path, other content, no trial complete yet: adopted
    check_identity(study, moved, "memory")
    assert study.user_attrs[DATA_ATTR] == moved.data_digests()
    study.add_trial(optuna.trial.create_trial(values=[0.1, 0.2]))
    with pytest.raises(StudyError, match=r"content of data split\(s\) ood changed since 1 trial\(s\) completed"):
        check_identity(study, first, "memory")
    check_identity(study, moved, "memory")  # the content the trial completed on


def test_a_study_made_before_data_digests_is_upgraded_not_refused(tmp_path):
    plan = _plan(tmp_path, "ood_a")
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.set_user_attr(IDENTITY_ATTR, plan.identity(legacy=True))
    study.set_user_attr(FINGERPRINT_ATTR, plan.fingerprint(legacy=True))
    study.add_trial(optuna.trial.create_trial(values=[0.1, 0.2]))
    check_identity(study, plan, "memory")
    assert study.user_attrs[FINGERPRINT_ATTR] == plan.fingerprint() != plan.fingerprint(legacy=True)
    assert study.user_attrs[DATA_ATTR] == plan.data_digests()
