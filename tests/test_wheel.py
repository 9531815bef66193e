"""A built wheel installs the one `ptplan` namespace and runs from an unrelated directory."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_wheel_installs_ptplan_only_and_runs_a_trial(tmp_path):
    src, dist = tmp_path / "src", tmp_path / "dist"  # build from a copy: no build/ left in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "dist", "*.egg-info",
                                                             "benchmarks", "tests", "__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("ptplan-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ptplan"}, tops  # nothing generic installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "ptplan/presets/smoke.yaml" in names and "ptplan/stages/record.py" in names

    # A fresh environment: the wheel alone, its dependencies borrowed from this one (no downloads).
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # plain path: its .pth files stay off
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HOME": str(tmp_path)}
    code = ("import ptplan, sys; plan = ptplan.Plan.load('smoke'); print(ptplan.__file__); "
            "print(plan.name, plan.trial.budget.total); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('stages', 'studies', 'surrogates', 'planner')))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    first, second, third = out.stdout.strip().splitlines()
    assert first.startswith(site) and second == "smoke 200000000000.0" and third == "[]"

    trial = subprocess.run([str(venv / "bin" / "ptplan"), "trial", "smoke", "--out", "t1"], capture_output=True,
                           text=True, cwd=elsewhere, env=env, timeout=600)
    assert trial.returncode == 0, trial.stdout[-2000:] + trial.stderr[-3000:]
    assert (elsewhere / "t1" / "result.json").exists() and (elsewhere / "t1" / "curves.parquet").exists()
