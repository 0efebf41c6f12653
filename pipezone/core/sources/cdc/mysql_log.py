"""MySQL/MariaDB change data capture: the binary log in row format, read with python-mysql-replication.

Why this engine: python-mysql-replication (`mysql-replication` on PyPI) speaks the replication protocol and
decodes row events into Python values in the extract step's own process, so the log position is ours to
store after the Delta commit (exactly once) with no second JVM or offset store to keep in step (README,
Change data capture, has the measured throughput against `mariadb-binlog`).

The server needs `binlog_format=ROW`, `binlog_row_image=FULL` (deletes and updates carry the whole row) and
`binlog_row_metadata=FULL` (row events name their columns, so DDL while streaming is seen);
setup/local/mariadb.sh starts MariaDB so. The reading user needs `REPLICATION SLAVE` and `BINLOG MONITOR`
(MariaDB; MySQL: `REPLICATION CLIENT`) and `SELECT` on the table; on MySQL (not MariaDB) the snapshot also
takes a global read lock for an instant (`RELOAD`).

Positions are `file:offset` at a transaction boundary (after its commit event: an Xid, or a COMMIT statement
for a non-transactional table); `order` packs the file's number and the offset, so it grows along the log.
A TRUNCATE of the table is a statement with no row events: the stream stops there (LogUnavailable), as
PostgreSQL's does, rather than leave the truncated rows live in the lake.

The snapshot is one `START TRANSACTION WITH CONSISTENT SNAPSHOT` (under REPEATABLE READ, whatever the
server's default); MariaDB reports the binlog position that snapshot is consistent with
(`binlog_snapshot_file/pos`), MySQL's is read under the lock.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import QueryEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from pipezone.core.sources.cdc.contract import (
    Change,
    ChangeBatch,
    ChangeLimits,
    ChangeStream,
    Lag,
    LogPosition,
    LogUnavailable,
    Snapshot,
)
from pipezone.core.sources.cdc.mysql_values import MySqlValues
from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.jdbc.mysql import MySqlAdapter
from pipezone.core.spec.connection import JdbcConnection
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

SNAPSHOT_FETCH = 10_000  # rows per snapshot batch
POSITION = re.compile(r"^(?P<file>[^:\s]+\.(?P<seq>\d+)):(?P<pos>\d+)$")
PURGED = (1236,)  # ER_MASTER_FATAL_ERROR_READING_BINLOG: the file is gone from the server
TRUNCATE = re.compile(
    r"^TRUNCATE\s+(?:TABLE\s+)?(?P<name>(?:`(?:[^`]|``)+`|[\w$]+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|[\w$]+))?)", re.I
)
ALTER = re.compile(
    r"^ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?"
    r"(?P<name>(?:`(?:[^`]|``)+`|[\w$]+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|[\w$]+))?)",
    re.I,
)
LEADING_COMMENTS = re.compile(r"^(?:/\*(?!!).*?\*/\s*)+")
IDENTIFIER = re.compile(r"`((?:[^`]|``)+)`|([\w$]+)")


def position(file: str, offset: int) -> LogPosition:
    """`file:offset`, ordered by the file's sequence number, then the offset."""
    match = POSITION.match(f"{file}:{offset}")
    if match is None:
        raise ValueError(f"'{file}:{offset}' is not a binlog position (file.NNNNNN:offset)")
    return LogPosition(order=(int(match["seq"]) << 32) + offset, text=f"{file}:{offset}")


def default_server_id(flow: str) -> int:
    """A replica id of its own per flow (the server refuses two readers with one id)."""
    return 1_000_000 + zlib.crc32(flow.encode()) % 1_000_000_000


