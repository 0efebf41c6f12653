"""The Arrow bulk path of a first load, on a real MariaDB: it must write the raw table the JDBC path would
have written (same columns, Spark types and values), leave a log later JDBC extracts continue, and step
aside, before writing anything, for columns it cannot carry exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import run_flows
from pipezone.core.sources.contract import ReadPlan
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import Runtime, load_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB

pytestmark = [pytest.mark.services, pytest.mark.spark]

REPO_ROOT = Path(__file__).resolve().parents[3]

# One column per family MariaDB users have; NULLs in every nullable column; values at the edges.
TYPES_DDL = """
CREATE TABLE typed (
  id BIGINT NOT NULL PRIMARY KEY,
  tiny TINYINT NULL, flag TINYINT(1) NULL, small SMALLINT NULL, medium MEDIUMINT NULL, whole INT NULL,
  whole_unsigned INT UNSIGNED NULL, big BIGINT NULL,
  money DECIMAL(12,2) NULL, wide_decimal DECIMAL(26,8) NULL, ratio FLOAT NULL, measure DOUBLE NULL,
  code CHAR(3) NULL, label VARCHAR(40) NULL, body TEXT NULL, kind ENUM('a','b') NULL,
  day DATE NULL, moment DATETIME(6) NULL, stamp TIMESTAMP(6) NULL, updated_at DATETIME(6) NOT NULL
)"""
TYPES_ROWS = [
    (
        1,
        -128,
        1,
        -32768,
        -8388608,
        -2147483648,
        4294967295,
        -9223372036854775808,
        "-9999999999.99",
        "123456789012345678.12345678",
        1.5,
        -2.25e300,
        "abc",
        "é ünïcode ✓",
        "x" * 3000,
        "a",
        "1970-01-01",
        "1970-01-01 00:00:00.000001",
        "1970-01-02 00:00:00",
        "2024-01-01 00:00:00",
    ),
    (
        2,
        127,
        0,
        32767,
        8388607,
        2147483647,
        0,
        9223372036854775807,
        "0.01",
        "-0.00000001",
        -0.0,
        0.0,
        "",
        "tab\there 'quote' \\back",
        "",
        "b",
        "2999-12-31",
        "2999-12-31 23:59:59.999999",
        "2038-01-19 03:14:07.5",
        "2024-01-02 00:00:00",
    ),
    (3, *[None] * 18, "2024-01-03 00:00:00"),
]
FLOW = """\
name: {name}
source:
  connection: db
  table: {table}
  primary_key: [id]
  incremental:
    cursor: updated_at
  read:
    num_partitions: 2
    initial_load: {initial_load}
