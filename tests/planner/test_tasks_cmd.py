import subprocess
import sys


from ptplan.stages import SUITES


def test_tasks_lists_every_suite_family_shift_and_samples():
    proc = subprocess.run([sys.executable, "-m", "ptplan._cli", "tasks"], capture_output=True, text=True,
                          env={"COLUMNS": "250", "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name, spec in SUITES.items():
        assert name in proc.stdout
        for family in spec.families:
            assert family in proc.stdout
    assert proc.stdout.count("OOD shift (data.ood: recall)") == proc.stdout.count("(data.ood: transfer)") == len(SUITES)
    assert "->" in proc.stdout  # sample prompts with answers


def test_tasks_unknown_suite_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "ptplan._cli", "tasks", "virology"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "virology" in proc.stderr and "genomics" in proc.stderr