class MySqlChangeStream(ChangeStream):
    """One table's changes in a MySQL/MariaDB binlog."""

    def __init__(
        self,
        conn: JdbcConnection,
        resolver: SecretResolver,
        spec: SourceSpec,
        flow_name: str,
        select_sql: str,
        spark_types: Mapping[str, str],
        project_root: Path | None = None,
    ) -> None:
        assert spec.cdc is not None and spec.table is not None
        url = MySqlAdapter().native_url(conn, resolver, project_root or Path("."))
        assert url is not None
        self.connection_name = conn.name
        self.flow_name = flow_name
        self.login = {"host": url.host, "port": url.port or 3306, "user": url.username, "password": url.password or ""}
        self.database = spec.schema_ or conn.database
        self.table = spec.table
        self.keys = list(spec.primary_key)
        self.server_id = spec.cdc.server_id or default_server_id(flow_name)
        self.select_sql = select_sql
        self._control: pymysql.connections.Connection | None = None
        self.values = MySqlValues(self._connection, self.database, self.table, dict(spark_types))

    # ------------------------------------------------------------------ connections

    def _connect(self) -> pymysql.connections.Connection:
        login = self.login
        try:
            return pymysql.connect(
                host=login["host"],
                port=login["port"],
                user=login["user"],
                password=login["password"],
                database=self.database,
                charset="utf8mb4",
                init_command="SET time_zone = '+00:00'",
                autocommit=True,
            )
        except pymysql.MySQLError as err:
            raise SourceError(f"cannot connect: {_reason(err)}", self.connection_name) from None

    def _connection(self) -> pymysql.connections.Connection:
        if self._control is None:
            self._control = self._connect()
        return self._control

    def _query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        try:
            with self._connection().cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        except pymysql.MySQLError as err:
            raise SourceError(f"{_reason(err)} (running: {sql.split()[0]} ...)", self.connection_name) from None

    # ------------------------------------------------------------------ the contract

    def parse_position(self, text: str) -> LogPosition:
        match = POSITION.match(text.strip())
        if match is None:
            raise ValueError(f"'{text}' is not a binlog position (file.NNNNNN:offset)")
        return position(match["file"], int(match["pos"]))

    def snapshot(self) -> Snapshot:
        """The table in one consistent-snapshot transaction, and the binlog position it is consistent with."""
        reader = self._connect()
        try:
            start = self._snapshot_position(reader)
            cursor = reader.cursor(pymysql.cursors.SSDictCursor)
            cursor.execute(self.select_sql)
        except pymysql.MySQLError as err:
            reader.close()
            raise SourceError(f"snapshot failed: {_reason(err)}", self.connection_name) from None

        def rows() -> Iterator[list[Mapping[str, Any]]]:
            while True:
                chunk = cursor.fetchmany(SNAPSHOT_FETCH)
                if not chunk:
                    return
                yield [self.values.snapshot_row(row) for row in chunk]

        def close() -> None:
            try:
                reader.rollback()
            finally:
                reader.close()

        return Snapshot(position=start, rows=rows(), close=close)

    def _snapshot_position(self, reader: pymysql.connections.Connection) -> LogPosition:
        """WITH CONSISTENT SNAPSHOT holds only under REPEATABLE READ: a server whose default isolation is READ
        COMMITTED ignores it, and the SELECT would see transactions committed after the position (doubled)."""
        with reader.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT VERSION()")
            mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
            if mariadb:  # MariaDB names the position its consistent snapshot sees: no lock at all
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cursor.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {name.lower(): value for name, value in cursor.fetchall()}
                return position(status["binlog_snapshot_file"], int(status["binlog_snapshot_position"]))
            cursor.execute("FLUSH TABLES WITH READ LOCK")  # MySQL: commits wait for an instant
            try:
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                file, offset = _head(cursor)
            finally:
                cursor.execute("UNLOCK TABLES")
            return position(file, offset)

    def changes(self, after: LogPosition, limits: ChangeLimits) -> ChangeBatch:
        """Whole transactions after `after`, read without blocking up to the log's end or the limits."""
        file, offset = after.text.rsplit(":", 1)
        stream = BinLogStreamReader(
            connection_settings=self.login,
            server_id=self.server_id,
            resume_stream=True,
            log_file=file,
            log_pos=int(offset),
            blocking=False,
            only_schemas=[self.database],
            only_tables=[self.table],
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent],
            # file:offset on both servers (the library's MariaDB mode is for GTID starts only)
        )
        changes: list[Change] = []
        pending: list[tuple[str, Mapping[str, Any]]] = []
        end, started, last_commit = after, time.monotonic(), None
        columns: list[str] | None = None
        described = self._head_now()  # the step described the table before this: DDL after it is not in its types
        try:
            for event in stream:
                if isinstance(event, QueryEvent) and self._altered_after(event, stream, described):
                    break  # the next run starts before the ALTER, with the table described after it
                if isinstance(event, QueryEvent) and not self._commit(event, stream):
                    continue
                if isinstance(event, XidEvent | QueryEvent):
                    end = position(stream.log_file, stream.log_pos)
                    committed = datetime.fromtimestamp(event.timestamp, UTC)
                    changes += self._transaction(pending, end, committed)
                    last_commit = committed if pending else last_commit
                    pending = []
                    if len(changes) >= limits.max_changes or time.monotonic() - started >= limits.max_seconds:
                        break
                    continue
                columns = [c.name for c in event.columns] if getattr(event, "columns", None) else columns
                pending += _row_changes(event)
        except pymysql.MySQLError as err:
            code = err.args[0] if err.args else None
            if code in PURGED:
                raise LogUnavailable(
                    f"connection '{self.connection_name}': binlog {file} (position {after.text}) is no longer on the "
                    f"server ({_reason(err)}); run `pipezone state reset {self.flow_name}` to take a new snapshot"
                ) from None
            raise SourceError(f"reading the binlog: {_reason(err)}", self.connection_name) from None
        finally:
            stream.close()
        return ChangeBatch(changes=changes, end=end, lag=self._lag(end, last_commit), columns=columns)

    def _commit(self, event: QueryEvent, stream: BinLogStreamReader) -> bool:
        """A statement in the log: True for a COMMIT (a non-transactional table's, MyISAM or Aria, ends with one
        instead of an Xid); a TRUNCATE of the table is LogUnavailable, as it logs no row deletes (the lake
        would keep the rows); other statements (DDL, other tables) are nothing to the stream."""
        statement = _statement(event)
        if statement.upper() == "COMMIT":
            return True
        if self._names_our_table(TRUNCATE.match(statement), event):
            at = position(stream.log_file, stream.log_pos).text
            raise LogUnavailable(
                f"connection '{self.connection_name}': the binlog has a TRUNCATE of `{self.database}`."
                f"`{self.table}` at {at}, which logs no row deletes: its changes can't be read on; run "
                f"`pipezone state reset {self.flow_name}` to take a new snapshot"
            )
        return False

    def _altered_after(self, event: QueryEvent, stream: BinLogStreamReader, described: LogPosition) -> bool:
        """An ALTER of the table committed after the step described it: the rows after it may hold values of
        a type the step doesn't know yet (a widened DECIMAL would be cut to the old scale), so the batch ends
        before it. An ALTER before the description is in the step's types (older rows only widen to them)."""
        if not self._names_our_table(ALTER.match(_statement(event)), event):
            return False
        return position(stream.log_file, stream.log_pos) > described

    def _names_our_table(self, match: re.Match[str] | None, event: QueryEvent) -> bool:
        """Whether a statement's matched table name (`t` in the event's default schema, or `db`.`t`) is ours."""
        if match is None:
            return False
        names = [quoted.replace("``", "`") or plain for quoted, plain in IDENTIFIER.findall(match["name"])]
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema or "")
        return (names if len(names) == 2 else [schema, *names]) == [self.database, self.table]

    def _head_now(self) -> LogPosition:
        with self._connection().cursor() as cursor:
            return position(*_head(cursor))

    def _transaction(
        self, rows: list[tuple[str, Mapping[str, Any]]], commit: LogPosition, committed: datetime
    ) -> list[Change]:
        """A transaction's row changes at its commit position; a key update is a delete plus an insert."""
        out: list[Change] = []

        def add(op: str, values: Mapping[str, Any], none: Mapping[str, str], before: Mapping[str, Any]) -> None:
            row = self.values.log_row(values, none, before)
            out.append(Change(op=op, row=row, position=commit, index=len(out), committed_at=committed))  # type: ignore[arg-type]

        for op, row in rows:
            if op != "u":
                add(op, row["values"], row.get("none_sources", {}), {})
                continue
            before, after_row = row["before_values"], row["after_values"]
            after_none = row.get("after_none_sources", {})
            if any(before.get(k) != after_row.get(k) for k in self.keys):
                add("d", before, row.get("before_none_sources", {}), {})
                add("c", after_row, after_none, before)
            else:
                add("u", after_row, after_none, before)
        return out

    def _lag(self, end: LogPosition, last_commit: datetime | None) -> Lag:
        with self._connection().cursor() as cursor:
            file, offset = _head(cursor)
            cursor.execute("SHOW BINARY LOGS")
            sizes = [(row[0], int(row[1])) for row in cursor.fetchall()]
        ours = self.parse_position(end.text)
        behind = 0
        for name, size in sizes:
            seq = int(name.rsplit(".", 1)[1])
            if seq == ours.order >> 32:
                behind += size - (ours.order & 0xFFFFFFFF)
            elif seq > ours.order >> 32:
                behind += size
        seconds = (datetime.now(UTC) - last_commit).total_seconds() if last_commit else None
        return Lag(head=f"{file}:{offset}", bytes_behind=max(behind, 0), seconds_behind=seconds)

    def status(self, position: LogPosition | None) -> dict[str, Any]:
        with self._connection().cursor() as cursor:
            file, offset = _head(cursor)
        status: dict[str, Any] = {"head": f"{file}:{offset}", "server_id": self.server_id}
        if position is not None:
            status["bytes_behind"] = self._lag(position, None).bytes_behind
        return status

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None


def _statement(event: QueryEvent) -> str:
    """The statement's text as the client sent it, leading comments and extra whitespace removed."""
    return LEADING_COMMENTS.sub("", " ".join(str(event.query).split()))


def _row_changes(event: Any) -> list[tuple[str, Mapping[str, Any]]]:
    op = {WriteRowsEvent: "c", UpdateRowsEvent: "u", DeleteRowsEvent: "d"}[type(event)]
    return [(op, row) for row in event.rows]


def _head(cursor: Any) -> tuple[str, int]:
    """The server's current binlog file and offset (MySQL 8.4 renamed the statement)."""
    for statement in ("SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"):
        try:
            cursor.execute(statement)
        except pymysql.err.ProgrammingError:
            continue
        row = cursor.fetchone()
        if row is None:
            raise SourceError("the binary log is off: start the server with log_bin and binlog_format=ROW")
        return str(row[0]), int(row[1])
    raise SourceError("the server answers neither SHOW BINARY LOG STATUS nor SHOW MASTER STATUS")


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split())
