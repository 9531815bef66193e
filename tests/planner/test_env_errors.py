"""Errors of the machine become one line naming the path (or storage); everything else is left alone."""

import errno
import os

from ptplan._cli import environment_error


def test_disk_full_and_permission_errors_name_the_path():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/trials/3/curves.parquet")
    assert environment_error(full) == "No space left on device: /runs/x/trials/3/curves.parquet"
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/runs/x/stages")
    assert environment_error(denied) == "Permission denied: /runs/x/stages"


def test_a_wrapped_os_error_is_found_in_the_cause_chain():
    try:
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/run/plan.yaml")
        except OSError as inner:
            raise RuntimeError("trial bookkeeping failed") from inner
    except RuntimeError as outer:
        assert environment_error(outer) == "Read-only file system: /ro/run/plan.yaml"


def test_a_database_that_went_away_is_one_line_and_a_bug_is_not_hidden():
    from sqlalchemy.exc import OperationalError  # what Optuna's RDB storage raises when the server goes away

    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly\n\tThis "
                                                       "probably means the server terminated"))
    assert environment_error(lost) == "study storage error: server closed the connection unexpectedly"
    assert environment_error(ValueError("a bug")) is None
