"""PostgreSQL's log notation as wal2json and the catalogs give it: LSNs (`X/Y`), transaction ids (32-bit,
circular), and table names in wal2json's `add-tables` list."""

from __future__ import annotations

import re

from pipezone.core.sources.cdc.contract import LogPosition

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> LogPosition:
    """`X/Y` (hex, PostgreSQL's pg_lsn notation) as a position ordered by the LSN's 64-bit value."""
    match = _LSN.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a PostgreSQL log position (X/Y in hex): {text!r}")
    high, low = int(match[1], 16), int(match[2], 16)
    return LogPosition((high << 32) + low, f"{high:X}/{low:X}")


def xid_precedes(xid: int, other: int) -> bool:
    """Whether transaction id `xid` is older than `other`, in PostgreSQL's circular 32-bit xid order. A column's
    catalog row written by a transaction newer than the change's did not exist when the change was made
    (ADD COLUMN waits for every open writer of the table: their changes precede it in the log). The one
    miss: a transaction older than the column that first writes the table after it, updating a row whose
    new column already holds a large (TOASTed) value, reads as NULL there. A frozen catalog row (xmin 2)
    precedes every change: it then counts as an existing column (the TOAST check applies)."""
    return xid >= 3 and other >= 3 and xid != other and (other - xid) % 2**32 < 2**31


def wal2json_name(name: str) -> str:
    """A schema or table name in wal2json's add-tables list: backslash before anything but [A-Za-z0-9_]."""
    return "".join(c if c.isalnum() or c == "_" or ord(c) > 127 else "\\" + c for c in name)
