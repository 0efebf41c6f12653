"""What a MongoDB database holds, for `pipezone init-flow`: its collections, each with a schema sampled
from its documents, `_id` as the key and a cursor chosen by the same rules as a SQL table's.

A collection declares no columns, so a sample of its first documents stands in for a catalog; the
starter flow says so, and every read types what it really reads (sources/documents/), so a field the
sample missed is still loaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow as pa

from pipezone.core.sources.documents.lake_fit import typed_records
from pipezone.core.sources.jdbc.discovery import Column, DiscoveredTable, SchemaDiscovery, choose_cursor
from pipezone.core.sources.mongodb import mongo_client
from pipezone.core.spec.connection import MongoConnection
from pipezone.core.spec.secrets import SecretResolver

SAMPLE_SIZE = 1000
KEY_REASON = "primary key _id: every document has one (an ObjectId is kept as its hex text)"


def discover_collections(
    conn: MongoConnection, resolver: SecretResolver, database: str | None = None, sample_size: int = SAMPLE_SIZE
) -> SchemaDiscovery:
    """Every collection of `database` (default: the connection's), `system.*` left out."""
    name = database or conn.database
    with mongo_client(conn, resolver) as client:
        db = client[name]
        names = sorted(n for n in db.list_collection_names() if not n.startswith("system."))
        tables = tuple(_described(name, n, list(db[n].find().limit(sample_size))) for n in names)
    return SchemaDiscovery(connection=conn.name, dialect="mongodb", schema=name, tables=tables)


def discover_collection(
    conn: MongoConnection, resolver: SecretResolver, collection: str, database: str | None = None
) -> DiscoveredTable:
    """One collection. One that does not exist yet (MongoDB creates it on the first write) still gets a
    starter flow keyed on _id, whose reason names the collections that do exist."""
    name = database or conn.database
    with mongo_client(conn, resolver) as client:
        db = client[name]
        existing = db.list_collection_names()
        sample = list(db[collection].find().limit(SAMPLE_SIZE)) if collection in existing else []
    found = _described(name, collection, sample)
    if collection in existing:
        return found
    known = ", ".join(sorted(existing)[:20]) or "none"
    missing = f"no collection {collection} in database {name} yet (collections: {known}): set incremental.cursor"
    return replace(found, cursor_reason=missing)


def _described(database: str, collection: str, sample: list[dict[str, Any]]) -> DiscoveredTable:
    """The collection as a table: a column per sampled field, typed as a read would type it."""
    table = typed_records(sample, "struct", None)
    columns = tuple(
        Column(field.name, _type_name(field.type), nullable=table.column(field.name).null_count > 0)
        for field in table.schema
    )
    cursor, cursor_reason = choose_cursor(columns)
    if not sample:
        cursor_reason = "empty collection: no fields sampled; set incremental.cursor when documents arrive"
    return DiscoveredTable(
        schema=database,
        name=collection,
        is_view=False,
        columns=columns,
        primary_key=("_id",),
        key_reason=KEY_REASON,
        cursor=cursor,
        cursor_reason=f"{cursor_reason} (from {len(sample)} sampled documents)",
    )


def _type_name(kind: pa.DataType) -> str:
    """The sampled type in the words cursor rules know (`timestamp`, `bigint`), else Arrow's own."""
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_integer(kind):
        return "bigint"
    return str(kind)
