"""The type-matrix machinery shared by the per-database matrices (test_type_matrix_*.py).

A matrix is one source table with a column per type family and two rows: row 1 holds a value of each
type as written in the source's SQL, row 2 NULLs. A scratch project loads it through raw, bronze and
silver twice: once on the Arrow bulk path (the default first load) and once on JDBC
(`read.initial_load: jdbc`). For every column, silver must find row 1 by an equality predicate with the
literal as the source wrote it, and the value rendered as text must equal what the database's own
command-line client prints for it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import load_runtime
from pipezone.core.steps.verify import verify_flow

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import Server

REPO_ROOT = Path(__file__).resolve().parents[3]
READ_PATHS = {"arrow": "auto", "jdbc": "jdbc"}


@dataclass(frozen=True)
class Case:
    """One type family: the column's source type, a value as the source's SQL writes it, the Spark literal
    silver must equal, and the expressions whose text the client and Spark must agree on."""

    column: str
    source_type: str
    value_sql: str
    spark_literal: str
    client_expr: str = ""  # default: the column itself
    spark_expr: str = ""  # default: the column itself

    @property
    def client(self) -> str:
        return self.client_expr or self.column

    @property
    def spark(self) -> str:
        return self.spark_expr or f"`{self.column}`"


def write_project(root: Path, connection_yaml: str, flow_names: Sequence[str]) -> None:
    """A scratch project: the source connection, a local lake, a SQLite state store, one flow per read path,
    each reading the table of its own name (raw is keyed by the source table)."""
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True, exist_ok=True)
    (meta / "connections" / "src.yaml").write_text(connection_yaml)
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    for name, initial_load in zip(flow_names, READ_PATHS.values(), strict=False):
        (meta / "flows" / f"{name}.yaml").write_text(
            f"name: {name}\nsource:\n  connection: src\n  table: {name}\n  primary_key: [id]\n"
            f"  read:\n    initial_load: {initial_load}\n"
            "layers:\n  silver:\n    write_mode: merge\n"
        )
    (root / ".pipezone").mkdir(exist_ok=True)
    (root / ".pipezone" / "jars").symlink_to(REPO_ROOT / ".pipezone" / "jars", target_is_directory=True)


LOGIN = ("${env:PZ_MATRIX_USER}", "${env:PZ_MATRIX_PASSWORD}")  # the server's login, by environment


def server_project(root: Path, server: Server, database: str, flow_names: Sequence[str]) -> dict[str, str]:
    """write_project over `database` on a live server; returns the environment its login comes from."""
    write_project(root, server.connection_yaml("src", database, *LOGIN), flow_names)
    return {"PZ_MATRIX_USER": server.user, "PZ_MATRIX_PASSWORD": server.password}


def load_through_silver(
    spark: SparkSession, root: Path, environ: dict[str, str], flows: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """Run the flows in this process; flow -> (its silver table's path, the read path its extract took).
    Each flow must then verify clean."""
    runtime = load_runtime(load_settings(environ=environ, cwd=root))
    try:
        report = run_flows(runtime, list(flows), in_process=True, progress=lambda _: None)
        assert report.ok, [o.line for o in report.outcomes if not o.ok]
        loaded = {}
        for flow in flows:
            extract = [r for r in runtime.state.recent_runs(flow, limit=10) if r.step == "extract"]
            assert extract and "read_path" in extract[0].details, extract
            loaded[flow] = (runtime.lake.silver(flow), extract[0].details["read_path"])
        # `pipezone verify` hashes every column on both sides: each type's canonical text must agree too.
        reports = [verify_flow(runtime, spark, runtime.flow(flow)) for flow in flows]
        assert [r.summary() for r in reports if r.status != "clean"] == []
        return loaded
    finally:
        runtime.state.close()


def mismatches(spark: SparkSession, silver: str, cases: Sequence[Case], client_text: Callable[[str], str]) -> list[str]:
    """Every way silver disagrees with the source: a predicate that finds no row, a value the client prints
    differently, or row 2 not NULL."""
    spark.read.format("delta").load(silver).createOrReplaceTempView("matrix")
    problems = []
    for case in cases:
        found = spark.sql(f"SELECT count(*) FROM matrix WHERE `{case.column}` = {case.spark_literal}").first()[0]
        if found != 1:
            problems.append(f"{case.column} ({case.source_type}): `= {case.spark_literal}` found {found} rows")
        ours = spark.sql(f"SELECT CAST({case.spark} AS STRING) FROM matrix WHERE id = 1").first()[0]
        theirs = client_text(case.client)
        if ours != theirs:
            problems.append(f"{case.column} ({case.source_type}): silver {ours!r}, client {theirs!r}")
        null = spark.sql(f"SELECT `{case.column}` IS NULL FROM matrix WHERE id = 2").first()[0]
        if not null:
            problems.append(f"{case.column} ({case.source_type}): row 2 is not NULL")
    return problems


def client_output(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """The client's output, the trailing newline removed."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=True, env=env, timeout=60)
    return proc.stdout.removesuffix("\n")
