"""`bounds_without_spark`: the source's newest cursor asked through its Python driver must be the value the
Spark JDBC bounds query returns, as the extract step compares it with the watermark (steps/idle.py proves
an empty window with it, so a different value would skip new rows). Real SQLite, MariaDB and PostgreSQL,
one cursor type per case, fractional seconds and zone offsets included."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.jdbc.source import JdbcSource
from pipezone.core.sources.registry import open_source
from pipezone.core.spec.connection import JdbcConnection, SqliteConnection
from pipezone.core.spec.cursor_values import normalize
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from services import MariaDB, Postgres

SCRATCH = f"pz_native_bounds_{os.getpid()}"
PASSWORD_ENV = "PZ_NATIVE_BOUNDS_PASSWORD"

# (column type, values inserted as SQL literals): the newest is what both reads must return
MARIADB_CURSORS = {
    "datetime6": ("DATETIME(6)", ["'2024-03-01 10:00:00.000001'", "'2024-03-01 10:00:00.123456'"]),
    "timestamp6": ("TIMESTAMP(6) NULL", ["'2024-03-01 09:00:00'", "'2024-03-31 01:30:00.5'"]),
    "bigint": ("BIGINT", ["1", "9007199254740993"]),
    "unsigned": ("BIGINT UNSIGNED", ["1", "18446744073709551615"]),
    "decimal": ("DECIMAL(20,6)", ["1.5", "12345678901234.000001"]),
    "date": ("DATE", ["'2024-02-28'", "'2024-02-29'"]),
}
POSTGRES_CURSORS = {
    "timestamptz": ("timestamptz", ["'2024-03-01 10:00:00+05'", "'2024-03-31 01:30:00.654321+02'"]),
    "timestamp": ("timestamp(6)", ["'2024-03-01 10:00:00'", "'2024-10-27 02:30:00.000001'"]),
    "bigint": ("bigint", ["1", "9007199254740993"]),
    "numeric": ("numeric(20,6)", ["1.5", "12345678901234.000001"]),
    "date": ("date", ["'2024-02-28'", "'2024-02-29'"]),
}


def source_on(connection: Any, root: Path, password: str = "") -> JdbcSource:
    spec = SourceSpec.model_validate(
        {"connection": "scratch", "table": "events", "primary_key": ["id"], "incremental": {"cursor": "changed"}}
    )
    source = open_source(spec, connection, SecretResolver({PASSWORD_ENV: password}, root), root)
    assert isinstance(source, JdbcSource)
    return source


def server_connection(server: MariaDB | Postgres) -> JdbcConnection:
    fields = {"name": "scratch", "type": server.kind, "host": server.host, "port": server.port}
    fields |= {"database": SCRATCH, "user": server.user, "password": f"${{env:{PASSWORD_ENV}}}"}
    return JdbcConnection.model_validate(fields)


def load(server: MariaDB | Postgres, column_type: str, values: list[str]) -> None:
    conn = server.connect(SCRATCH)
    try:
        with conn.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS events")
            cursor.execute(f"CREATE TABLE events (id INT PRIMARY KEY, changed {column_type})")
            for i, value in enumerate(values):
                cursor.execute(f"INSERT INTO events VALUES ({i}, {value})")
    finally:
        conn.close()


def same_bounds(spark: SparkSession, source: JdbcSource) -> Any:
    """The newest cursor both ways; asserts they are equal and of one type, and both clocks agree."""
    native, jdbc = source.bounds_without_spark(), source.cursor_bounds(spark)
    assert native is not None
    newest, expected = normalize(native.hi), normalize(jdbc.hi)
    assert newest == expected
    # one type, except a number Python compares exactly either way (BIGINT UNSIGNED: int here, Decimal there)
    numbers = (int, Decimal)
    assert type(newest) is type(expected) or (isinstance(newest, numbers) and isinstance(expected, numbers))
    assert abs(normalize(native.now) - normalize(jdbc.now)) < timedelta(minutes=1)
    return newest


@pytest.fixture(scope="module")
def scratch(request: pytest.FixtureRequest) -> Iterator[MariaDB | Postgres]:
    """The server named by the test's `server` parameter, with an empty SCRATCH database."""
    server = request.getfixturevalue(request.param)
    server.drop_database(SCRATCH)
    server.create_database(SCRATCH)
    yield server
    server.drop_database(SCRATCH)


# a cursor's newest value, where it is an instant whatever the session's zone (TIMESTAMP, timestamptz)
INSTANTS = {
    ("mariadb", "timestamp6"): datetime(2024, 3, 31, 1, 30, 0, 500000, tzinfo=UTC),
    ("postgres", "timestamptz"): datetime(2024, 3, 30, 23, 30, 0, 654321, tzinfo=UTC),
}
CASES = [
    *(pytest.param("mariadb", kind, id=f"mariadb-{kind}") for kind in MARIADB_CURSORS),
    *(pytest.param("postgres", kind, id=f"postgres-{kind}") for kind in POSTGRES_CURSORS),
]


@pytest.mark.spark
@pytest.mark.parametrize(("scratch", "kind"), CASES, indirect=["scratch"])
def test_server_bounds_without_spark_are_the_jdbc_bounds(
    spark: SparkSession, scratch: MariaDB | Postgres, tmp_path: Path, kind: str
) -> None:
    cursors = MARIADB_CURSORS if scratch.kind == "mariadb" else POSTGRES_CURSORS
    load(scratch, *cursors[kind])
    newest = same_bounds(spark, source_on(server_connection(scratch), tmp_path, scratch.password))
    if (scratch.kind, kind) in INSTANTS:  # written with a zone, read back as the same instant
        assert newest == INSTANTS[(scratch.kind, kind)]


@pytest.mark.spark
@pytest.mark.parametrize(
    ("column_type", "values"),
    [("TIMESTAMP", ["2024-01-01 10:00:00", "2024-01-03 10:00:00.25"]), ("INTEGER", [3, 12]), ("TEXT", ["a", "b"])],
)
def test_sqlite_bounds_without_spark_are_the_jdbc_bounds(
    spark: SparkSession, tmp_path: Path, column_type: str, values: list[Any]
) -> None:
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute(f"CREATE TABLE events (id INTEGER PRIMARY KEY, changed {column_type})")
        db.executemany("INSERT INTO events VALUES (?, ?)", list(enumerate(values)))
    db.close()
    source = source_on(SqliteConnection(name="scratch", type="sqlite", path="shop.db"), tmp_path)
    same_bounds(spark, source)


def test_an_empty_table_has_no_newest_cursor(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, changed TIMESTAMP)")
    db.close()
    bounds = source_on(SqliteConnection(name="scratch", type="sqlite", path="shop.db"), tmp_path).bounds_without_spark()
    assert bounds is not None and bounds.hi is None and bounds.now is not None


def test_a_real_cursor_in_sqlite_is_refused_not_guessed(tmp_path: Path) -> None:
    """Java and Python spell a REAL differently (1.0E20 / 1e+20): text compared as text would mislead."""
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, changed REAL)")
        db.execute("INSERT INTO events VALUES (1, 1e20)")
    db.close()
    source = source_on(SqliteConnection(name="scratch", type="sqlite", path="shop.db"), tmp_path)
    with pytest.raises(SourceError, match="a float bound has no text the JDBC read would spell alike"):
        source.bounds_without_spark()
