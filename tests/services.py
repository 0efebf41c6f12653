"""The SQL servers the tests talk to, started by the project itself (setup/local/): where they are, whether
they answer (a real login). The rest of the stack (MinIO, Vault, Spark, FerretDB) is in stack.py.

In CI (PIPEZONE_CI=1) a test that needs a service FAILS when the service does not answer, with the tail of
the service's log, so a broken install step cannot hide behind skips. Elsewhere it is skipped with the
command that starts the service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MARIADB_SCRIPT = "setup/local/mariadb.sh"
MARIADB_LOG = REPO_ROOT / ".pipezone" / "services" / "mariadb" / "mariadb.err"
POSTGRES_SCRIPT = "setup/local/postgres.sh"
POSTGRES_LOG = REPO_ROOT / ".pipezone" / "services" / "postgres" / "postgres.log"
# Every session in UTC, as PipeZone's postgres adapter sets it (the server keeps its default zone).
POSTGRES_UTC = "-c TimeZone=UTC"
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Server:
    """A database server run by setup/local: where it is, its login (user `pipezone`, allowed to create
    databases) and what differs between servers (connection `type`, SQLAlchemy driver, scratch databases)."""

    kind: ClassVar[str]  # the connection `type` flows read it with
    driver: ClassVar[str]  # SQLAlchemy's dialect+driver
    url_query: ClassVar[dict[str, str]] = {}
    create_sql: ClassVar[str]  # CREATE DATABASE ... for {name}
    drop_sql: ClassVar[str]  # DROP DATABASE IF EXISTS ... for {name}
    env_prefix: ClassVar[str]  # its script's variables: <prefix>_PORT, <prefix>_PASSWORD

    host: str = "127.0.0.1"
    port: int = 0
    user: str = "pipezone"
    password: str = field(default="pipezone-dev", repr=False)
    database: str = "pipezone"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Any:
        """Parameters from <prefix>_PORT / <prefix>_PASSWORD, with the script's defaults."""
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            port=int(env.get(f"{cls.env_prefix}_PORT") or defaults.port),
            password=env.get(f"{cls.env_prefix}_PASSWORD") or defaults.password,
        )

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def driver_error(self) -> type[Exception]:
        """The base class of the driver's errors (what a refused login or a stopped server raises)."""
        raise NotImplementedError

    def problem(self) -> str | None:
        """None when the server answers `SELECT 1` as the test user, else why not (one line)."""
        try:
            conn = self.connect()
            try:
                query(conn, "SELECT 1")
            finally:
                conn.close()
        except self.driver_error() as exc:
            return " ".join(str(exc).split())
        return None

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL (password included: never print it)."""
        from sqlalchemy.engine import URL

        url = URL.create(
            self.driver,
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database or self.database,
            query=self.url_query,
        )
        return url.render_as_string(hide_password=False)

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def login(self) -> dict[str, Any]:
        """host, port, user and password, as both drivers' connect() name them."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password}

    def admin(self, statement: str) -> None:
        """One statement on the server's own database, in its own connection (autocommit: CREATE DATABASE)."""
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        self.admin(self.create_sql.format(name=name))

    def drop_database(self, name: str) -> None:
        self.admin(self.drop_sql.format(name=name))

    def load_sql(self, database: str, path: Path) -> None:
        """A fresh `database` holding what the SQL file at `path` creates (sql_statements)."""
        self.drop_database(database)
        self.create_database(database)
        conn = self.connect(database)
        try:
            with conn.cursor() as cursor:
                for statement in sql_statements(path):
                    cursor.execute(statement)
        finally:
            conn.close()

    def connection_yaml(self, name: str, database: str, user: str, password: str) -> str:
        """The connection file a scratch project reads `database` through; `user`/`password` are usually
        secret references (`${env:...}`, `${vault:...}`)."""
        return (
            f"name: {name}\ntype: {self.kind}\nhost: {self.host}\nport: {self.port}\ndatabase: {database}\n"
            f"user: {user}\npassword: {password}\n"
        )


@dataclass(frozen=True)
class MariaDB(Server):
    """Connection parameters of the project's MariaDB (user `pipezone`, granted on *.*)."""

    kind: ClassVar[str] = "mariadb"
    driver: ClassVar[str] = "mysql+pymysql"
    create_sql: ClassVar[str] = "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    drop_sql: ClassVar[str] = "DROP DATABASE IF EXISTS `{name}`"
    env_prefix: ClassVar[str] = "PIPEZONE_MARIADB"
    port: int = 3307

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A pymysql connection (autocommit, UTC session) to `database` (default: `pipezone`)."""
        import pymysql

        return pymysql.connect(
            **self.login,
            database=database or self.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            init_command="SET time_zone = '+00:00'",
            **kwargs,
        )

    def driver_error(self) -> type[Exception]:
        import pymysql

        return pymysql.err.MySQLError


def sql_statements(path: Path) -> list[str]:
    """A fixture file's statements: `--` comments dropped, one statement per `;` at a line end."""
    found, current = [], []
    for line in path.read_text().splitlines():
        code = line.split("--", 1)[0].rstrip()
        if code:
            current.append(code)
        if code.endswith(";"):
            found.append("\n".join(current).rstrip(";"))
            current = []
    return found


