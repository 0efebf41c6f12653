"""A REST endpoint as a flow's source: path, query parameters, where the records are, how pages follow.

The connection (spec/connection.RestConnection) holds the base URL and the credentials, by reference only;
the flow names the endpoint. A page and time bound keeps one run finite whatever the API does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field

from pipezone.core.spec.value_types import SpecModel, bounded_duration, patterned

PARAM_PATTERN = r"^[A-Za-z0-9_.\-\[\]]{1,128}$"
# a dotted path into a JSON body: `data`, `data.items`, `meta.next_cursor`; `$` is the body itself
RECORD_PATH_PATTERN = r"^(\$|[A-Za-z0-9_\-]{1,128}(\.[A-Za-z0-9_\-]{1,128}){0,15})$"
PATH_PATTERN = r"^/[A-Za-z0-9_.~\-/%:@!$&'()*+,;=]{0,1023}$"
ParamName = patterned(PARAM_PATTERN, "a query parameter name: letters, digits, _ . - [ ]")
RecordPath = patterned(RECORD_PATH_PATTERN, "a dotted path into the JSON body (e.g. data.items), or $ for the body")
UrlPath = patterned(PATH_PATTERN, "a URL path starting with / (no query string: use params; no spaces)")
ParamValue = str | int | float | bool


class NoPagination(SpecModel):
    """One request returns every record."""

    style: Literal["none"]


class PageNumberPagination(SpecModel):
    """`?page=1`, `?page=2`, ... until a page returns fewer records than `page_size` (or none)."""

    style: Literal["page_number"]
    page_param: ParamName = "page"
    start: int = Field(default=1, ge=0, le=1_000_000)
    size_param: ParamName | None = Field(default=None, description="e.g. per_page; sent with page_size.")
    page_size: int | None = Field(default=None, ge=1, le=100_000, description="Records a full page holds.")


class OffsetPagination(SpecModel):
    """`?offset=0&limit=100`, `?offset=100&limit=100`, ... until a page returns fewer than `limit` records."""

    style: Literal["offset"]
    offset_param: ParamName = "offset"
    limit_param: ParamName = "limit"
    limit: int = Field(default=100, ge=1, le=100_000)


class CursorPagination(SpecModel):
    """The body names the next page's token (`next_path`), sent back as `cursor_param`; ends when it is empty."""

    style: Literal["cursor"]
    next_path: RecordPath = Field(description="Where the next token is in the body, e.g. meta.next_cursor.")
    cursor_param: ParamName = "cursor"


class NextUrlPagination(SpecModel):
    """The body holds the next page's full URL (`next_path`, e.g. `links.next`); ends when it is empty."""

    style: Literal["next_url"]
    next_path: RecordPath


class LinkHeaderPagination(SpecModel):
    """RFC 8288 `Link: <...>; rel="next"` response headers (GitHub's style); ends without a next link."""

    style: Literal["link_header"]


Pagination = Annotated[
    NoPagination
    | PageNumberPagination
    | OffsetPagination
    | CursorPagination
    | NextUrlPagination
    | LinkHeaderPagination,
    Field(discriminator="style"),
]


class EndpointSpec(SpecModel):
    """One GET endpoint whose JSON responses hold the flow's records."""

    path: UrlPath = Field(description="Appended to the connection's base_url, e.g. /v1/orders.")
    params: dict[ParamName, ParamValue] = Field(  # type: ignore[valid-type]
        default_factory=dict, max_length=100, description="Query parameters sent with every request."
    )
    records: RecordPath = Field(description="Where the records are in the body: data.items, or $ for a list body.")
    pagination: Pagination = Field(default_factory=lambda: NoPagination(style="none"))
    incremental_param: ParamName | None = Field(  # type: ignore[valid-type]
        default=None,
        description="Query parameter that gets the window's lower bound (watermark minus lookback), so the API "
        "returns only newer records; without it every run reads every page and keeps the newer ones.",
    )
    incremental_format: Literal["iso", "epoch_seconds", "epoch_millis"] = Field(
        default="iso", description="How a time watermark is written into incremental_param."
    )
    max_pages: int = Field(default=1000, ge=1, le=1_000_000, description="At most this many pages per run.")
    max_seconds: bounded_duration(timedelta(hours=6), timedelta(seconds=1)) = Field(  # type: ignore[valid-type]
        default=timedelta(minutes=10), description="At most this long per run."
    )
    retries: int = Field(default=5, ge=0, le=20, description="Retries of a request on 429, 5xx or a lost connection.")
    max_retry_wait: bounded_duration(timedelta(hours=1), timedelta(0)) = Field(  # type: ignore[valid-type]
        default=timedelta(seconds=60), description="Longest single wait (Retry-After is honoured up to this)."
    )
