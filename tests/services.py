"""Services the tests talk to, started by the project itself (setup/local/): where they are, whether they answer.

MariaDB and PostgreSQL are checked with a real login, MongoDB (FerretDB) with a `ping` through pymongo;
MinIO, Vault (OpenBao) and the Spark standalone cluster with their script's `status` (which asks the server itself: MinIO's ready endpoint, Vault's
health, the master's JSON with an alive worker).

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


@dataclass(frozen=True)
class ScriptService:
    """A server run by `setup/local/<name>.sh` (install / start / status), with the log to show on failure."""

    name: str
    log: Path
    needs_install: bool  # built once per machine: `install` is a no-op when the pinned version is there

    @property
    def script(self) -> str:
        return f"setup/local/{self.name}.sh"

    def _call(self, step: str, timeout: int = 1800) -> tuple[int, str]:
        import subprocess

        proc = subprocess.run(
            ["bash", self.script, step], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def problem(self) -> str | None:
        code, out = self._call("status", timeout=60)
        return None if code == 0 else (out.splitlines() or [f"{self.script} status exited {code}"])[-1]

    def start(self) -> str | None:
        for step in ("install", "start") if self.needs_install else ("start",):
            code, out = self._call(step)
            if code != 0:
                return f"`{self.script} {step}` failed: {(out.splitlines() or ['no output'])[-1]}"
        return None


SERVICES_DIR = REPO_ROOT / ".pipezone" / "services"
MINIO = ScriptService("minio", SERVICES_DIR / "minio" / "minio.log", needs_install=True)
VAULT = ScriptService("vault", SERVICES_DIR / "vault" / "vault.log", needs_install=True)
SPARK = ScriptService("spark", SERVICES_DIR / "spark" / "master.log", needs_install=False)
SPARK_CONNECT = ScriptService("spark-connect", SERVICES_DIR / "spark-connect" / "15003.log", needs_install=False)
FERRETDB = ScriptService("ferretdb", SERVICES_DIR / "ferretdb" / "ferretdb.log", needs_install=True)


def require_service(service: ScriptService) -> None:
    """Return when `service` answers (started on demand, built first if needed); else FAIL in CI, skip elsewhere."""
    problem = service.problem()
    if problem is None:
        return
    started = service.start()
    problem = service.problem() if started is None else started
    if problem is None:
        return
    unavailable(f"{service.name} is not running: {problem}", service.script, service.log)


# --------------------------------------------------------------------------- MongoDB (FerretDB)


@dataclass(frozen=True)
class Mongo:
    """Where the project's MongoDB-wire server is (FerretDB on SQLite, setup/local/ferretdb.sh): no login,
    databases and collections appear on first write."""

    host: str = "127.0.0.1"
    port: int = 27017

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Mongo:
        """Parameters from PIPEZONE_FERRETDB_PORT, with the script's default."""
        env = os.environ if environ is None else environ
        return cls(port=int(env.get("PIPEZONE_FERRETDB_PORT") or cls.port))

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> Any:
        """A pymongo MongoClient (5 s to find the server; close it when done)."""
        import pymongo

        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        kwargs.setdefault("connectTimeoutMS", 5000)
        return pymongo.MongoClient(self.url, **kwargs)

    def problem(self) -> str | None:
        """None when the server answers `ping`, else why not (one line)."""
        try:
            from pymongo.errors import PyMongoError
        except ImportError:
            return "pymongo is not installed in this environment"
        client = self.client(serverSelectionTimeoutMS=3000)
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            # Server selection errors go on with timeouts and a topology description: keep the reason.
            return " ".join(str(exc).split(" (configured timeouts:")[0].split(", Timeout:")[0].split())
        finally:
            client.close()
        return None


def mongo_params(environ: dict[str, str] | None = None) -> Mongo:
    """Parameters from PIPEZONE_FERRETDB_PORT, with the script's default (27017)."""
    return Mongo.from_env(environ)


def mongo_problem(params: Mongo | None = None) -> str | None:
    """None when the MongoDB-wire server answers `ping`, else why not (one line)."""
    return (params or mongo_params()).problem()


def mongo_available(params: Mongo | None = None) -> bool:
    """True when a pymongo `ping` works."""
    return mongo_problem(params) is None


