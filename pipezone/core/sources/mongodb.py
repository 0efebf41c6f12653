"""A MongoDB collection (or any server speaking its wire protocol, e.g. FerretDB) behind the source contract.

Read with pymongo, the official driver: documents decode in its C extension, with ObjectIds as their hex
string (`_id` is the primary key the lake keeps as text), dates as UTC, int64 and Decimal128 as Python
numbers. Each read types the documents it holds (sources/documents/records.py), chunk by chunk, so a
field the sample never saw still lands. The incremental window is a range on the cursor field added to
the flow's filter; the newest cursor is a sorted find with limit 1 (an index on the cursor makes it one
lookup), and the server's clock is `hello`'s localTime. A whole-collection read with
`read.num_partitions` > 1 splits on `_id` at boundaries found by skipping through the `_id` index, one
connection per part.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from bson.codec_options import DatetimeConversion, TypeDecoder, TypeRegistry
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from pipezone.core.sources import contract
from pipezone.core.sources.contract import ArrowRead, CursorBounds, CursorValue, ReadPlan, SourceAdapter, SourceError
from pipezone.core.sources.documents import frames
from pipezone.core.sources.documents.lake_fit import typed_records
from pipezone.core.sources.documents.records import unify
from pipezone.core.spec.connection import ConnectionSpec, MongoConnection
from pipezone.core.spec.documents import DocumentOptions
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

CHUNK_DOCUMENTS = 20_000  # documents typed into one Arrow chunk (bounded Python memory per chunk)
CONNECT_TIMEOUT_MS = 10_000


class _Decoder(TypeDecoder):
    """Decode one BSON type into the plain value the lake keeps."""

    def __init__(self, bson_type: type, convert: Any) -> None:
        self._bson_type = bson_type
        self._convert = convert

    @property
    def bson_type(self) -> type:  # type: ignore[override]
        return self._bson_type

    def transform_bson(self, value: Any) -> Any:
        return self._convert(value)


TYPE_REGISTRY = TypeRegistry(
    [
        _Decoder(ObjectId, str),
        _Decoder(Int64, int),
        _Decoder(Decimal128, lambda v: v.to_decimal()),
    ]
)


class MongoSource(contract.Source):
    """One flow's collection on a MongoDB connection."""

    reader = "pymongo"

    def __init__(self, spec: SourceSpec, connection: MongoConnection, resolver: SecretResolver) -> None:
        super().__init__(spec, connection)
        self.mongo = connection
        self.resolver = resolver
        self.options = spec.documents or DocumentOptions()
        self._tables: dict[ReadPlan, pa.Table] = {}
        self.lake: pa.Schema | None = None

    def type_like(self, schema: StructType | None) -> None:
        self.lake = frames.arrow_fields(schema)
        self._tables = {}

    # ------------------------------------------------------------------ the contract

    def describe(self, spark: SparkSession, plan: ReadPlan | None = None) -> StructType:
        if plan is not None:
            return frames.spark_schema(self._table(plan)) if self._table(plan).num_columns else self._sampled()
        return self._sampled()

    def cursor_bounds(self, spark: SparkSession, after: CursorValue | None = None) -> CursorBounds:
        return self.bounds_without_spark()

    def bounds_without_spark(self) -> CursorBounds:
        """The newest cursor value and the server's clock, asked with pymongo: no Spark either way."""
        cursor = self._cursor()
        with self._collection() as coll:
            query = self._and({cursor: {"$ne": None}})
            newest = list(coll.find(query, {cursor: 1}).sort(cursor, -1).limit(1))
            now = coll.database.command("hello").get("localTime")
        hi = newest[0].get(cursor) if newest else None
        return CursorBounds(hi=hi, now=now.astimezone(UTC) if now is not None else None)

    def read(self, spark: SparkSession, plan: ReadPlan) -> DataFrame:
        self.check_plan(plan)
        table = self._table(plan)
        if plan.kind == "key_snapshot":
            return frames.to_frame(spark, table, lambda: frames.keys_schema(self.spec.primary_key, self.lake))
        return frames.to_frame(spark, table, self._sampled)

    def read_arrow(self, spark: SparkSession, plan: ReadPlan, schema: StructType) -> ArrowRead | None:
        return frames.as_arrow_read(self._table(plan))

    def count(self, spark: SparkSession) -> int:
        with self._collection() as coll:
            return coll.count_documents(self.options.filter)

    # ------------------------------------------------------------------ reading

    def _table(self, plan: ReadPlan) -> pa.Table:
        """The plan's documents as one Arrow table, read once per plan (extract asks for the schema, the
        DataFrame and the Arrow stream of the same read)."""
        if plan not in self._tables:
            self._tables = {plan: self._read_table(plan)}
        return self._tables[plan]

    def _read_table(self, plan: ReadPlan) -> pa.Table:
        query = self._and(self._window(plan))
        projection = self._projection(keys_only=plan.kind == "key_snapshot")
        parts = self.spec.read.num_partitions
        first_load = plan.kind in ("full", "window") and plan.lower is None  # the window's filter still applies
        if parts > 1 and first_load:
            ranges = self._id_ranges(parts)
            with ThreadPoolExecutor(len(ranges)) as pool:
                tables = list(pool.map(lambda r: self._read_range(query, projection, r), ranges))
            return unify([t for part in tables for t in part])
        return unify(self._read_range(query, projection, (None, None)))

    def _read_range(self, query: dict[str, Any], projection: dict[str, int] | None, ids: tuple[Any, Any]) -> list:
        """One part's documents as Arrow chunks, over its own connection."""
        lo, hi = ids
        bound = {k: v for k, v in (("$gte", lo), ("$lt", hi)) if v is not None}
        query = {"$and": [query, {"_id": bound}]} if bound else query
        chunks, records = [], []
        with self._collection() as coll:
            for document in coll.find(query, projection, batch_size=self.spec.read.fetch_size):
                records.append(document)
                if len(records) >= CHUNK_DOCUMENTS:
                    chunks.append(typed_records(records, self.options.nested, self.lake))
                    records = []
        if records or not chunks:
            chunks.append(typed_records(records, self.options.nested, self.lake))
        return chunks

    def _id_ranges(self, parts: int) -> list[tuple[Any, Any]]:
        """`parts` ranges of `_id` with about as many documents each: boundaries every n/parts documents in
        `_id` order (the server walks the `_id` index to skip; no document crosses the wire)."""
        with self._collection() as coll:
            total = coll.count_documents(self.options.filter)
            step = max(1, total // parts)
            bounds: list[Any] = []
            for index in range(1, parts):
                found = list(coll.find(self.options.filter, {"_id": 1}).sort("_id", 1).skip(index * step).limit(1))
                edge = self._id_value(found[0]["_id"]) if found else None
                if edge is not None and (not bounds or edge != bounds[-1]):
                    bounds.append(edge)
        edges = [None, *bounds, None]
        return list(zip(edges, edges[1:], strict=False))

    def _sampled(self) -> StructType:
        """The schema of the first `sample_size` documents (what `describe` shows before any read)."""
        with self._collection() as coll:
            sample = list(coll.find(self.options.filter, self._projection(False)).limit(self.options.sample_size))
        table = typed_records(sample, self.options.nested, None)
        if not table.num_columns:
            return frames.keys_schema(self.spec.primary_key or ["_id"], None)
        return frames.spark_schema(table)

    # ------------------------------------------------------------------ queries

    def _cursor(self) -> str:
        if self.spec.incremental is None:
            raise SourceError("the flow has no incremental cursor", self.name)
        return self.spec.incremental.cursor

    def _window(self, plan: ReadPlan) -> dict[str, Any]:
        if plan.kind in ("full", "key_snapshot") or plan.is_whole:
            return {}
        cursor = self._cursor()
        if plan.kind == "backfill":
            ops = {"$gte": plan.lower, "$lt": plan.upper}
        else:
            ops = {"$gt": plan.lower, "$lte": plan.upper}
        typed = {op: self._cursor_value(cursor, value) for op, value in ops.items() if value is not None}
        return {cursor: typed} if typed else {}

    def _cursor_value(self, cursor: str, value: Any) -> Any:
        """A watermark as the field holds it: an `_id` cursor's hex text back to its ObjectId."""
        return self._id_value(value) if cursor == "_id" else value

    @staticmethod
    def _id_value(value: Any) -> Any:
        return ObjectId(value) if isinstance(value, str) and ObjectId.is_valid(value) else value

    def _and(self, extra: dict[str, Any]) -> dict[str, Any]:
        base = self.options.filter
        if not extra:
            return dict(base)
        return {"$and": [base, extra]} if base else extra

    def _projection(self, keys_only: bool) -> dict[str, int] | None:
        if keys_only:
            keys = self.spec.primary_key or ["_id"]
            return {**{k: 1 for k in keys}, **({} if "_id" in keys else {"_id": 0})}
        return dict(self.options.projection) or None

    @contextmanager
    def _collection(self) -> Iterator[Any]:
        """The collection over a fresh client; a driver error becomes one line naming the connection."""
        with mongo_client(self.mongo, self.resolver) as client:
            yield client[self.spec.schema_ or self.mongo.database][self.spec.table]


@contextmanager
def mongo_client(conn: MongoConnection, resolver: SecretResolver) -> Iterator[MongoClient[Any]]:
    """A client for `conn` (credentials resolved here, never logged), closed after use; any driver error
    inside becomes one SourceError line naming the connection and the server."""
    auth: dict[str, str] = {}
    if conn.user:
        auth["username"] = resolver.resolve(conn.user, mask=False).reveal()
        auth["authSource"] = conn.auth_source or "admin"
    if conn.password:
        auth["password"] = resolver.resolve(conn.password).reveal()
    client: MongoClient[Any] | None = None
    try:
        client = MongoClient(
            host=conn.host,
            port=conn.port,
            serverSelectionTimeoutMS=CONNECT_TIMEOUT_MS,
            appname="pipezone",
            tz_aware=True,
            tzinfo=UTC,
            type_registry=TYPE_REGISTRY,
            datetime_conversion=DatetimeConversion.DATETIME_AUTO,
            uuidRepresentation="standard",
            **auth,
            **conn.options,
        )
        yield client
    except PyMongoError as err:
        raise SourceError(_one_line(err, conn), conn.name) from None
    finally:
        if client is not None:
            client.close()


def _one_line(err: PyMongoError, conn: MongoConnection) -> str:
    """The driver's error in one line: what failed at host:port, without the server's topology dump."""
    text = str(err).split(", Timeout:")[0].split(", full error:")[0]
    return f"MongoDB at {conn.host}:{conn.port}: {type(err).__name__}: {text[:300]}"


class MongoAdapter(SourceAdapter):
    """The registry entry for `type: mongodb` connections."""

    name = "mongodb"
    types = ("mongodb",)

    def open(
        self, spec: SourceSpec, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path
    ) -> contract.Source:
        assert isinstance(connection, MongoConnection)
        return MongoSource(spec, connection, resolver)