def query(conn: Any, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
    """Run `statement` (%s parameters, both drivers) on a pymysql or psycopg connection; its rows, if any."""
    with conn.cursor() as cursor:
        cursor.execute(statement, args)
        # psycopg raises on fetchall() after a statement without a result; pymysql returns ().
        return list(cursor.fetchall()) if cursor.description else []


def mariadb_params(environ: dict[str, str] | None = None) -> MariaDB:
    """Parameters from PIPEZONE_MARIADB_PORT / PIPEZONE_MARIADB_PASSWORD, with the script's defaults."""
    return MariaDB.from_env(environ)


def mariadb_problem(params: MariaDB | None = None) -> str | None:
    """None when MariaDB answers `SELECT 1` as the test user, else why not (one line)."""
    return (params or mariadb_params()).problem()


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


def start_with_script(script: str, installed: bool) -> str | None:
    """Start a server with its setup/local script (installing it first when missing and we may); None if ok."""
    import subprocess

    steps = ["start"]
    if not installed and os.geteuid() == 0:
        steps.insert(0, "install")
    for step in steps:
        proc = subprocess.run(
            ["bash", script, step], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=1800
        )
        if proc.returncode != 0:
            return f"`{Path(script).name} {step}` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return None


def start_mariadb() -> str | None:
    """Start the project's MariaDB with its own script (installing it when missing and we may); None if ok."""
    import shutil

    return start_with_script(MARIADB_SCRIPT, installed=shutil.which("mariadbd") is not None)


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
    unavailable(f"MariaDB at {params.address} is not reachable: {problem}", MARIADB_SCRIPT, MARIADB_LOG)


def unavailable(where: str, script: str, log: Path) -> NoReturn:
    """FAIL in CI (with the server's log tail): a broken install must not hide behind skips; skip elsewhere."""
    start = f"bash {script} install && bash {script} start"
    if in_ci():
        pytest.fail(
            f"{where}\nCI needs it (PIPEZONE_CI=1); .ci/run must run `make services-up`.\n"
            f"last {LOG_TAIL_LINES} lines of {log.relative_to(REPO_ROOT)}:\n{log_tail(log)}",
            pytrace=False,
        )
    pytest.skip(f"{where} (start it with `{start}`, or `make services-up`)")


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class Postgres(Server):
    """Connection parameters of the project's PostgreSQL (role `pipezone`, a superuser: tests create
    scratch databases and extensions)."""

    kind: ClassVar[str] = "postgres"
    driver: ClassVar[str] = "postgresql+psycopg"
    url_query: ClassVar[dict[str, str]] = {"options": POSTGRES_UTC}
    create_sql: ClassVar[str] = "CREATE DATABASE \"{name}\" ENCODING 'UTF8'"
    # FORCE: drop it even while a session is still open on it (a JDBC connection Spark has not closed yet).
    drop_sql: ClassVar[str] = 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    env_prefix: ClassVar[str] = "PIPEZONE_POSTGRES"
    port: int = 5433

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A psycopg 3 connection (autocommit, UTC session) to `database` (default: `pipezone`)."""
        import psycopg

        return psycopg.connect(
            **self.login,
            dbname=database or self.database,
            autocommit=True,
            connect_timeout=5,
            options=POSTGRES_UTC,
            **kwargs,
        )

    def drop_database(self, name: str) -> None:
        """The database and its CDC flows' replication slots (a slot holds WAL and blocks the DROP)."""
        self.admin(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'")
        super().drop_database(name)

    def driver_error(self) -> type[Exception]:
        import psycopg

        return psycopg.Error


def postgres_params(environ: dict[str, str] | None = None) -> Postgres:
    """Parameters from PIPEZONE_POSTGRES_PORT / PIPEZONE_POSTGRES_PASSWORD, with the script's defaults."""
    return Postgres.from_env(environ)


def postgres_problem(params: Postgres | None = None) -> str | None:
    """None when PostgreSQL answers `SELECT 1` as the test role, else why not (one line)."""
    return (params or postgres_params()).problem()


def postgres_installed() -> bool:
    """Debian keeps the server in /usr/lib/postgresql/<version>/bin, off PATH."""
    import shutil

    return any(Path("/usr/lib/postgresql").glob("*/bin/postgres")) or shutil.which("postgres") is not None


def require_postgres() -> Postgres:
    """The parameters when PostgreSQL answers (started on demand); otherwise FAIL in CI, skip elsewhere."""
    params = postgres_params()
    problem = postgres_problem(params)
    if problem is None:
        return params
    started = start_with_script(POSTGRES_SCRIPT, installed=postgres_installed())
    problem = postgres_problem(params) if started is None else started
    if problem is None:
        return params
    unavailable(f"PostgreSQL at {params.address} is not reachable: {problem}", POSTGRES_SCRIPT, POSTGRES_LOG)


# --------------------------------------------------------------------------- MinIO, Vault, Spark standalone
