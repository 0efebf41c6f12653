"""`pipezone init-flow`: one table, or every table of a schema with `--all`, on real SQLite, MariaDB and
PostgreSQL databases. The 20-table schemas are tests/fixtures/discovery/shop20_*.sql."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipezone.core.cli.init_flow import assign_names, sanitize
from pipezone.core.cli.main import main
from pipezone.core.spec.catalog import load_catalog

if TYPE_CHECKING:
    from services import MariaDB, Postgres
    from stack import Mongo

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "discovery"
SCRATCH = f"pz_init_flow_{os.getpid()}"
PASSWORD_ENV = "PZ_INIT_FLOW_PASSWORD"
HEADER = ["TABLE", "FLOW FILE", "PRIMARY KEY", "CURSOR", "WHY"]

# what the written flows must say, read back through the catalog: flow -> (table, key, cursor, silver mode)
FLOWS = {
    "film": ("film", ["film_id"], "last_update", "merge"),
    "film_actor": ("film_actor", ["actor_id", "film_id"], "last_update", "merge"),
    "audit_log": ("audit_log", [], None, "append"),
    "price_history": ("price_history", ["sku", "valid_from"], None, "merge"),
    "orderitems": ("OrderItems", ["OrderId", "LineNo"], "UpdatedAt", "merge"),
    "order_items": ("order_items", ["id"], "last_updated", "merge"),
    "order_items_2": (None, ["id"], None, "merge"),  # `order-items`: read by a query
    "events": ("events", ["event_id"], "updated_at", "merge"),
    "payments": ("payments", ["payment_id", "paid_at"], "changed_at", "merge"),
}


@pytest.fixture(scope="module")
def maria_db(mariadb: MariaDB) -> Iterator[MariaDB]:
    mariadb.load_sql(SCRATCH, FIXTURES / "shop20_mariadb.sql")
    yield mariadb
    mariadb.drop_database(SCRATCH)


@pytest.fixture(scope="module")
def pg_db(postgres: Postgres) -> Iterator[Postgres]:
    postgres.load_sql(SCRATCH, FIXTURES / "shop20_postgres.sql")
    yield postgres
    postgres.drop_database(SCRATCH)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty scratch project as the working directory."""
    (tmp_path / "metadata" / "connections").mkdir(parents=True)
    (tmp_path / "metadata" / "flows").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ("PIPEZONE_HOME", "PIPEZONE_METADATA", "PIPEZONE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def add_connection(project: Path, server: MariaDB | Postgres, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    text = server.connection_yaml(name, SCRATCH, server.user, f"${{env:{PASSWORD_ENV}}}")
    (project / "metadata" / "connections" / f"{name}.yaml").write_text(text)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary(out: str) -> dict[str, list[str]]:
    """The summary table's rows by table name, split on the header's column starts (checks the alignment)."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["TABLE", "FLOW"])
    starts = [lines[header].index(title) for title in HEADER]
    rows = {}
    for line in lines[header + 1 :]:
        if line.startswith("wrote "):
            break
        cells = [line[a:b].rstrip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        assert all(cells[:4]) and line[starts[1] - 2 : starts[1]] == "  ", line
        rows[cells[0]] = cells
    return rows


def flows_in(folder: Path) -> dict[str, tuple[str | None, list[str], str | None, str]]:
    catalog = load_catalog(Path("metadata"), sorted(folder.glob("*.yaml")))
    assert catalog.problems == []
    found = {}
    for name, entry in catalog.flows.items():
        src = entry.spec.source
        assert src is not None
        cursor = src.incremental.cursor if src.incremental else None
        found[name] = (src.table, list(src.primary_key), cursor, entry.spec.layers.silver.write_mode)
    return found


# ---------------------------------------------------------------------------------------------- --all


@pytest.mark.parametrize("kind", ["mariadb", "postgres"])
def test_all_writes_one_valid_flow_per_table(
    kind: str, project: Path, capsys, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("maria_db" if kind == "mariadb" else "pg_db")
    add_connection(project, server, "src", monkeypatch)
    code, out, err = run(capsys, "init-flow", "src", "--all")
    assert code == 0, out + err
    assert "ok: 20 file(s) valid" in err
    flows = project / "metadata" / "flows"
    assert len(list(flows.glob("*.yaml"))) == 20
    code, _, err = run(capsys, "validate")
    assert (code, err.startswith("ok: 20 flows, 1 connections")) == (0, True), err
    written = flows_in(flows)
    assert {name: written[name] for name in FLOWS} == FLOWS
    rows = summary(out)
    assert len(rows) == 20
    assert rows["film"][1:4] == ["metadata/flows/film.yaml", "film_id", "last_update"]
    assert rows["audit_log"][2:] == [
        "-",
        "- (full read)",
        "no primary key or unique index over NOT NULL columns: silver appends; "
        "no cursor column: full read each run, no key, so deletes are not inferred",
    ]
    assert rows["order-items"][1] == "metadata/flows/order_items_2.yaml"
    assert rows["order-items"][4].endswith("; flow name order_items_2: order_items is taken by table order_items")
    partitions = "; 2 partition(s) read through their parent table" if kind == "postgres" else ""
    assert (
        out.splitlines()[-1]
        == f"wrote 20 flow file(s) to metadata/flows{partitions}; 1 view(s) not listed (--views lists them)"
    )
    keyless = (flows / "audit_log.yaml").read_text()
    assert "# No primary key and no unique index over NOT NULL columns: silver appends every read" in keyless
    query = "SELECT * FROM `order-items`" if kind == "mariadb" else 'SELECT * FROM "public"."order-items"'
    assert f"  query: {json.dumps(query)}" in (flows / "order_items_2.yaml").read_text()
    assert "    lookback: 0  # a numeric cursor" in (flows / "counters.yaml").read_text()
    assert ("  schema: public\n" in (flows / "film.yaml").read_text()) == (kind == "postgres")


def test_all_never_overwrites(maria_db: MariaDB, project: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    add_connection(project, maria_db, "src", monkeypatch)
    flows = project / "metadata" / "flows"
    (flows / "film.yaml").write_text("# edited by hand\n")
    mine = "name: tags\nsource:\n  connection: src\n  table: tags\n  primary_key: [tag]\n"
    (flows / "my_tags.yaml").write_text(mine)
    code, out, err = run(capsys, "init-flow", "src", "--all")
    assert code == 0, out + err  # skipped files are reported, not failures
    assert (flows / "film.yaml").read_text() == "# edited by hand\n"
    assert (flows / "my_tags.yaml").read_text() == mine and not (flows / "tags.yaml").exists()
    rows = summary(out)
    assert rows["film"][4].startswith("skipped: file exists, never overwritten; primary key (film_id)")
    assert rows["tags"][4].startswith("skipped: flow tags is defined in metadata/flows/my_tags.yaml; ")
    assert out.splitlines()[-1].startswith("wrote 18 flow file(s) to metadata/flows; skipped 2;")
    (flows / "film.yaml").unlink()
    before = {p.name: p.read_text() for p in flows.glob("*.yaml")}
    code, out, err = run(capsys, "init-flow", "src", "--all")
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("wrote 1 flow file(s) to metadata/flows; skipped 19;")
    assert {p.name: p.read_text() for p in flows.glob("*.yaml") if p.name != "film.yaml"} == before


def test_all_globs_prefix_views_and_out(pg_db: Postgres, project: Path, capsys, monkeypatch) -> None:
    add_connection(project, pg_db, "pg", monkeypatch)
    args = ["init-flow", "pg", "--all", "--include", "order*", "--include", "Pay*", "--include", "film_t*"]
    args += ["--include", "nothing*", "--exclude", "ORDERITEMS", "--views", "--prefix", "pg_", "--out", "generated"]
    code, out, err = run(capsys, *args)
    assert code == 0, out + err
    assert "warning: 'nothing*' matches no table of schema 'public'" in err
    assert sorted(summary(out)) == ["film_titles", "order-items", "order_items", "order_lines", "payments"]
    written = flows_in(project / "generated")
    assert sorted(written) == ["pg_film_titles", "pg_order_items", "pg_order_items_2", "pg_order_lines", "pg_payments"]
    assert written["pg_film_titles"] == ("film_titles", [], None, "append")
    assert (
        "# Partitions, read through this table: payments_2024, payments_2025"
        in (project / "generated" / "pg_payments.yaml").read_text()
    )
    assert out.splitlines()[-1] == (
        "wrote 5 flow file(s) to generated; 16 table(s) left out by --include/--exclude; "
        "2 partition(s) read through their parent table"
    )
    assert list((project / "metadata" / "flows").iterdir()) == []


def test_unreachable_server_or_bad_credentials_is_one_line(
    maria_db: MariaDB, pg_db: Postgres, project: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_connection(project, maria_db, "down", monkeypatch)
    path = project / "metadata" / "connections" / "down.yaml"
    path.write_text(path.read_text().replace(f"port: {maria_db.port}", "port: 1"))
    code, out, err = run(capsys, "init-flow", "down", "--all")
    assert (code, out) == (1, "")
    assert re.fullmatch(r"pipezone: error: connection 'down': cannot read the catalog: .*Can't connect.*\n", err)
    add_connection(project, pg_db, "pg", monkeypatch)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password-77")
    for form in (["--all"], ["film"]):
        code, out, err = run(capsys, "init-flow", "pg", *form)
        assert (code, out) == (1, "")
        assert re.fullmatch(r"pipezone: error: connection 'pg': cannot read the catalog: .*password.*\n", err)
        assert "wrong-password-77" not in err
    assert list((project / "metadata" / "flows").iterdir()) == []


# ---------------------------------------------------------------------------------------------- SQLite, one TABLE


def test_sqlite_all_and_one_table(project: Path, capsys) -> None:
    (project / "metadata" / "connections" / "shop.yaml").write_text("name: shop\ntype: sqlite\npath: shop.db\n")
    db = sqlite3.connect(project / "shop.db")
    db.executescript(
        "CREATE TABLE film (film_id INTEGER PRIMARY KEY AUTOINCREMENT, last_update TIMESTAMP NOT NULL);"
        'CREATE TABLE "Line Items" (a INT NOT NULL, b INT NOT NULL, modified_on DATE, PRIMARY KEY (a, b));'
        'CREATE TABLE "null" (id INTEGER PRIMARY KEY);'
        "INSERT INTO film (last_update) VALUES ('2024-01-01 00:00:00');"
    )
    db.close()
    code, out, err = run(capsys, "init-flow", "shop", "film")  # the old name list missed last_update
    assert code == 0, out + err
    assert "  incremental:\n    cursor: last_update\n" in (project / "metadata" / "flows" / "film.yaml").read_text()
    code, out, err = run(capsys, "init-flow", "shop", "--all")
    assert code == 0, out + err
    rows = summary(out)
    assert list(rows) == ["film", "Line Items", "null"]  # in name order, case-blind; sqlite_sequence left out
    assert rows["film"][4].startswith("skipped: file exists")
    line_items = (project / "metadata" / "flows" / "line_items.yaml").read_text()
    assert 'query: "SELECT * FROM \\"Line Items\\""' in line_items
    assert '  table: "null"\n' in (project / "metadata" / "flows" / "null.yaml").read_text()
    assert flows_in(project / "metadata" / "flows")["line_items"] == (None, ["a", "b"], "modified_on", "merge")


def test_sqlite_missing_file_is_one_line_and_creates_nothing(project: Path, capsys) -> None:
    (project / "metadata" / "connections" / "shop.yaml").write_text("name: shop\ntype: sqlite\npath: shop.db\n")
    for form in (["--all"], ["film"]):
        code, out, err = run(capsys, "init-flow", "shop", *form)
        assert (code, out) == (1, "")
        assert err == "pipezone: error: connection 'shop': cannot read the catalog: unable to open database file\n"
    assert not (project / "shop.db").exists()
    assert list((project / "metadata" / "flows").iterdir()) == []


def test_source_without_a_python_driver(project: Path, capsys) -> None:
    """SQL Server and Oracle catalogs are not readable without a JVM: one TABLE gets a file to fill in by hand."""
    text = "name: erp\ntype: sqlserver\nhost: db.internal\ndatabase: erp\nuser: reader\n"
    (project / "metadata" / "connections" / "erp.yaml").write_text(text)
    code, out, err = run(capsys, "init-flow", "erp", "Orders")
    assert code == 0, out + err
    assert (
        out
        == "wrote metadata/flows/orders.yaml (introspection is not available for sqlserver: fill in primary_key and cursor)\n"
    )
    assert (
        "  table: Orders\n  primary_key: []  # none found\n"
        in (project / "metadata" / "flows" / "orders.yaml").read_text()
    )
    code, out, err = run(capsys, "init-flow", "erp", "--all")
    assert (code, out, err) == (
        1,
        "",
        "pipezone: error: connection 'erp': discovery is not available for type 'sqlserver'\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["film", "--include", "f*"], "pipezone: error: --include: only with --all, not with one TABLE\n"),
        (
            ["--all", "--force"],
            "pipezone: error: --force: only with one TABLE (--all never overwrites and names flows itself)\n",
        ),
        (
            ["--all", "--prefix", "Bad-"],
            "pipezone: error: --prefix 'Bad-' must start with a-z and hold only a-z, 0-9 and _ (at most 40)\n",
        ),
        (["--all"], "pipezone: error: unknown connection 'shop' (known: none)\n"),
    ],
)
def test_bad_arguments_are_one_line(project: Path, capsys, args: list[str], message: str) -> None:
    code, out, err = run(capsys, "init-flow", "shop", *args)
    assert (code, out, err) == (2, "", message)


def test_table_and_all_are_exclusive(project: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["init-flow", "shop", "film", "--all"])
    assert exit_.value.code == 2
    assert "argument --all: not allowed with argument table" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- names


def test_flow_names_are_valid_deterministic_and_collisions_reported() -> None:
    assert [sanitize(t) for t in ("OrderItems", "Order Items", "2024-sales", "__x__", "Ünïcode")] == [
        "orderitems",
        "order_items",
        "t_2024_sales",
        "x",
        "n_code",
    ]
    assert len(sanitize("x" * 200)) == 63
    tables = ["ORDER ITEMS", "order_items", "Order-Items", "y" * 70, "Y" * 70]
    names = assign_names(tables, "src_")
    assert names["order_items"] == ("src_order_items", "")  # already its own flow name: keeps it
    assert names["ORDER ITEMS"] == (
        "src_order_items_2",
        "flow name src_order_items_2: src_order_items is taken by table order_items",
    )
    assert names["Order-Items"][0] == "src_order_items_3"
    assert names["Y" * 70][0] == "src_" + "y" * 59 and names["y" * 70][0] == "src_" + "y" * 57 + "_2"
    assert assign_names(list(reversed(tables)), "src_") == names


# ---------------------------------------------------------------------------------------------- MongoDB


def test_mongodb_collections_with_a_sampled_schema(mongo: Mongo, project: Path, capsys) -> None:
    """`--all` writes a flow per collection (key _id, a cursor named like an update time, the sampled fields
    listed), one COLLECTION works too, an unknown one says which exist, a dead server is one line."""
    database = f"pz_init_{os.getpid()}"
    client = mongo.client()
    client.drop_database(database)
    try:
        db = client[database]
        db.orders.insert_many(
            [
                {"customer": {"name": "a"}, "amount": 1.5, "updatedAt": datetime(2024, 1, 1, tzinfo=UTC)}
                for _ in range(3)
            ]
        )
        db.events.insert_one({"kind": "click", "at": datetime(2024, 1, 1, tzinfo=UTC)})
        conn = f"name: docs\ntype: mongodb\nhost: {mongo.host}\nport: {mongo.port}\ndatabase: {database}\n"
        (project / "metadata" / "connections" / "docs.yaml").write_text(conn)
        code, out, err = run(capsys, "init-flow", "docs", "--all")
        assert code == 0, err
        rows = summary(out)
        assert rows["orders"][2:4] == ["_id", "updatedAt"] and rows["events"][3] == "- (full read)"
        assert flows_in(project / "metadata" / "flows") == {
            "orders": ("orders", ["_id"], "updatedAt", "merge"),
            "events": ("events", ["_id"], None, "merge"),
        }
        text = (project / "metadata" / "flows" / "orders.yaml").read_text()
        assert "# Columns: _id string, customer struct<name: string>, amount double, updatedAt timestamp" in text
        code, out, err = run(capsys, "init-flow", "docs", "order", "--name", "one")
        assert code == 0, out + err
        written = (project / "metadata" / "flows" / "one.yaml").read_text()
        assert "primary_key: [_id]" in written and "no collection order in database" in written
        assert "(collections: events, orders)" in written
    finally:
        client.drop_database(database)
        client.close()
    (project / "metadata" / "connections" / "down.yaml").write_text(
        "name: down\ntype: mongodb\nhost: 127.0.0.1\nport: 1\ndatabase: x\n"
    )
    code, out, err = run(capsys, "init-flow", "down", "--all")
    assert (code, out) == (1, "")
    assert re.fullmatch(
        r"pipezone: error: connection 'down': MongoDB at 127\.0\.0\.1:1: ServerSelectionTimeoutError: .*\n", err
    )
