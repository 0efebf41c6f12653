"""Microsoft SQL Server and Azure SQL, through mssql-jdbc."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import ClassVar

from pipezone.core.sources.contract import for_connection
from pipezone.core.sources.jdbc.dialect import host_port, timestamp_text
from pipezone.core.sources.jdbc.source import JdbcAdapter
from pipezone.core.spec.connection import ConnectionSpec

_PLAIN_VALUE = re.compile(r"^[^;{}=]*$")


def property_value(value: str) -> str:
    """mssql-jdbc URL property value: braces around values with `;`, `=` or braces (`}` doubled)."""
    return value if _PLAIN_VALUE.match(value) else "{" + value.replace("}", "}}") + "}"


class SqlServerAdapter(JdbcAdapter):
    """SQL Server 2016+ / Azure SQL."""

    name = "sqlserver"
    types = ("sqlserver",)
    driver_class = "com.microsoft.sqlserver.jdbc.SQLServerDriver"
    quote_open, quote_close = "[", "]"
    now_sql = "SYSUTCDATETIME()"
    url_defaults: ClassVar[dict[str, str]] = {
        # Encrypted and verified, the driver's own default since 10.2: a self-signed dev server needs
        # trustServerCertificate: true in the connection's options.
        "encrypt": "true",
        "trustServerCertificate": "false",
        "applicationName": "pipezone",
    }
    dialect_notes = (
        "No session time zone exists: SYSUTCDATETIME() is the window's now, literals are DATETIME2 in UTC.",
        "Results stream already (responseBuffering=adaptive is the driver default); fetchsize is a hint.",
        "A DATETIME cursor is compared as DATETIME2, whose 1/300 s ticks may not equal the millisecond value "
        "read back: a row at exactly hi can move to the next window (never lost).",
        "Named instances: set instanceName in options (a backslash in host is refused).",
    )

    def jdbc_url(self, conn: ConnectionSpec, project_root: Path) -> str:
        with for_connection(conn.name):
            jdbc = self.jdbc_connection(conn)
            server = host_port(jdbc)
            if server.startswith("["):  # IPv6: mssql-jdbc wants it as a property, not in the authority
                server = f";serverName={jdbc.host.strip('[]')};portNumber={jdbc.effective_port}"
            props = {"databaseName": jdbc.database, **self.url_options(jdbc)}
            return f"jdbc:sqlserver://{server};" + ";".join(f"{k}={property_value(v)}" for k, v in props.items())

    def timestamp_literal(self, value: datetime) -> str:
        """ISO 8601 with `T`: read the same under every SET LANGUAGE / DATEFORMAT."""
        return f"CAST('{timestamp_text(value, sep='T')}' AS DATETIME2)"

    def date_literal(self, value: date) -> str:
        return f"CAST('{value.isoformat()}' AS DATE)"
