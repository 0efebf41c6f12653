"""A REST endpoint behind the source contract: JSON records read page by page (rest/pages.py), typed like
any documents (sources/documents/), windowed on the flow's cursor field.

An API has no "newest cursor" query, so the window is found by reading: `cursor_bounds` fetches the
endpoint once, from the window's lower bound when the endpoint takes an `incremental_param` (else every
page), and its newest cursor value is the window's upper bound; `read` then keeps the fetched records of
the window, so the API is read once per run. The clock that caps the window (`safety_buffer`) is the API's
own `Date` header.

A page or time bound that ends a read early is safe only when records come in cursor order: the window
then ends before the last cursor value read (its ties may continue on the next page) and the next run goes
on from there. Otherwise, and for reads that must be whole (a flow without a cursor, a key snapshot for
delete detection), an early end is an error: a partial read would move the watermark past unread
records, or mark unread keys deleted.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipezone.core.sources import contract
from pipezone.core.sources.contract import ArrowRead, CursorBounds, CursorValue, ReadPlan, SourceAdapter, SourceError
from pipezone.core.sources.documents import frames
from pipezone.core.sources.documents.lake_fit import typed_records
from pipezone.core.sources.rest.pages import Fetch, fetch_records
from pipezone.core.spec.connection import ConnectionSpec, RestConnection
from pipezone.core.spec.cursor_values import later, normalize
from pipezone.core.spec.documents import DocumentOptions
from pipezone.core.spec.endpoint import EndpointSpec
from pipezone.core.spec.secrets import SecretResolver
from pipezone.core.spec.source import SourceSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


class RestSource(contract.Source):
    """One flow's endpoint on a REST connection."""

    reader = "HTTP"
    supports = frozenset({"full", "window", "backfill", "key_snapshot"})

    def __init__(self, spec: SourceSpec, connection: RestConnection, resolver: SecretResolver) -> None:
        super().__init__(spec, connection)
        assert spec.endpoint is not None
        self.rest = connection
        self.endpoint: EndpointSpec = spec.endpoint
        self.resolver = resolver
        self.options = spec.documents or DocumentOptions()
        self.lake: pa.Schema | None = None
        self._fetches: dict[str | None, Fetch] = {}

    # ------------------------------------------------------------------ the contract

    def type_like(self, schema: StructType | None) -> None:
        self.lake = frames.arrow_fields(schema)

    def describe(self, spark: SparkSession, plan: ReadPlan | None = None) -> StructType:
        sample = self._fetch(None, first_page=True).records if plan is None else self._records(plan)
        return frames.spark_schema(self._typed(sample, keys_only=False))

    def cursor_bounds(self, spark: SparkSession, after: CursorValue | None = None) -> CursorBounds:
        fetch = self._fetch(self._since(after))
        values = [self._cursor_of(r) for r in fetch.records]
        present = [v for v in values if v is not None]
        now = fetch.server_now or datetime.now(UTC)
        if not present:
            return CursorBounds(hi=None, now=now)
        if fetch.stopped is None:
            return CursorBounds(hi=max(present), now=now)
        if any(later(a, b) for a, b in zip(present, present[1:], strict=False)):
            raise SourceError(self._cut_short(fetch, "and its records are not in cursor order"), self.name)
        last = present[-1]
        before = [v for v in present if later(last, v)]
        if not before:
            raise SourceError(self._cut_short(fetch, f"inside one cursor value ({last})"), self.name)
        return CursorBounds(hi=max(before), now=now)  # the last value's ties may go on past the bound

    def read(self, spark: SparkSession, plan: ReadPlan) -> DataFrame:
        self.check_plan(plan)
        keys_only = plan.kind == "key_snapshot"
        table = self._typed(self._records(plan), keys_only)
        if keys_only:
            return frames.to_frame(spark, table, lambda: frames.keys_schema(self.spec.primary_key, self.lake))
        first_page = lambda: self._fetch(None, first_page=True).records  # noqa: E731
        return frames.to_frame(spark, table, lambda: frames.spark_schema(self._typed(first_page(), False)))

    def read_arrow(self, spark: SparkSession, plan: ReadPlan, schema: StructType) -> ArrowRead | None:
        return frames.as_arrow_read(self._typed(self._records(plan), keys_only=False))

    def count(self, spark: SparkSession) -> int:
        return len(self._whole().records)

    # ------------------------------------------------------------------ reading

    def _records(self, plan: ReadPlan) -> list[dict[str, Any]]:
        """The plan's records: a window's from the fetch its bounds came from, the rest from a whole read."""
        if plan.kind in ("full", "key_snapshot") or plan.is_whole:
            return self._whole().records
        if plan.kind == "backfill":
            return [r for r in self._whole().records if self._in(r, plan.lower, plan.upper, closed_low=True)]
        fetch = self._fetch(self._since(plan.lower))
        return [r for r in fetch.records if self._in(r, plan.lower, plan.upper, closed_low=False)]

    def _whole(self) -> Fetch:
        fetch = self._fetch(None)
        if fetch.stopped is not None:
            raise SourceError(self._cut_short(fetch, "and this read must see every record"), self.name)
        return fetch

    def _fetch(self, since: str | None, first_page: bool = False) -> Fetch:
        """The endpoint read from `since` (None: from the start), once per run and lower bound."""
        key = "first page" if first_page else since
        if key not in self._fetches:
            endpoint = self.endpoint.model_copy(update={"max_pages": 1}) if first_page else self.endpoint
            credentials = {k: self.resolver.resolve(ref).reveal() for k, ref in self.rest.secret_refs().items()}
            self._fetches[key] = fetch_records(self.rest, endpoint, credentials, since)
        return self._fetches[key]

    def _typed(self, records: list[dict[str, Any]], keys_only: bool) -> pa.Table:
        if keys_only:
            keys = self.spec.primary_key
            records = [{k: r.get(k) for k in keys} for r in records]
        table = typed_records(records, self.options.nested, None if keys_only else self.lake)
        missing = [k for k in self.spec.primary_key if k not in table.column_names]
        if table.num_rows and missing:
            raise SourceError(f"records have no primary key field {', '.join(missing)}", self.name)
        return table

    # ------------------------------------------------------------------ the cursor

    def _cursor_of(self, record: dict[str, Any]) -> CursorValue | None:
        if self.spec.incremental is None:
            raise SourceError("the flow has no incremental cursor", self.name)
        value = record.get(self.spec.incremental.cursor)
        if value is not None and not isinstance(value, int | float | str) or isinstance(value, bool):
            raise SourceError(f"cursor field {self.spec.incremental.cursor} holds a {type(value).__name__}", self.name)
        return normalize(value)

    def _in(self, record: dict[str, Any], lower: Any, upper: Any, *, closed_low: bool) -> bool:
        value = self._cursor_of(record)
        if value is None:
            return False
        above = lower is None or later(value, lower) or (closed_low and value == lower)
        below = upper is None or (later(upper, value) if closed_low else not later(value, upper))
        return above and below

    def _since(self, lower: CursorValue | None) -> str | None:
        """The window's lower bound as the endpoint's incremental parameter wants it (None: not sent)."""
        if lower is None or self.endpoint.incremental_param is None:
            return None
        style = self.endpoint.incremental_format
        if isinstance(lower, datetime):
            moment = lower.astimezone(UTC)
            if style == "epoch_seconds":
                return str(int(moment.timestamp()))
            if style == "epoch_millis":
                return str(int(moment.timestamp() * 1000))
            return moment.isoformat().replace("+00:00", "Z")
        if isinstance(lower, date):
            return lower.isoformat()
        return str(lower) if isinstance(lower, int | float | Decimal | str) else None

    def _cut_short(self, fetch: Fetch, why: str) -> str:
        limit = self.endpoint.max_pages if fetch.stopped == "max_pages" else self.endpoint.max_seconds
        return f"GET {self.endpoint.path} stopped at {fetch.stopped} ({limit}) with pages left {why}; raise the bound"


class RestAdapter(SourceAdapter):
    """The registry entry for `type: rest` connections."""

    name = "rest"
    types = ("rest",)

    def open(
        self, spec: SourceSpec, connection: ConnectionSpec, resolver: SecretResolver, project_root: Path
    ) -> contract.Source:
        assert isinstance(connection, RestConnection)
        return RestSource(spec, connection, resolver)
