"""Study storage by URL: Optuna's journal file (the default; processes on one machine), SQLite (one worker),
PostgreSQL / MySQL (several machines). RDB storages get Optuna's heartbeat; the journal storage,
which has none, gets ptplan's lease (see `_lease.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ptplan.stages.errors import ConfigError

SCHEMES = {"sqlite": "sqlite", "journal": "journal", "postgresql": "rdb", "postgres": "rdb", "mysql": "rdb"}
CONNECT_TIMEOUT_S = 5
DEFAULT_SQLITE = "study.db"
DEFAULT_JOURNAL = "journal.log"


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def check_storage_url(url: str, field: str = "study.storage") -> None:
    """Refuse a storage URL ptplan cannot open, naming the plan field."""
    if not isinstance(url, str) or _scheme(url) not in SCHEMES:
        raise ConfigError(field, "must be sqlite:///FILE, journal:///FILE, postgresql://... or "
                          f"mysql://..., got {url!r}")
    if _scheme(url) in ("sqlite", "journal") and not url.split("://", 1)[1].lstrip("/"):
        raise ConfigError(field, f"needs a file path, got {url!r}")


def mask(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


@dataclass(frozen=True)
class StorageSpec:
    url: str

    @property
    def kind(self) -> str:
        """sqlite | journal | rdb (postgresql / mysql)."""
        return SCHEMES[_scheme(self.url)]

    @property
    def path(self) -> Path | None:
        if self.kind == "journal":
            rest = self.url.split("://", 1)[1]
            return Path(rest if rest.startswith("/") else rest).expanduser()
        if self.kind == "sqlite":
            rest = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            return Path(rest) if rest and rest != ":memory:" else None
        return None

    @property
    def heartbeat(self) -> bool:
        """Optuna's heartbeat works on RDB storages (SQLite included); the journal uses ptplan's lease."""
        return self.kind != "journal"


def journal_url(path: Path) -> str:
    return f"journal://{Path(path).resolve()}"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def default_storage(run_dir: Path, jobs: int, must_exist: bool = False) -> str:
    """The storage inside the run folder: whichever exists, else Optuna's journal file, which serves any
    number of local workers (so `--jobs` can change between runs). SQLite studies made by earlier
    versions keep working, one worker at a time."""
    from ptplan.stages.errors import StudyError

    db, journal = run_dir / DEFAULT_SQLITE, run_dir / DEFAULT_JOURNAL
    if db.exists() and journal.exists():
        raise StudyError(f"{run_dir} holds both {DEFAULT_SQLITE} and {DEFAULT_JOURNAL}; set `study.storage` "
                         "to the one this study lives in")
    if journal.exists():
        return journal_url(journal)
    if db.exists():
        if jobs > 1:
            raise StudyError(f"this study lives in SQLite ({db}), which serves one worker at a time; run it with "
                             "--jobs 1, or copy it to a journal (`optuna copy-study`) and set `study.storage`")
        return sqlite_url(db)
    if must_exist:
        raise StudyError(f"no study storage in {run_dir} (neither {DEFAULT_SQLITE} nor {DEFAULT_JOURNAL}); start the "
                         "study with `ptplan run`, or set `study.storage` to where it lives")
    return journal_url(journal)


def sqlalchemy_url(url: str) -> str:
    """Name an installed driver when the URL names none (SQLAlchemy 2.1 defaults PostgreSQL to psycopg 3)."""
    from importlib.util import find_spec

    scheme, rest = url.split("://", 1)
    if "+" in scheme:
        return url
    if scheme in ("postgresql", "postgres"):
        driver = "" if find_spec("psycopg") else ("+psycopg2" if find_spec("psycopg2") else "")
        return f"postgresql{driver}://{rest}"
    if scheme == "mysql":
        driver = "" if find_spec("MySQLdb") else ("+pymysql" if find_spec("pymysql") else "")
        return f"mysql{driver}://{rest}"
    return url


def quiet_optuna() -> None:
    """Optuna's INFO lines and experimental-feature warnings would drown ptplan's own output."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(url: str, heartbeat_interval: int, grace: int, retries: int):
    """An Optuna storage for `url`; StudyError (no traceback) when it cannot be opened."""
    from ptplan.stages.errors import StudyError

    check_storage_url(url)
    spec = StorageSpec(url)
    quiet_optuna()
    try:
        if spec.kind == "journal":
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            spec.path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(spec.path)))

        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        if spec.kind == "sqlite":
            if spec.path is not None:
                spec.path.parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 60}}
        else:
            engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
        return RDBStorage(sqlalchemy_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                          grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries))
    except ImportError as err:
        cause = err.__cause__ if isinstance(err.__cause__, ImportError) else err
        raise StudyError(f"cannot open the study storage {mask(url)}: its database driver is not installed "
                         f"({cause}); for PostgreSQL: pip install 'ptplan[postgres]' (psycopg2)") from None
    except Exception as err:  # noqa: BLE001 - any driver or filesystem error becomes one clear message
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()
        detail = detail[0] if detail else type(err).__name__
        raise StudyError(f"cannot open the study storage {mask(url)}: {detail}") from None
