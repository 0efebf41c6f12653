"""Discovery of a whole schema (`pipezone init-flow --all`): every table, its key and a cursor, each with a reason.

The database's own catalog is asked through its Python driver (`native.native_connection`: PyMySQL,
psycopg, sqlite3), never the JVM, in a few bulk queries per schema rather than a round trip per table, so
a schema of thousands of tables is discovered in seconds.

What a starter flow needs, and the rules that pick it (the reasons travel with the result, so the command
can show why it chose what it chose and a reviewer can disagree):

- Key: the primary key; else the unique index over NOT NULL columns with the fewest columns (ties: the
  index name), because a unique index over a nullable column lets several NULL rows share a "key";
  partial and expression indexes never qualify (they do not constrain every row). None: silver appends.
- Cursor, first rule that finds a date/time or integer column wins; within a rule a NOT NULL column beats
  a nullable one (a NULL cursor is never inside a window, so such rows arrive only on a full refresh):
  (a) MySQL/MariaDB: `information_schema.COLUMNS.EXTRA` says `on update current_timestamp` (MariaDB
      writes `current_timestamp()`): the server itself maintains it;
  (b) a name: `updated_at`, `last_update`, `last_updated`, `last_modified`, `modified_at`, `changed_at`,
      then `modified*` / `updated*`, case-insensitive;
  (c) PostgreSQL: a column kept by a trigger is invisible to the catalog, so only (b) applies;
  (d) none: a full read each run (full reads infer deletes, so this is a correct default).
- Columns whose names a flow cannot write (`spec.value_types.IDENTIFIER_PATTERN`) are never a key or cursor.

What is listed: base tables. Views only with `include_views` (they have no keys, and a view's "update"
column means whatever its query says: a flow over one is a choice, not a default). PostgreSQL partitions
are read through their partitioned parent, which is listed (the partitions are not); SQLite's own
`sqlite_*` tables are left out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, text

from pipezone.core.sources.contract import SourceError, for_connection
from pipezone.core.sources.jdbc.dialect import JdbcDialect
from pipezone.core.sources.jdbc.native import native_connection
from pipezone.core.sources.registry import source_adapter
from pipezone.core.spec.connection import ConnectionSpec, JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.value_types import IDENTIFIER_PATTERN

DISCOVERABLE = ("mysql", "postgres", "sqlite")  # dialect names with a Python driver for catalog reads
CURSOR_NAMES = ("updated_at", "last_update", "last_updated", "last_modified", "modified_at", "changed_at")
CURSOR_PREFIXES = ("modified", "updated")
TIME_TYPES = frozenset({"timestamp", "timestamptz", "datetime", "datetime2", "smalldatetime", "date"})
INTEGER_TYPES = frozenset(
    {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "int2", "int4", "int8"}
    | {"serial", "bigserial", "smallserial"}
)
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
RelationKind = Literal["table", "view", "partition"]


class TableNotFound(SourceError):
    """The named table is not in the schema (the server answered: this is not a connection problem)."""


@dataclass(frozen=True)
class Column:
    """One column as the catalog declares it."""

    name: str
    native_type: str  # as the database writes it: `int(10) unsigned`, `timestamp(6) without time zone`, `DATETIME`
    nullable: bool
    on_update_now: bool = False  # MySQL/MariaDB `ON UPDATE CURRENT_TIMESTAMP`

    @property
    def kind(self) -> Literal["time", "integer"] | None:
        """Whether the column can be a cursor: a date/time, an integer, or neither."""
        lowered = self.native_type.lower().strip()
        base = re.split(r"[\s(]", lowered, maxsplit=1)[0]
        if base in TIME_TYPES:
            return "time"
        if base in INTEGER_TYPES:
            return "integer"
        return None


@dataclass(frozen=True)
class UniqueIndex:
    """A primary key or a unique index over plain columns (no expression, no predicate)."""

    name: str
    columns: tuple[str, ...]
    primary: bool = False


@dataclass
class Relation:
    """The catalog's facts about one table, view or partition, before any decision."""

    name: str
    kind: RelationKind
    columns: list[Column] = field(default_factory=list)
    indexes: list[UniqueIndex] = field(default_factory=list)
    parent: str | None = None  # a partition's partitioned table


@dataclass(frozen=True)
class DiscoveredTable:
    """A table with the key and cursor a starter flow should use, and why."""

    schema: str
    name: str
    is_view: bool
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]  # the primary key or the chosen unique index; () = none usable
    key_reason: str
    cursor: str | None
    cursor_reason: str
    partitions: tuple[str, ...] = ()

    @property
    def cursor_kind(self) -> Literal["time", "integer"] | None:
        column = next((c for c in self.columns if c.name == self.cursor), None)
        return column.kind if column else None

    @property
    def reason(self) -> str:
        parts = [self.key_reason, self.cursor_reason]
        if self.partitions:
            parts.append(f"{len(self.partitions)} partition(s) read through it")
        return "; ".join(parts)


