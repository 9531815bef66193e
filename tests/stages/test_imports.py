import subprocess
import sys


def test_stages_never_import_polars_studies_or_planner():
    """Trial workers on a GPU machine need neither polars nor the study/CLI layers (DESIGN.md)."""
    code = ("import sys, stages, stages._stages, stages._trial, stages._eval, stages._userdata, stages._tasks\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('polars', 'studies', 'planner')]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