"""


@dataclass
class Project:
    mariadb: MariaDB
    database: str
    root: Path
    environ: dict[str, str] = field(repr=False)
    runtimes: list[Runtime] = field(default_factory=list, repr=False)

    def extract(self, flow: str) -> dict[str, Any]:
        """Run the flow's extract; its details as the run history recorded them."""
        runtime = load_runtime(load_settings(environ=self.environ, cwd=self.root))
        self.runtimes.append(runtime)
        report = run_flows(runtime, [flow], steps=["extract"], in_process=True, progress=lambda _: None)
        assert report.ok, [o.line for o in report.outcomes]
        return runtime.state.recent_runs(flow, limit=1)[0].details

    def execute(self, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        conn = self.mariadb.connect(self.database)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    if rows is None:
                        cursor.execute(statement)
                    else:
                        cursor.executemany(statement, rows)
        finally:
            conn.close()

    def raw(self, table: str) -> str:
        return (self.root / "lake" / "raw" / "db" / table).resolve().as_uri()


@pytest.fixture(scope="module")
def project(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    database = f"pz_test_{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("arrow-extract")
    meta = root / "metadata"
    for sub in ("connections", "flows", "profiles"):
        (meta / sub).mkdir(parents=True)
    (meta / "connections" / "db.yaml").write_text(
        f"name: db\ntype: mariadb\nhost: {mariadb.host}\nport: {mariadb.port}\ndatabase: {database}\n"
        "user: ${env:PZ_TEST_DB_USER}\npassword: ${env:PZ_TEST_DB_PASSWORD}\n"
    )
    (meta / "connections" / "lake.yaml").write_text("name: lake\ntype: local\npath: lake\n")
    (meta / "connections" / "state.yaml").write_text("name: state\ntype: sqlite\npath: state.db\n")
    (meta / "profiles" / "default.yaml").write_text(
        "name: default\nlake: lake\nstate_store: state\nspark:\n  master: local[2]\n  shuffle_partitions: 2\n"
    )
    for name, table, initial_load in (
        ("typed_arrow", "typed", "auto"),
        ("typed_jdbc", "typed", "jdbc"),
        ("odd_arrow", "odd", "auto"),
        ("wide_arrow", "wide", "auto"),
    ):
        (meta / "flows" / f"{name}.yaml").write_text(FLOW.format(name=name, table=table, initial_load=initial_load))
    environ = {
        "PIPEZONE_JAR_CACHE": str(REPO_ROOT / ".pipezone" / "jars"),
        "PZ_TEST_DB_USER": mariadb.user,
        "PZ_TEST_DB_PASSWORD": mariadb.password,
    }
    admin = mariadb.connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        project = Project(mariadb, database, root, environ)
        project.execute(TYPES_DDL)
        project.execute(f"INSERT INTO typed VALUES ({', '.join(['%s'] * 20)})", rows=TYPES_ROWS)
        yield project
        for runtime in project.runtimes:
            if "state" in runtime.__dict__:
                runtime.state.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


def _data(spark: SparkSession, path: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    df = spark.read.format("delta").load(path)
    columns = [c for c in df.columns if not c.startswith("_pz_")]
    schema = [f"{f.name} {f.dataType.simpleString()} null={f.nullable}" for f in df.schema.fields]  # stamps too
    return schema, sorted(tuple(r) for r in df.select(*columns).collect())


def test_first_load_through_arrow_writes_what_jdbc_writes(spark: SparkSession, project: Project) -> None:
    arrow = project.extract("typed_arrow")
    assert arrow["read_path"] == "arrow"
    assert {"prepare", "read_write", "state"} <= set(arrow["phases_s"])  # where the step's time went
    raw_arrow = project.raw("typed")
    schema_arrow, rows_arrow = _data(spark, raw_arrow)
    # The JDBC flow reads the same table into its own raw (same connection: move the arrow table aside).
    Path(raw_arrow.removeprefix("file://")).rename(Path(raw_arrow.removeprefix("file://") + "_arrow"))
    jdbc = project.extract("typed_jdbc")
    assert jdbc["read_path"] == "jdbc"
    schema_jdbc, rows_jdbc = _data(spark, raw_arrow)
    assert schema_arrow == schema_jdbc
    assert rows_arrow == rows_jdbc
    assert len(rows_arrow) == len(TYPES_ROWS)


def test_a_jdbc_extract_continues_a_table_the_arrow_path_created(spark: SparkSession, project: Project) -> None:
    """A new source column sends the window to Spark (steps/small_window.py): it evolves raw."""
    project.execute("DROP TABLE IF EXISTS odd", TYPES_DDL.replace("typed", "odd"))
    project.execute(f"INSERT INTO odd VALUES ({', '.join(['%s'] * 20)})", rows=TYPES_ROWS)
    first = project.extract("odd_arrow")
    assert first["read_path"] == "arrow"
    project.execute(
        "ALTER TABLE odd ADD COLUMN note VARCHAR(10) NULL",
        "UPDATE odd SET label = 'changed', note = 'n', updated_at = '2024-02-01 00:00:00' WHERE id = 2",
    )
    second = project.extract("odd_arrow")
    assert second["read_path"] == "jdbc"
    assert second["batch"] == 2
    assert second["watermark"] == first["hi"]
    commits = dt.commits_with_metadata(spark, project.raw("odd"))
    assert [c["batch"] for c in commits] == [2, 1]
    assert [c["operationMetrics"].get("numOutputRows", c["operationMetrics"].get("num_added_rows")) for c in commits]
    rows = spark.read.format("delta").load(project.raw("odd")).filter("id = 2").orderBy(dt.BATCH)
    assert [(r["label"], r["note"]) for r in rows.collect()] == [("tab\there 'quote' \\back", None), ("changed", "n")]


def test_later_windows_are_read_without_spark_as_the_jdbc_read_reads_them(
    spark: SparkSession, project: Project
) -> None:
    """After a first load, a window whose source columns are the ones Spark resolved is read by connectorx
    and appended by delta-rs, opening no Spark session; raw's batch holds what Spark's JDBC read of the same
    window holds, every type of the table, and the columns and types raw had."""
    project.execute("DROP TABLE IF EXISTS later", TYPES_DDL.replace("typed", "later"))
    project.execute(f"INSERT INTO later VALUES ({', '.join(['%s'] * 20)})", rows=TYPES_ROWS)
    (project.root / "metadata" / "flows" / "later_arrow.yaml").write_text(
        FLOW.format(name="later_arrow", table="later", initial_load="jdbc")
    )
    first = project.extract("later_arrow")
    assert first["read_path"] == "jdbc"
    schema_before, _ = _data(spark, project.raw("later"))
    moved = [(row[0] + 10, *row[1:-1], "2024-03-01 00:00:00") for row in TYPES_ROWS]
    project.execute(f"INSERT INTO later VALUES ({', '.join(['%s'] * 20)})", rows=moved)
    project.execute("UPDATE later SET label = 'changed', updated_at = '2024-03-02 00:00:00' WHERE id = 2")
    second = project.extract("later_arrow")
    assert second["read_path"] == "arrow" and second["batch"] == 2
    assert "session" not in second["phases_s"]
    assert second["watermark"] == first["hi"]
    schema_after, _ = _data(spark, project.raw("later"))
    assert schema_after == schema_before
    batch = spark.read.format("delta").load(project.raw("later")).filter(f"{dt.BATCH} = 2")
    columns = [c for c in batch.columns if not c.startswith("_pz_")]
    runtime = project.runtimes[-1]
    source = runtime.source(runtime.flow("later_arrow"))
    expected = source.read(spark, ReadPlan.window(second["lo"], second["hi"]))
    assert sorted(tuple(r) for r in batch.select(*columns).collect()) == sorted(
        tuple(r) for r in expected.select(*columns).collect()
    )
    assert batch.count() == len(TYPES_ROWS) + 1
    third = project.extract("later_arrow")  # nothing new: no batch, no session
    assert third.get("batch") is None and "session" not in third.get("phases_s", {})


def test_a_changed_column_type_sends_the_window_to_spark(
    spark: SparkSession, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another decimal scale would be typed wrongly by the kept resolution: the catalog's fingerprint differs,
    Spark reads the window (and the flow's drift policy applies), then resolves the typing again."""
    project.execute(
        "DROP TABLE IF EXISTS scaled",
        "CREATE TABLE scaled (id INT NOT NULL PRIMARY KEY, amount DECIMAL(12,2) NULL, updated_at DATETIME(6) NOT NULL)",
        "INSERT INTO scaled VALUES (1, 1.25, '2024-01-01')",
    )
    (project.root / "metadata" / "flows" / "scaled.yaml").write_text(
        FLOW.format(name="scaled", table="scaled", initial_load="auto")
    )
    assert project.extract("scaled")["read_path"] == "arrow"
    project.execute("INSERT INTO scaled VALUES (2, 2.5, '2024-01-02')")
    assert project.extract("scaled")["read_path"] == "arrow"
    project.execute(
        "ALTER TABLE scaled MODIFY amount DECIMAL(14,4) NULL", "INSERT INTO scaled VALUES (3, 3.1234, '2024-01-03')"
    )
    capsys.readouterr()
    details = project.extract("scaled")
    assert details["read_path"] == "jdbc"
    assert (
        "extract without Spark not used (the table's catalog or the flow's column_types changed"
        in capsys.readouterr().out
    )
    amounts = spark.read.format("delta").load(project.raw("scaled")).filter("id = 3").collect()
    assert [str(r["amount"]) for r in amounts] == ["3.1234"]


def test_a_decimal_wider_than_connectorx_carries_is_read_over_jdbc(spark: SparkSession, project: Project) -> None:
    project.execute(
        "CREATE TABLE wide (id INT NOT NULL PRIMARY KEY, amount DECIMAL(38,4) NULL, updated_at DATETIME(6) NOT NULL)",
        "INSERT INTO wide VALUES (1, 1234567890123456789012345678901234.5678, '2024-01-01'), (2, NULL, '2024-01-01')",
    )
    details = project.extract("wide_arrow")
    assert details["read_path"] == "jdbc"
    rows = spark.read.format("delta").load(project.raw("wide")).orderBy("id").collect()
    assert [str(r["amount"]) for r in rows] == ["1234567890123456789012345678901234.5678", "None"]