@dataclass(frozen=True)
class SchemaDiscovery:
    """What one schema holds: the tables to write flows for, and what was left out on purpose."""

    connection: str
    dialect: str
    schema: str
    tables: tuple[DiscoveredTable, ...]
    views_left_out: tuple[str, ...] = ()
    partitions_left_out: tuple[str, ...] = ()


def discoverable(conn: ConnectionSpec) -> bool:
    """Whether PipeZone can read this connection's catalog (a Python driver exists for its database)."""
    adapter = source_adapter(conn)
    return isinstance(adapter, JdbcDialect) and adapter.name in DISCOVERABLE


def default_schema(conn: ConnectionSpec) -> str:
    """MySQL/MariaDB: the connection's database; PostgreSQL: `public`; SQLite: `main`."""
    name = source_adapter(conn).name
    if name == "mysql" and isinstance(conn, JdbcConnection):
        return conn.database
    return {"postgres": "public", "sqlite": "main"}.get(name, "")


def discover(
    conn: ConnectionSpec,
    resolver: SecretResolver,
    project_root: Path,
    schema: str | None = None,
    *,
    include_views: bool = False,
) -> SchemaDiscovery:
    """Every table of `schema` (default: `default_schema`) with its key and cursor; one SourceError line
    naming the connection when the server, the credentials or the schema are not there."""
    schema = schema or default_schema(conn)
    dialect, relations = _read_catalog(conn, resolver, project_root, schema)
    partitions: dict[str, list[str]] = defaultdict(list)
    for rel in relations:
        if rel.kind == "partition" and rel.parent:
            partitions[rel.parent].append(rel.name)
    tables = [
        decide(rel, schema, dialect, tuple(sorted(partitions.get(rel.name, ()))))
        for rel in relations
        if rel.kind == "table" or (rel.kind == "view" and include_views)
    ]
    return SchemaDiscovery(
        connection=conn.name,
        dialect=dialect,
        schema=schema,
        tables=tuple(tables),
        views_left_out=tuple(r.name for r in relations if r.kind == "view" and not include_views),
        partitions_left_out=tuple(r.name for r in relations if r.kind == "partition"),
    )


def discover_table(
    conn: ConnectionSpec, resolver: SecretResolver, project_root: Path, table: str, schema: str | None = None
) -> DiscoveredTable:
    """One table, view or partition by name (exact, else the one case-insensitive match); TableNotFound
    when the schema has no such relation."""
    schema = schema or default_schema(conn)
    dialect, relations = _read_catalog(conn, resolver, project_root, schema)
    found = [r for r in relations if r.name == table] or [r for r in relations if r.name.lower() == table.lower()]
    if len(found) != 1:
        raise TableNotFound(f"table '{table}' not found in schema '{schema}'", conn.name)
    return decide(found[0], schema, dialect)


def decide(relation: Relation, schema: str, dialect: str, partitions: tuple[str, ...] = ()) -> DiscoveredTable:
    """The key and cursor of one relation by the module's rules (pure: the tests call it directly too)."""
    if relation.kind == "view":
        key: tuple[str, ...] = ()
        key_reason = "a view: no primary key"
    else:
        key, key_reason = choose_key(relation.columns, relation.indexes)
    cursor, cursor_reason = choose_cursor(relation.columns)
    if cursor is None and not key:  # deletes are inferred by key: without one there is nothing to compare
        cursor_reason = cursor_reason.replace("deletes inferred", "no key, so deletes are not inferred")
    return DiscoveredTable(
        schema=schema,
        name=relation.name,
        is_view=relation.kind == "view",
        columns=tuple(relation.columns),
        primary_key=key,
        key_reason=key_reason,
        cursor=cursor,
        cursor_reason=cursor_reason,
        partitions=partitions,
    )


def _listed(columns: Iterable[str]) -> str:
    return ", ".join(columns)


