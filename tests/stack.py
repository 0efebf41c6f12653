"""The real stack the integration tests run on: servers started by `setup/local/<name>.sh` (MinIO, Vault,
the Spark cluster and its Connect server, FerretDB for MongoDB's wire protocol), asked through their
script's `status`, and the `services` profile's view of them all (`Stack`).

As in services.py (the SQL servers), in CI (PIPEZONE_CI=1) a test that needs one FAILS when it does not
answer, with the tail of its log; elsewhere it is skipped with the command that starts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services import (
    REPO_ROOT,
    MariaDB,
    Postgres,
    mariadb_params,
    postgres_params,
    require_mariadb,
    unavailable,
)


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
