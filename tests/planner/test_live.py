import json
import time

from rich.console import Console

from ptplan._live import StudyMonitor


def _result(folder, status, id_, ood, spent):
    folder.mkdir(parents=True)
    final = {"id": id_, "ood": ood} if status == "complete" else None
    (folder / "result.json").write_text(json.dumps({"status": status, "final": final,
                                                    "ledger": {"spent": {"flops": spent}}}))


def test_monitor_shows_done_running_failed_best_progress_and_compute(tmp_path):
    trials = tmp_path / "trials"
    _result(trials / "0", "complete", 0.30, 0.10, 100.0)
    _result(trials / "1", "complete", 0.20, 0.25, 100.0)
    _result(trials / "2", "failed", 0.0, 0.0, 40.0)
    (trials / "3").mkdir()
    (trials / "3" / "progress.json").write_text(json.dumps(
        {"stage": "sft", "spent": 15.0, "slice": 30.0, "shares": {"cpt": 0.2, "sft": 0.3, "rl": 0.5},
         "unit": "flops", "total": 100.0, "time": time.time()}))
    (trials / "4").mkdir()  # a dead trial's stale progress is not "running"
    (trials / "4" / "progress.json").write_text(json.dumps(
        {"stage": "cpt", "spent": 1.0, "slice": 20.0, "shares": {}, "unit": "flops", "total": 100.0,
         "time": time.time() - 3600}))
    monitor = StudyMonitor(tmp_path, target=4, budget_total=100.0, unit="flops")
    snap = monitor.snapshot()
    assert len(snap["done"]) == 2 and len(snap["failed"]) == 1 and [r[0] for r in snap["running"]] == ["3"]
    assert snap["spent"] == 100 + 100 + 40 + (20 + 15)
    console = Console(record=True, width=120)
    console.print(monitor)
    text = console.export_text()
    assert "2 complete of 4, 1 running, 1 failed" in text
    assert "best ID 0.300 (trial 0)" in text and "best OOD 0.250 (trial 1)" in text
    assert "SFT" in text and "50%" in text and "compute spent 275 of 400 flops" in text


def test_monitor_on_an_empty_run_folder(tmp_path):
    console = Console(record=True, width=120)
    console.print(StudyMonitor(tmp_path, target=3, budget_total=10.0, unit="epochs"))
    assert "0 complete of 3" in console.export_text()


def test_progress_writer_feeds_the_monitor(tmp_path):
    from ptplan.stages import TrialConfig
    from ptplan.studies._objective import progress_writer

    out = tmp_path / "trials" / "7"
    out.mkdir(parents=True)
    cfg = TrialConfig.from_dict({"budget": {"total": 100.0, "unit": "tokens"}})
    write = progress_writer(out, cfg, every=0.0)
    write("rl", 10.0, 40.0)
    snap = StudyMonitor(tmp_path, target=1, budget_total=100.0, unit="tokens").snapshot()
    assert [name for name, _ in snap["running"]] == ["7"]
    assert snap["spent"] == (0.3 + 0.3) * 100.0 + 10.0  # CPT and SFT slices before RL, plus RL's progress
