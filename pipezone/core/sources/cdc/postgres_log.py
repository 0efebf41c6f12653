"""PostgreSQL change data capture: a logical replication slot decoded by wal2json, read with SQL functions.

How it reads: `snapshot()` creates the flow's slot (`pipezone_<flow>`) on a replication connection with
`CREATE_REPLICATION_SLOT ... LOGICAL wal2json EXPORT_SNAPSHOT` and reads the table in a REPEATABLE READ
transaction on that exported snapshot, so the rows are exactly the table at the slot's consistent point.
`changes()` peeks the slot (`pg_logical_slot_peek_changes`, wal2json format 2: one JSON message per row
change, with B/C messages around each transaction), which never consumes; `acknowledge()` moves the slot
(`pg_replication_slot_advance`) once the lake holds the changes, and only then may the server free its WAL.
A position is the LSN just past a transaction's COMMIT record (the slot's own unit), `X/Y` in text.

Why wal2json through SQL functions: psycopg 3 has no streaming replication protocol, and pgoutput (the
built-in plugin) speaks a binary format that would need a hand-written parser; wal2json's JSON carries each
value as the type's own text (with its type OID, turned into Python by psycopg's loaders) and the SQL
functions need no protocol beyond ordinary queries. Debian: `postgresql-<major>-wal2json`.

What the server and the CDC user need:
- `wal_level = logical` (a restart), and free `max_replication_slots` / `max_wal_senders` (one each);
- the user: the REPLICATION attribute (or superuser) for the slot, a pg_hba.conf entry that lets it connect
  to the database (a replication connection to a database matches ordinary entries), SELECT on the table;
- REPLICA IDENTITY: the default (the primary key) when the flow's primary_key is the table's, else USING
  INDEX over the key or FULL; FULL too when an UPDATE may leave a large (TOASTed) column unchanged, since
  the log then carries no value for it. A slot holds WAL until acknowledged: an abandoned one fills the disk
  (`pipezone state` lists them; `max_slot_wal_keep_size` bounds it, invalidating the slot instead).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.rows import dict_row

from pipezone.core.sources.cdc.contract import (
    Change,
    ChangeBatch,
    ChangeLimits,
    ChangeStream,
    Lag,
    LogPosition,
    LogUnavailable,
    Operation,
    Snapshot,
)
from pipezone.core.sources.cdc.postgres_values import LogValues, normalize, parse_message
from pipezone.core.sources.cdc.wal_notation import parse_lsn, wal2json_name, xid_precedes
from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.jdbc.native import CONNECT_TIMEOUT_SECONDS
from pipezone.core.sources.jdbc.postgres import PostgresAdapter
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

PLUGIN = "wal2json"
SLOT_PREFIX = "pipezone_"
SNAPSHOT_BATCH = 10_000
_OPERATIONS: dict[str, Operation] = {"I": "c", "U": "u", "D": "d"}
_PEEK = (
    "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(%(slot)s, NULL, %(upto)s::int,"
    " 'format-version', '2', 'include-transaction', '1', 'include-timestamp', '1', 'include-lsn', '1',"
    " 'include-type-oids', '1', 'actions', 'insert,update,delete,truncate', 'add-tables', %(tables)s)"
)
_TABLE = """
SELECT c.relkind, c.relreplident,
  ARRAY(SELECT a.attname::text || ' ' || a.xmin::text FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attlen = -1) AS varlena,
  ARRAY(SELECT a.attname::text FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = c.oid
          AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END
  ) AS identity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s"""
_SLOTS = """
SELECT s.slot_name::text AS slot, s.active, s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
  s.restart_lsn::text AS restart_lsn, s.wal_status, pg_current_wal_lsn()::text AS head,
  pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS bytes_behind
