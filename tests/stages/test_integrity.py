"""Checkpoint integrity: a stage record holds the size and SHA-256 of every saved file; a damaged stage is
quarantined and trained again; a complete trial's result is never overwritten. Real training, tiny model."""

import json

import pytest

from ptplan.stages import run_trial

pytestmark = pytest.mark.integration

MICRO = {
    "data": {"suite": "genomics", "sizes": {"cpt": 16, "sft": 16, "rl": 4, "id_test": 8, "ood_test": 8}},
    "budget": {"total": 6, "unit": "epochs"},
    "allocation": {"shares": {"cpt": 0.5, "sft": 0.5, "rl": 0.0},
                   "cpt": {"rank": 0, "lr": 3e-3, "batch_size": 16, "warmup_steps": 0},
                   "sft": {"rank": 0, "lr": 3e-3, "batch_size": 16, "warmup_steps": 0}},
    "eval": {"points": {"cpt": 1, "sft": 2, "rl": 1}, "batch_size": 16},
}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_record_lists_every_file_with_size_and_checksum(tiny_config, tmp_path):
    import hashlib

    result = run_trial(tiny_config(**MICRO), tmp_path)
    for stage in ("cpt", "sft"):
        folder = tmp_path / "stages" / f"{stage}-{result['stages'][stage]['key']}"
        files = json.loads((folder / "record.json").read_text())["files"]
        assert "model.safetensors" in files and "config.json" in files
        for rel, want in files.items():
            data = (folder / "model" / rel).read_bytes()
            assert want == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("old_record", [False, True], ids=["checksums", "record-without-checksums"])
def test_truncated_checkpoint_is_quarantined_and_retrained_and_the_complete_result_kept(tiny_config, tmp_path,
                                                                                        old_record):
    cfg = tiny_config(**MICRO)
    result = run_trial(cfg, tmp_path)
    kept = {name: (tmp_path / name).read_bytes() for name in ("result.json", "curves.parquet")}
    cpt = tmp_path / "stages" / f"cpt-{result['stages']['cpt']['key']}"
    if old_record:  # as written before checksums existed: loading is the only check
        record = json.loads((cpt / "record.json").read_text())
        del record["files"]
        (cpt / "record.json").write_text(json.dumps(record))
    _truncate(cpt / "model" / "model.safetensors")

    again = run_trial(cfg, tmp_path)  # `ptplan trial --resume`: same folder, same config
    assert again["status"] == "complete"
    assert not again["ledger"]["stages"]["cpt"]["reused"]  # trained again
    assert again["ledger"]["stages"]["sft"]["reused"]
    (aside,) = list((tmp_path / "stages" / "quarantine").iterdir())
    assert aside.name.startswith(cpt.name) and (aside / "model" / "model.safetensors").exists()
    log = (tmp_path / "trial.log").read_text()
    assert "is damaged" in log and str(aside) in log
    # the new checkpoint is whole and verified
    from ptplan.stages._trial import verify_checkpoint

    assert verify_checkpoint(cpt / "model", json.loads((cpt / "record.json").read_text())["files"]) is None
    # the complete trial's files are byte-identical; the new attempt went beside them
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept
    assert json.loads((tmp_path / "attempts" / "1" / "result.json").read_text())["status"] == "complete"


def test_failed_attempt_never_overwrites_a_complete_result(tiny_config, tmp_path, monkeypatch):
    from ptplan.stages import TrialFailed
    from ptplan.stages import _stages

    cfg = tiny_config(**MICRO)
    result = run_trial(cfg, tmp_path)
    kept = {name: (tmp_path / name).read_bytes() for name in ("result.json", "curves.parquet")}
    _truncate(tmp_path / "stages" / f"cpt-{result['stages']['cpt']['key']}" / "model" / "model.safetensors")

    def boom(self, model, tokenizer, ctx):
        raise RuntimeError("node lost")

    monkeypatch.setattr(_stages.CPTStage, "run", boom)
    with pytest.raises(TrialFailed):
        run_trial(cfg, tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept
    failed = json.loads((tmp_path / "attempts" / "1" / "result.json").read_text())
    assert failed["status"] == "failed" and "node lost" in failed["failure"]["message"]
