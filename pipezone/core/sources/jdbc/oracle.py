"""Oracle Database, through the ojdbc thin driver with a service name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pipezone.core.sources.contract import SourceError, for_connection
from pipezone.core.sources.jdbc.dialect import host_port
from pipezone.core.sources.jdbc.source import JdbcAdapter
from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.secrets import SecretResolver

_SERVICE = re.compile(r"^[A-Za-z0-9_.$#-]+$")


class OracleAdapter(JdbcAdapter):
    """Oracle 12.2+ (service names; SIDs are not supported)."""

    name = "oracle"
    types = ("oracle",)
    driver_class = "oracle.jdbc.OracleDriver"
    now_sql = "SYS_EXTRACT_UTC(SYSTIMESTAMP)"
    session_init = "ALTER SESSION SET TIME_ZONE = '+00:00'"
    url_defaults: ClassVar[dict[str, str]] = {
        # Send the session zone as an offset: a region id the server's tz file lacks fails with ORA-01882.
        "oracle.jdbc.timezoneAsRegion": "false",
    }
    dialect_notes = (
        "Options go to the driver as connection properties, not into the URL (the thin URL has no portable "
        "parameter syntax before 19c).",
        'Lower-case spec identifiers name the upper-case (unquoted) objects: table orders is "ORDERS"; '
        "mixed or upper case is used exactly as written.",
        "NUMBER without precision becomes decimal(38,10) in Spark (Spark's mapping, kept): more than 10 "
        "decimals are rounded, more than 28 integer digits fail; cast in a query source if that matters.",
        "DATE carries a time of day and is read as a timestamp.",
        "TIMESTAMP WITH (LOCAL) TIME ZONE columns may not be readable by Spark: cast them in a query source.",
        "An empty string is NULL in Oracle, so it cannot be a cursor value.",
    )

    def jdbc_url(self, conn: ConnectionSpec, project_root: Path) -> str:
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            if not _SERVICE.match(jdbc.database):
                raise SourceError(f"invalid service name {jdbc.database!r}")
            return f"jdbc:oracle:thin:@//{host_port(jdbc)}/{jdbc.database}"

    def connection_properties(self, conn: ConnectionSpec, resolver: SecretResolver) -> dict[str, str]:
        with for_connection(conn.name):
            options = self.url_options(self.jdbc_connection(conn))
        return {**options, **super().connection_properties(conn, resolver)}

    def fold(self, identifier: str) -> str:
        return identifier.upper() if identifier == identifier.lower() else identifier

    def quote(self, identifier: str) -> str:
        """Oracle identifiers cannot contain a double quote at all, quoted or not."""
        if '"' in identifier:
            raise SourceError(f"invalid identifier {identifier!r}: Oracle names cannot contain '\"'")
        return super().quote(identifier)

    def string_literal(self, value: str) -> str:
        if value == "":
            raise SourceError("an empty string is NULL in Oracle and cannot bound a window")
        return super().string_literal(value)