def require_mongo() -> Mongo:
    """The parameters when FerretDB answers (built and started on demand); otherwise FAIL in CI, skip elsewhere."""
    params = mongo_params()
    problem = mongo_problem(params)
    if problem is None:
        return params
    started = FERRETDB.start()
    problem = mongo_problem(params) if started is None else started
    if problem is None:
        return params
    unavailable(f"MongoDB (FerretDB) at {params.address} is not reachable: {problem}", FERRETDB.script, FERRETDB.log)


@dataclass(frozen=True)
class Stack:
    """The real stack as the `services` profile sees it (setup/local defaults, overridable like the scripts)."""

    mariadb: MariaDB
    postgres: Postgres = field(default_factory=Postgres)  # not a stack member: tests that read it require it
    minio_endpoint: str = "http://127.0.0.1:9000"
    minio_user: str = "pipezone"
    minio_password: str = field(default="pipezone-dev-secret", repr=False)
    vault_addr: str = "http://127.0.0.1:8200"
    vault_token: str = field(default="pipezone-dev-root", repr=False)
    spark_master: str = "spark://127.0.0.1:7077"
    spark_master_json: str = "http://127.0.0.1:8090/json/"

    def env(self) -> dict[str, str]:
        """What a process needs to run on the services profile (Vault holds every credential)."""
        return {"PIPEZONE_PROFILE": "services", "VAULT_ADDR": self.vault_addr, "VAULT_TOKEN": self.vault_token}

    def s3(self) -> Any:
        """A boto3 S3 client on MinIO (path-style, us-east-1)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.minio_endpoint,
            aws_access_key_id=self.minio_user,
            aws_secret_access_key=self.minio_password,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def delete_prefixes(self, prefixes: dict[str, list[str]]) -> None:
        """Delete every object under bucket -> prefixes (the lake tables a test module writes)."""
        s3 = self.s3()
        for bucket, names in prefixes.items():
            for prefix in names:
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})

    def recreate_databases(self, *names: str, table_sql: str | None = None) -> None:
        """Drop and create these MariaDB databases; `table_sql` then runs once (e.g. a CREATE TABLE)."""
        conn = self.mariadb.connect()
        try:
            with conn.cursor() as cur:
                for db in names:
                    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
                    cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
                if table_sql:
                    cur.execute(table_sql)
        finally:
            conn.close()

    def put_secret(self, path: str, **values: str) -> None:
        """Write a KV v2 secret under `secret/` (a new version), e.g. a login vault.sh does not seed."""
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.vault_addr}/v1/secret/data/{path}",
            data=json.dumps({"data": values}).encode(),
            headers={"X-Vault-Token": self.vault_token, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def spark_apps(self) -> list[dict[str, Any]]:
        """Applications the standalone master knows (running and completed)."""
        import json
        import urllib.request

        with urllib.request.urlopen(self.spark_master_json, timeout=10) as response:
            state = json.load(response)
        return [*state.get("activeapps", []), *state.get("completedapps", [])]


def orders_table_sql(database: str) -> str:
    """The integration tests' MariaDB `orders` source table."""
    return (
        f"CREATE TABLE `{database}`.orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, "
        "amount DECIMAL(12,2) NOT NULL, status VARCHAR(10) NOT NULL, updated_at DATETIME(6) NOT NULL)"
    )


def stack_params(environ: dict[str, str] | None = None) -> Stack:
    env = os.environ if environ is None else environ
    return Stack(
        mariadb=mariadb_params(environ),
        postgres=postgres_params(environ),
        minio_endpoint=f"http://127.0.0.1:{env.get('PIPEZONE_MINIO_PORT') or 9000}",
        minio_user=env.get("PIPEZONE_MINIO_USER") or "pipezone",
        minio_password=env.get("PIPEZONE_MINIO_PASSWORD") or "pipezone-dev-secret",
        vault_addr=f"http://127.0.0.1:{env.get('PIPEZONE_VAULT_PORT') or 8200}",
        vault_token=env.get("PIPEZONE_VAULT_TOKEN") or "pipezone-dev-root",
        spark_master=f"spark://127.0.0.1:{env.get('PIPEZONE_SPARK_MASTER_PORT') or 7077}",
        spark_master_json=f"http://127.0.0.1:{env.get('PIPEZONE_SPARK_MASTER_UI_PORT') or 8090}/json/",
    )


def require_stack() -> Stack:
    """MariaDB, MinIO, Vault, the Spark cluster and its Connect server, all answering (see require_service)."""
    params = stack_params()
    require_mariadb()
    for service in (MINIO, VAULT, SPARK, SPARK_CONNECT):
        require_service(service)
    return params
