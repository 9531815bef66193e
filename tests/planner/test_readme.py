"""The README's Python example runs as written (real trials of the smoke preset)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.integration
def test_the_readme_python_example_runs(tmp_path):
    code = python_example()
    assert "ptplan.Study(plan)" in code and "ptplan.recommend(" in code
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                              "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    run = tmp_path / "runs" / "api-demo"
    assert (run / "report" / "report.md").exists()
    assert len(list((run / "trials").glob("*/result.json"))) == 2
    assert (run / "one-trial" / "result.json").exists()
    assert "COMPLETE" in out.stdout