def choose_key(columns: Sequence[Column], indexes: Sequence[UniqueIndex]) -> tuple[tuple[str, ...], str]:
    """The primary key, else the narrowest unique index over NOT NULL columns; with the reason."""
    by_name = {c.name: c for c in columns}
    nameable = [i for i in indexes if all(_IDENTIFIER.fullmatch(c) for c in i.columns)]
    primary = next((i for i in indexes if i.primary), None)
    if primary is not None and primary in nameable:
        return primary.columns, f"primary key ({_listed(primary.columns)})"
    candidates = [
        i for i in nameable if not i.primary and all(c in by_name and not by_name[c].nullable for c in i.columns)
    ]
    if primary is None:
        without = "no primary key"
    else:
        without = f"primary key ({_listed(primary.columns)}) has a column name a flow cannot use"
    if candidates:
        best = min(candidates, key=lambda i: (len(i.columns), i.name))
        return best.columns, f"unique index {best.name} ({_listed(best.columns)}): {without}"
    if primary is not None:
        return (), f"{without}: silver appends"
    return (), "no primary key or unique index over NOT NULL columns: silver appends"


def _name_rank(name: str) -> int | None:
    lowered = name.lower()
    if lowered in CURSOR_NAMES:
        return CURSOR_NAMES.index(lowered)
    if lowered.startswith(CURSOR_PREFIXES):
        return len(CURSOR_NAMES)
    return None


def choose_cursor(columns: Sequence[Column]) -> tuple[str | None, str]:
    """The cursor by rules (a) ON UPDATE CURRENT_TIMESTAMP, (b) an update-time name; with the reason."""
    ranked: list[tuple[tuple[int, bool, int, int], Column, str]] = []
    unusable: list[str] = []
    for position, column in enumerate(columns):
        rank = _name_rank(column.name)
        if column.on_update_now:
            rule, why = 0, "ON UPDATE CURRENT_TIMESTAMP"
        elif rank is not None:
            rule, why = 1, "named like an update time"
        else:
            continue
        if column.kind is None:
            unusable.append(f"{column.name} is {column.native_type or 'untyped'}, not a date/time or integer")
        elif not _IDENTIFIER.fullmatch(column.name):
            unusable.append(f"{column.name!r} is not a name a flow can use")
        else:
            ranked.append(((rule, column.nullable, rank if rank is not None else 0, position), column, why))
    if not ranked:
        detail = f" ({'; '.join(unusable)})" if unusable else ""
        return None, f"no cursor column{detail}: full read each run, deletes inferred"
    _, column, why = min(ranked, key=lambda item: item[0])
    reason = f"cursor {column.name}: {why}"
    if column.nullable:
        reason += f"; nullable: rows with a NULL {column.name} are read only by a full read"
    return column.name, reason


# ---------------------------------------------------------------------------------------------- catalogs


def _read_catalog(
    conn: ConnectionSpec, resolver: SecretResolver, project_root: Path, schema: str
) -> tuple[str, list[Relation]]:
    adapter = source_adapter(conn)
    if not isinstance(adapter, JdbcDialect) or adapter.name not in DISCOVERABLE:
        raise SourceError(f"discovery is not available for type '{conn.type}'", conn.name)
    readers = {"mysql": _mysql, "postgres": _postgres, "sqlite": _sqlite}
    with for_connection(conn.name), native_connection(adapter, conn, resolver, project_root) as db:
        relations = readers[adapter.name](db, schema, adapter)
    return adapter.name, sorted(relations, key=lambda r: (r.name.lower(), r.name))


def _text(value: Any) -> str:
    """Catalog text; some MySQL versions return information_schema columns as bytes."""
    return value.decode() if isinstance(value, bytes | bytearray) else str(value if value is not None else "")


def _schema_missing(schema: str) -> SourceError:
    return SourceError(f"schema '{schema}' does not exist")


def _group_indexes(rows: Iterable[Sequence[Any]]) -> dict[str, list[UniqueIndex]]:
    """Rows of (table, index, is_primary, column) in key order -> each table's indexes."""
    columns: dict[tuple[str, str, bool], list[str]] = defaultdict(list)
    for table, index, primary, column in rows:
        columns[(_text(table), _text(index), bool(primary))].append(_text(column))
    found: dict[str, list[UniqueIndex]] = defaultdict(list)
    for (table, index, primary), names in columns.items():
        found[table].append(UniqueIndex(index, tuple(names), primary))
    return found


