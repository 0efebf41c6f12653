"""Services the tests talk to, started by the project itself (setup/local/): where they are, whether they answer.

In CI (PIPEZONE_CI=1) a test that needs a service FAILS when the service does not answer, with the tail of
the service's log, so a broken install step cannot hide behind skips. Elsewhere it is skipped with the
command that starts the service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MARIADB_SCRIPT = "setup/local/mariadb.sh"
MARIADB_LOG = REPO_ROOT / ".pipezone" / "services" / "mariadb" / "mariadb.err"
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class MariaDB:
    """Connection parameters of the project's MariaDB (user `pipezone`, granted on *.*)."""

    host: str = "127.0.0.1"
    port: int = 3307
    user: str = "pipezone"
    password: str = field(default="pipezone-dev", repr=False)
    database: str = "pipezone"

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A pymysql connection (autocommit, UTC session) to `database` (default: `pipezone`)."""
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database or self.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            init_command="SET time_zone = '+00:00'",
            **kwargs,
        )

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL (password included: never print it)."""
        from sqlalchemy.engine import URL

        url = URL.create(
            "mysql+pymysql",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database or self.database,
        )
        return url.render_as_string(hide_password=False)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def mariadb_params(environ: dict[str, str] | None = None) -> MariaDB:
    """Parameters from PIPEZONE_MARIADB_PORT / PIPEZONE_MARIADB_PASSWORD, with the script's defaults."""
    env = os.environ if environ is None else environ
    return MariaDB(
        port=int(env.get("PIPEZONE_MARIADB_PORT") or 3307),
        password=env.get("PIPEZONE_MARIADB_PASSWORD") or "pipezone-dev",
    )


def mariadb_problem(params: MariaDB | None = None) -> str | None:
    """None when MariaDB answers `SELECT 1` as the test user, else why not (one line)."""
    params = params or mariadb_params()
    try:
        import pymysql
    except ImportError as exc:  # pragma: no cover - pymysql is a pinned dependency
        return f"pymysql is not installed ({exc})"
    try:
        conn = params.connect()
    except pymysql.err.MySQLError as exc:
        return " ".join(str(exc).split())
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except pymysql.err.MySQLError as exc:
        return " ".join(str(exc).split())
    finally:
        conn.close()
    return None


def mariadb_available(params: MariaDB | None = None) -> bool:
    """True when a pymysql connection as the test user works."""
    return mariadb_problem(params) is None


def in_ci() -> bool:
    return os.environ.get("PIPEZONE_CI") == "1"


def log_tail(path: Path = MARIADB_LOG, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return f"(no log at {path}: the server was never started on this checkout)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text) or f"({path} is empty)"


def start_mariadb() -> str | None:
    """Start the project's MariaDB with its own script (installing it when missing and we may); None if ok."""
    import shutil
    import subprocess

    steps = ["start"]
    if shutil.which("mariadbd") is None and os.geteuid() == 0:
        steps.insert(0, "install")
    for step in steps:
        proc = subprocess.run(["bash", str(MARIADB_SCRIPT), step], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"`mariadb.sh {step}` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return None


def require_mariadb() -> MariaDB:
    """The parameters when MariaDB answers (started on demand); otherwise FAIL in CI, skip elsewhere."""
    params = mariadb_params()
    problem = mariadb_problem(params)
    if problem is None:
        return params
    started = start_mariadb()
    problem = mariadb_problem(params) if started is None else started
    if problem is None:
        return params
    where = f"MariaDB at {params.address} is not reachable: {problem}"
    start = f"bash {MARIADB_SCRIPT} install && bash {MARIADB_SCRIPT} start"
    if in_ci():
        pytest.fail(
            f"{where}\nCI needs it (PIPEZONE_CI=1); .ci/run must run `{start}`.\n"
            f"last {LOG_TAIL_LINES} lines of {MARIADB_LOG.relative_to(REPO_ROOT)}:\n{log_tail()}",
            pytrace=False,
        )
    pytest.skip(f"{where} (start it with `{start}`)")