FROM pg_replication_slots s WHERE s.slot_type = 'logical' AND s.database = current_database()"""
_GONE = re.compile(r"replication slot .*(does not exist|no longer|invalidated)|has already been removed")
_HEAD = "SELECT pg_current_wal_lsn()::text AS head, pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint AS behind"


def slot_name(spec: SourceSpec, flow_name: str) -> str:
    """The flow's slot: `source.cdc.slot`, else `pipezone_<flow>` in PostgreSQL's slot alphabet (a-z0-9_,
    at most 63), a long name cut with a hash of the whole so two flows don't share one."""
    if spec.cdc is not None and spec.cdc.slot:
        return spec.cdc.slot
    name = re.sub(r"[^a-z0-9_]", "_", f"{SLOT_PREFIX}{flow_name}".lower())
    if len(name) > 63:
        name = f"{name[:54]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(conn: JdbcConnection, resolver: SecretResolver, **options: Any) -> psycopg.Connection[Any]:
    """A psycopg connection as the catalog reads open it (PostgresAdapter.native_url: the session in UTC);
    a failure is one SourceError line naming the connection, never the password."""
    url = PostgresAdapter().native_url(conn, resolver, Path("."))
    params: dict[str, Any] = {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username}
    params |= dict(url.query) | {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if url.password is not None:
        params["password"] = str(url.password)
    with server_errors(conn, "cannot connect", params.get("password")):
        return psycopg.connect(**params, **options)


@contextmanager
def server_errors(
    conn: JdbcConnection,
    doing: str,
    password: str | None = None,
    unavailable: Callable[[str], LogUnavailable] | None = None,
) -> Iterator[None]:
    """psycopg errors as one SourceError line; with `unavailable`, a slot gone or invalidated meanwhile (or
    its WAL removed) as that LogUnavailable."""
    try:
        yield
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if password:
            reason = reason.replace(password, "***")
        if unavailable is not None and _GONE.search(reason):
            raise unavailable(f"can't be read: {reason}") from None
        raise SourceError(f"{doing}: {reason}", conn.name) from None


def abandoned_slots(conn: JdbcConnection, resolver: SecretResolver, known_slots: set[str]) -> list[dict[str, Any]]:
    """The database's `pipezone_%` logical slots that no flow owns, with the WAL each holds (`bytes_behind`):
    a slot nobody reads keeps its WAL forever, so `pipezone state` reports them (drop with
    `SELECT pg_drop_replication_slot('name')`)."""
    with connect(conn, resolver, autocommit=True) as db, server_errors(conn, "cannot list replication slots"):
        cur = db.cursor(row_factory=dict_row)
        rows = cur.execute(
            _SLOTS + " AND s.slot_name LIKE %s ORDER BY 1", [SLOT_PREFIX.replace("_", "\\_") + "%"]
        ).fetchall()
    return [row for row in rows if row["slot"] not in known_slots]


@dataclass
class _Transaction:
    committed_at: datetime | None
    xid: int = 0
    rows: list[tuple[Operation, dict[str, Any]]] = field(default_factory=list)
    columns: list[str] | None = None
    truncated: bool = False

    def changes(self, position: LogPosition) -> list[Change]:
        return [Change(op, row, position, i, self.committed_at) for i, (op, row) in enumerate(self.rows)]


class PostgresChangeStream(ChangeStream):
    """One flow's table in one PostgreSQL database's logical decoding slot (see the module docstring)."""

    def __init__(
        self,
        conn: JdbcConnection,
        resolver: SecretResolver,
        spec: SourceSpec,
        flow_name: str,
        select_sql: str,
        spark_types: dict[str, str],
        project_root: Path | None = None,  # the registry's common signature; a server connection holds no path
    ) -> None:
        if spec.table is None:
            raise SourceError("cdc reads a table: the flow has a query", conn.name)
        self.conn = conn
        self.resolver = resolver
        self.flow_name = flow_name
        self.schema = spec.schema_ or "public"
        self.table = spec.table
        self.key = list(spec.primary_key)
        self.select_sql = select_sql
        self.spark_types = dict(spark_types)
        self.slot = slot_name(spec, flow_name)
        self.qualified = f"{quote(self.schema)}.{quote(self.table)}"
        self._db: psycopg.Connection[Any] | None = None
        self._snapshots: list[psycopg.Connection[Any]] = []
        self._values: LogValues | None = None
        self._last_commit: datetime | None = None  # of the last transaction the last read returned
        self._columns: list[str] | None = None  # the table's columns as the last read's newest change has them

    # ------------------------------------------------------------------ contract

    def parse_position(self, text: str) -> LogPosition:
        return parse_lsn(text)

    def snapshot(self) -> Snapshot:
        """Drop a slot left from before (a re-snapshot after `pipezone state reset`), create it exporting
        its snapshot, and read the table on that snapshot in batches."""
        db = self._conn()
        with self._errors("cannot create the replication slot"):
            self._table()
            if self._slot_row() is not None:
                db.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])
        replication = connect(self.conn, self.resolver, replication="database", autocommit=True)
        reader: psycopg.Connection[Any] | None = None
        try:
            with self._errors("cannot create the replication slot"):
                created = replication.execute(
                    f"CREATE_REPLICATION_SLOT {quote(self.slot)} LOGICAL {PLUGIN} EXPORT_SNAPSHOT"
                )
                _, consistent_point, snapshot_name, _ = created.fetchone() or (None, None, None, None)
            reader = connect(self.conn, self.resolver)
            self._snapshots.append(reader)
            with self._errors("cannot open the snapshot"):
                reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                reader.read_only = True
                reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
        except BaseException:
            self._drop_slot_quietly()
            if reader is not None:
                self._close_snapshot(reader)
            raise
        finally:
            replication.close()  # the snapshot is imported: the reader's transaction holds it from here
        rows = self._snapshot_rows(reader)
        return Snapshot(parse_lsn(consistent_point), rows, close=lambda: (rows.close(), self._close_snapshot(reader)))

    def changes(self, after: LogPosition, limits: ChangeLimits) -> ChangeBatch:
        """Whole transactions committed after `after` (peeked, never consumed), up to the limits."""
        with self._errors("cannot read the change log"):
            slot = self._require_slot()
            if after.order < parse_lsn(slot["confirmed_flush_lsn"]).order:
                raise self._unavailable(
                    f"is at {slot['confirmed_flush_lsn']}, past the stored position {after.text} "
                    "(the changes between were consumed by another reader)"
                )
            table = self._table()
            try:
                transactions = self._read(after, limits.max_changes, table, limits.max_seconds)
            except errors.QueryCanceled:  # slower than max_seconds: read just the next transaction, so runs advance
                transactions = self._read(after, 1, table, None)
            changes = [c for _, txn in transactions for c in txn]
            end = transactions[-1][0] if transactions else after
            head = self._one(_HEAD, [end.text]) or {}
        last = self._last_commit
        seconds = (datetime.now(UTC) - last).total_seconds() if transactions and last else None
        lag = Lag(head=head.get("head", end.text), bytes_behind=head.get("behind"), seconds_behind=seconds)
        return ChangeBatch(changes=changes, end=end, lag=lag, columns=self._columns)

    def acknowledge(self, position: LogPosition) -> None:
        """Move the slot to `position` (the server frees WAL before it); at or behind the slot: nothing."""
        with self._errors("cannot acknowledge the change log"):
            slot = self._require_slot()
            if position.order <= parse_lsn(slot["confirmed_flush_lsn"]).order:
                return
            self._conn().execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [self.slot, position.text])

    def status(self, position: LogPosition | None) -> dict[str, Any]:
        """The slot (active, confirmed_flush_lsn, restart_lsn, wal_status), the log head and the WAL the slot
        retains (`bytes_behind`); `exists: False` when there is no slot."""
        with self._errors("cannot read the replication slot"):
            row = self._one(_SLOTS + " AND s.slot_name = %s", [self.slot])
            status = {"slot": self.slot, "exists": False} if row is None else {"exists": True, **row}
            head = self._one(_HEAD, [position.text if position else None]) or {}
            status["head"] = head.get("head")
            if position is not None:
                status |= {"position": position.text, "position_bytes_behind": head.get("behind")}
            return status

    def close(self) -> None:
        for reader in list(self._snapshots):
            self._close_snapshot(reader)
        if self._db is not None:
            self._db.close()
        self._db, self._values = None, None

    # ------------------------------------------------------------------ snapshot

    def _snapshot_rows(self, reader: psycopg.Connection[Any]) -> Generator[list[Mapping[str, Any]], None, None]:
        with (
            self._errors("cannot read the snapshot"),
            reader.cursor(name="pipezone_snapshot", row_factory=dict_row) as cur,
        ):
            cur.itersize = SNAPSHOT_BATCH
            cur.execute(self.select_sql)
            while batch := cur.fetchmany(SNAPSHOT_BATCH):
                yield [self._normalized(row) for row in batch]

    def _normalized(self, row: Mapping[str, Any]) -> dict[str, Any]:
        types = self.spark_types
        return {name: normalize(value, types[name]) if name in types else value for name, value in row.items()}

    def _close_snapshot(self, reader: psycopg.Connection[Any]) -> None:
        if reader in self._snapshots:
            self._snapshots.remove(reader)
        with suppress(psycopg.Error):
            reader.close()  # ends (rolls back) the snapshot's read-only transaction

    def _drop_slot_quietly(self) -> None:
        with suppress(psycopg.Error, SourceError):
            self._conn().execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", [self.slot]
            )

    # ------------------------------------------------------------------ changes

    def _read(
        self, after: LogPosition, max_changes: int, table: Mapping[str, int], seconds: float | None
    ) -> list[tuple[LogPosition, list[Change]]]:
        found, skipped = self._peek(after, max_changes, table, seconds)
        if skipped:  # transactions the lake has filled the read: again, with room for them
            found, _ = self._peek(after, max_changes, table, seconds, skipped)
        return found

    def _peek(
        self, after: LogPosition, max_changes: int, table: Mapping[str, int], seconds: float | None, extra: int = 0
    ) -> tuple[list[tuple[LogPosition, list[Change]]], int]:
        """The slot's transactions after `after` until `max_changes` row changes (a whole transaction over it),
        the peek bounded by `seconds` (statement_timeout: QueryCanceled), and how many rows of transactions at
        or before `after` used up upto_nchanges (0 unless they cut the read short: peek again with them extra)."""
        db = self._conn()
        tables = f"{wal2json_name(self.schema)}.{wal2json_name(self.table)}"
        # B and C messages count towards upto_nchanges too: room for one-change transactions (one transaction:
        # stop at the first message, the peek then ends with the first transaction that has any)
        upto = min((1 if max_changes == 1 else 3 * max_changes + 2) + extra, 2**31 - 1)
        found: list[tuple[LogPosition, list[Change]]] = []
        self._last_commit, self._columns = None, None
        rows = skipped = count = 0
        txn: _Transaction | None = None
        with db.transaction(), db.cursor(name="pipezone_peek") as cur:
            timeout = "0" if seconds is None else str(max(1, int(seconds * 1000)))
            db.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])
            cur.itersize = 2000
            cur.execute(_PEEK, {"slot": self.slot, "upto": upto, "tables": tables})
            for lsn, xid, data in cur:
                rows += 1
                message = parse_message(data)
                action = message.get("action")
                if action == "B":  # its nextlsn is the commit's end, the transaction's position
                    done = message.get("nextlsn") and parse_lsn(message["nextlsn"]) <= after
                    txn = None if done else _Transaction(self._timestamp(message.get("timestamp")), int(xid))
                if txn is None:  # already in the lake (a crash between storing the position and acknowledging)
                    skipped += 1
                elif action in _OPERATIONS and self._ours(message):
                    txn.rows.extend(self._row_changes(message, table, txn))
                elif action == "T" and self._ours(message):
                    txn.truncated = True
                elif action == "C":
                    position = parse_lsn(lsn)
                    if txn.truncated:
                        problem = f"logged a TRUNCATE of {self.qualified} at {position.text}, which has no row deletes"
                        raise self._unavailable(problem)
                    if position > after:
                        found.append((position, txn.changes(position)))
                        self._last_commit = txn.committed_at or self._last_commit
                        self._columns = txn.columns or self._columns
                        count += len(txn.rows)
                    txn = None
                    if count >= max_changes:
                        break
        return found, skipped if rows >= upto and count < max_changes else 0

    def _ours(self, message: dict[str, Any]) -> bool:
        return message.get("schema") == self.schema and message.get("table") == self.table

    def _row_changes(
        self, message: dict[str, Any], table: Mapping[str, int], txn: _Transaction
    ) -> list[tuple[Operation, dict[str, Any]]]:
        """An I/U/D message as row changes: a key update is a delete of the old key and an insert."""
        values = self._log_values()
        new, old = message.get("columns") or [], message.get("identity") or []
        old_row = values.row(old)
        if message["action"] == "D":
            return [("d", self._full(old_row))]
        new_row = values.row(new)
        names = [entry["name"] for entry in new]
        unchanged = table.keys() & self.spark_types.keys() - new_row.keys() if message["action"] == "U" else set()
        for column in sorted(unchanged):
            if column not in old_row and xid_precedes(txn.xid, table[column]):
                continue  # added (or altered) after this transaction wrote: the row had no such column yet
            if column not in old_row:  # an unchanged TOASTed value: only REPLICA IDENTITY FULL logs it
                raise SourceError(
                    f"table {self.qualified}: an UPDATE left out the unchanged large (TOASTed) column '{column}', "
                    f"which the log carries only with ALTER TABLE {self.qualified} REPLICA IDENTITY FULL "
                    f"(then `pipezone state reset {self.flow_name}`: changes already logged lack it)",
                    self.conn.name,
                )
            new_row[column] = old_row[column]
            names = [entry["name"] for entry in old]  # FULL: the identity has every column, in order
        txn.columns = names
        if message["action"] == "I":
            return [("c", self._full(new_row))]
        if any(k in old_row and old_row[k] != new_row.get(k) for k in self.key):
            return [("d", self._full(old_row)), ("c", self._full(new_row))]
        return [("u", self._full(new_row))]

    def _full(self, row: dict[str, Any]) -> dict[str, Any]:
        """Every column the flow reads (None where the log has no value), then any the log adds (DDL)."""
        return {name: row.get(name) for name in self.spark_types} | row

    def _timestamp(self, text: str | None) -> datetime | None:
        if not text:
            return None
        value = self._log_values().value({"name": "", "typeoid": 1184, "value": text})
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    def _log_values(self) -> LogValues:
        if self._values is None:
            self._values = LogValues(self._conn(), self.spark_types)
        return self._values

    # ------------------------------------------------------------------ catalog

    def _table(self) -> frozenset[str]:
        """The table's replica identity checked against the flow's key; its columns whose values may be
        TOASTed (variable length: an UPDATE leaves them out when unchanged)."""
        row = self._conn().execute(_TABLE, [self.schema, self.table]).fetchone()
        if row is None:
            raise SourceError(f"table {self.qualified} not found in database '{self.conn.database}'", self.conn.name)
        kind, identity, varlena, identity_columns = row
        fix = f"ALTER TABLE {self.qualified} REPLICA IDENTITY FULL"
        if kind == "p":
            raise SourceError(
                f"{self.qualified} is partitioned: wal2json logs each partition by its own name (cdc reads a table)",
                self.conn.name,
            )
        if identity == "n":
            raise SourceError(
                f"table {self.qualified} has REPLICA IDENTITY NOTHING: updates and deletes carry no key ({fix})",
                self.conn.name,
            )
        missing = [k for k in self.key if identity != "f" and k not in identity_columns]
        if missing:
            has = ", ".join(identity_columns) or "none"
            raise SourceError(
                f"table {self.qualified}: its replica identity ({has}) lacks primary_key column(s) "
                f"{', '.join(missing)}, so deletes would not carry the key ({fix}, or REPLICA IDENTITY USING INDEX "
                "on a unique index of the key)",
                self.conn.name,
            )
        # name -> the xid that last wrote its catalog row (ADD COLUMN, or a later ALTER of the column)
        return {name: int(xmin) for name, xmin in (entry.rsplit(" ", 1) for entry in varlena)}

    def _slot_row(self) -> dict[str, Any] | None:
        query = "SELECT to_jsonb(s) AS slot, current_database() AS db FROM pg_replication_slots s WHERE slot_name = %s"
        return self._one(query, [self.slot])

    def _require_slot(self) -> dict[str, Any]:
        """The slot's row, or LogUnavailable: missing, another database's or plugin's, invalidated."""
        found = self._slot_row()
        if found is None:
            raise self._unavailable("does not exist")
        slot: dict[str, Any] = found["slot"]
        if slot.get("database") != found["db"]:
            raise self._unavailable(f"belongs to database '{slot.get('database')}'")
        if slot.get("plugin") != PLUGIN or slot.get("slot_type") != "logical":
            raise self._unavailable(f"is a {slot.get('slot_type')} slot of plugin '{slot.get('plugin')}', not {PLUGIN}")
        if (
            slot.get("wal_status") == "lost"
            or slot.get("conflicting")
            or slot.get("invalidation_reason")
            or not slot.get("restart_lsn")
        ):
            raise self._unavailable("was invalidated (the server removed the WAL it held: max_slot_wal_keep_size)")
        return slot

    def _unavailable(self, problem: str) -> LogUnavailable:
        return LogUnavailable(
            f"replication slot '{self.slot}' in database '{self.conn.database}' {problem}: the table's changes "
            f"can't be read on; `pipezone state reset {self.flow_name}` re-snapshots it"
        )

    # ------------------------------------------------------------------ connection

    def _one(self, query: str, params: list[Any]) -> dict[str, Any] | None:
        return self._conn().cursor(row_factory=dict_row).execute(query, params).fetchone()

    def _conn(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed:
            self._db = connect(self.conn, self.resolver, autocommit=True)
        return self._db

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return server_errors(self.conn, doing, unavailable=self._unavailable)