def _mysql(db: Connection, schema: str, dialect: JdbcDialect) -> list[Relation]:
    """MySQL/MariaDB: information_schema, three queries for the whole schema."""
    params = {"s": schema}
    if db.execute(text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :s"), params).first() is None:
        raise _schema_missing(schema)
    kinds: dict[str, RelationKind] = {
        "BASE TABLE": "table",
        "SYSTEM VERSIONED": "table",
        "VIEW": "view",
        "SYSTEM VIEW": "view",
    }
    relations: dict[str, Relation] = {}
    sql = "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s"
    for name, kind in db.execute(text(sql), params):
        if _text(kind) in kinds:  # MariaDB's SEQUENCE objects are not tables to read
            relations[_text(name)] = Relation(_text(name), kinds[_text(kind)])
    sql = (
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = :s ORDER BY TABLE_NAME, ORDINAL_POSITION"
    )
    for table, name, native_type, nullable, extra in db.execute(text(sql), params):
        if (rel := relations.get(_text(table))) is not None:
            on_update = "on update current_timestamp" in _text(extra).lower()
            rel.columns.append(Column(_text(name), _text(native_type), _text(nullable) == "YES", on_update))
    sql = (
        "SELECT TABLE_NAME, INDEX_NAME, INDEX_NAME = 'PRIMARY', COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = :s AND NON_UNIQUE = 0 ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
    )
    rows = list(db.execute(text(sql), params))
    functional = {(_text(t), _text(i)) for t, i, _, c in rows if c is None}  # MySQL 8 functional key parts
    for table, indexes in _group_indexes(r for r in rows if (_text(r[0]), _text(r[1])) not in functional).items():
        if table in relations:
            relations[table].indexes = indexes
    return list(relations.values())


_PG_RELATIONS = """
SELECT c.relname, c.relkind, c.relispartition,
       (SELECT p.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
        WHERE i.inhrelid = c.oid LIMIT 1)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
_PG_COLUMNS = """
SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
# Unique indexes over plain columns only: no expression, no WHERE (a partial index constrains some rows);
# INCLUDE columns (beyond indnkeyatts) are carried, not constrained.
_PG_INDEXES = """
SELECT c.relname, i.relname, x.indisprimary, a.attname
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
CROSS JOIN LATERAL unnest(CAST(x.indkey AS int2[])) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = :s AND x.indisunique AND x.indpred IS NULL AND x.indexprs IS NULL AND k.ord <= x.indnkeyatts
ORDER BY c.relname, i.relname, k.ord
"""


def _postgres(db: Connection, schema: str, dialect: JdbcDialect) -> list[Relation]:
    """PostgreSQL: pg_catalog (information_schema hides what the user may not select, and partitions)."""
    params = {"s": schema}
    if db.execute(text("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :s"), params).first() is None:
        raise _schema_missing(schema)
    relations: dict[str, Relation] = {}
    for name, relkind, is_partition, parent in db.execute(text(_PG_RELATIONS), params):
        kind: RelationKind = "partition" if is_partition else "table" if relkind in ("r", "p") else "view"
        relations[name] = Relation(name, kind, parent=parent if is_partition else None)
    for table, name, native_type, not_null in db.execute(text(_PG_COLUMNS), params):
        relations[table].columns.append(Column(name, native_type, not not_null))
    for table, indexes in _group_indexes(db.execute(text(_PG_INDEXES), params)).items():
        if table in relations:
            relations[table].indexes = indexes
    return list(relations.values())


def _sqlite(db: Connection, schema: str, dialect: JdbcDialect) -> list[Relation]:
    """SQLite: the schema table and the table-valued pragmas (per table: SQLite has no bulk catalog)."""
    attached = {_text(row[0]) for row in db.execute(text("SELECT name FROM pragma_database_list"))}
    if schema not in attached:
        raise _schema_missing(schema)
    master = f"{dialect.quote(schema)}.sqlite_master"
    sql = f"SELECT name, type FROM {master} WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    relations = [Relation(_text(name), "table" if kind == "table" else "view") for name, kind in db.execute(text(sql))]
    for rel in relations:
        params = {"t": rel.name, "s": schema}
        primary: list[tuple[int, str]] = []
        # hidden: 0 plain, 2/3 generated (SELECT * returns them), 1 a virtual table's hidden column (it does not)
        xinfo = 'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(:t, :s) ORDER BY cid'
        for name, native_type, not_null, pk, hidden in db.execute(text(xinfo), params):
            if hidden == 1:
                continue
            rel.columns.append(Column(_text(name), _text(native_type), not (not_null or pk)))
            if pk:
                primary.append((int(pk), _text(name)))
        if primary:
            rel.indexes.append(UniqueIndex("PRIMARY", tuple(name for _, name in sorted(primary)), primary=True))
        listing = 'SELECT name, origin FROM pragma_index_list(:t, :s) WHERE "unique" = 1 AND partial = 0'
        for index, origin in list(db.execute(text(listing), params)):
            if origin == "pk":
                continue  # the primary key, read above with its column order
            info = "SELECT cid, name FROM pragma_index_info(:i, :s) ORDER BY seqno"
            parts = list(db.execute(text(info), {"i": index, "s": schema}))
            if parts and all(cid >= 0 and name is not None for cid, name in parts):  # no expression parts
                rel.indexes.append(UniqueIndex(_text(index), tuple(_text(name) for _, name in parts)))
    return relations
