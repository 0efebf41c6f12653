"""A real HTTP JSON API for tests of the REST source: a stdlib server on 127.0.0.1 in a daemon thread.

Tests talk to it over real sockets, so what is checked is what httpx really sends and parses: headers,
query strings, Link headers, Retry-After, dropped connections. One `ApiServer` serves one collection
(`path`, default /v1/orders) of `records`, a dict by id the test mutates freely between reads:

    with ApiServer(count=25, style="cursor", token="s3cret") as api:
        api.update(3, status="shipped")      # bumps updated_at
        api.fail_next(2, status=503)         # the next two requests answer 503
        ... fetch_records(..., base_url=api.url ...)
        assert api.requests[0].query["cursor"] ...

Listing rules, whatever the style: records sorted by (updated_at, id); `?updated_since=<ISO>` keeps
those with updated_at strictly after it. The page styles and their query parameters:

- none: everything in one response;
- page_number: `page` (from 1) and `per_page`;
- offset: `offset` and `limit`;
- cursor: `cursor` (opaque, keyset: robust to inserts between pages), the next one at meta.next_cursor;
- next_url: the next page's full URL at links.next (`page`/`per_page` in it);
- link_header: `Link: <...>; rel="next"` (and rel="first"), `page`/`per_page` as above.

The body is `{"data": {"items": [...]}, "meta": {...}, "links": {...}}` for `envelope="data.items"`
(any dotted path works), or the bare list for `envelope="$"` (no room for a cursor or next link then).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

STYLES = ("none", "page_number", "offset", "cursor", "next_url", "link_header")
SEED_START = datetime(2024, 1, 1, tzinfo=UTC)
TIERS = ("gold", "silver", "bronze")
MAX_PAGE_SIZE = 1000


def iso(moment: datetime) -> str:
    """The server's timestamp format: ISO-8601 UTC with milliseconds and a Z (sorts as text too)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_record(record_id: int, updated_at: str) -> dict[str, Any]:
    """A record with nested fields, as order APIs return them: a customer object and a list of items."""
    return {
        "id": record_id,
        "updated_at": updated_at,
        "status": "open",
        "total": round(10 + record_id * 1.25, 2),
        "customer": {"name": f"customer {record_id}", "tier": TIERS[record_id % 3]},
        "items": [{"sku": f"SKU-{record_id:04d}-{n}", "qty": n} for n in range(1, 2 + record_id % 3)],
    }


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it. `headers` has lowercase names and no Authorization (the API key
    header, when one is required, is kept: tests check it arrived)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int


@dataclass(frozen=True)
class _Fault:
    status: int | None  # None: drop the connection without answering
    retry_after: str | None = None


@dataclass(frozen=True)
class _Static:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


class ApiServer:
    """A JSON API over a mutable collection, with auth, five page styles, faults and a request log."""

    def __init__(
        self,
        *,
        count: int = 0,
        style: str = "page_number",
        page_size: int = 10,
        path: str = "/v1/orders",
        envelope: str = "data.items",
        token: str | None = None,
        api_key: str | None = None,
        api_key_header: str = "X-API-Key",
        basic: tuple[str, str] | None = None,
        link_base: str | None = None,
    ) -> None:
        """`token` / `api_key` / `basic` (user, password): what every request must carry (401 otherwise).
        `link_base`: what next links start with: None = this server's URL, "" = relative links (path and
        query only), or another origin (e.g. http://localhost:<port>) to play a foreign host."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}")
        if envelope == "$" and style in ("cursor", "next_url"):
            raise ValueError(f"a bare list body has no room for a {style} link")
        self.style, self.page_size, self.path, self.envelope = style, page_size, path, envelope
        self.token, self.api_key, self.api_key_header, self.basic = token, api_key, api_key_header, basic
        self.link_base = link_base
        self.delay = 0.0  # seconds every request waits before it is answered
        self.records: dict[int, dict[str, Any]] = {}
        self.requests: list[LoggedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._static: dict[str, _Static] = {}
        self._lock = threading.Lock()
        self.seed(count)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.api = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._serve, name="api-server", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------ lifecycle

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)  # the default 0.5 s is what close() would wait

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ the data

    def seed(self, count: int) -> list[dict[str, Any]]:
        """`count` more records, ids after the highest, updated one minute apart from 2024-01-01."""
        start = max(self.records, default=0) + 1
        added = [make_record(i, iso(SEED_START + timedelta(minutes=i))) for i in range(start, start + count)]
        self.records.update((r["id"], r) for r in added)
        return added

    def insert(self, **fields: Any) -> dict[str, Any]:
        """A new record (the next id, updated_at now) with `fields` over the generated ones."""
        record_id = max(self.records, default=0) + 1
        record = {**make_record(record_id, self.tick()), **fields, "id": record_id}
        self.records[record_id] = record
        return record

    def update(self, record_id: int, **changes: Any) -> dict[str, Any]:
        """Change a record and bump its updated_at past every other, as an API's write would."""
        record = self.records[record_id]
        record.update(changes)
        record["updated_at"] = self.tick()
        return record

    def delete(self, record_id: int) -> None:
        del self.records[record_id]

    def tick(self) -> str:
        """A timestamp after every updated_at held (so a change is always newer) and not before now."""
        newest = max((r["updated_at"] for r in self.records.values()), default=None)
        now = datetime.now(UTC)
        if newest is not None:
            now = max(now, datetime.fromisoformat(newest) + timedelta(milliseconds=1))
        return iso(now)

    def newest(self) -> str | None:
        """The highest updated_at held (what an incremental read's watermark should reach)."""
        return max((r["updated_at"] for r in self.records.values()), default=None)

    # ------------------------------------------------------------------------------------ faults

    def fail_next(self, n: int, status: int = 503, retry_after: str | int | None = None) -> None:
        """The next `n` requests (any path) answer `status`, with Retry-After (seconds or an HTTP date)."""
        with self._lock:
            self._faults.extend([_Fault(status, None if retry_after is None else str(retry_after))] * n)

    def rate_limit_next(self, n: int, retry_after: str | int = 1) -> None:
        """The next `n` requests answer 429 Too Many Requests with `Retry-After`."""
        self.fail_next(n, 429, retry_after)

    def drop_next(self, n: int) -> None:
        """The next `n` requests get their connection closed without an answer (a connection reset)."""
        with self._lock:
            self._faults.extend([_Fault(None)] * n)

    def serve_static(
        self,
        path: str,
        body: bytes | str | Any,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer GET `path` with a fixed response: bytes/str as is, anything else as JSON."""
        raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self._static[path] = _Static(status, content_type, raw, tuple(headers))

    # ------------------------------------------------------------------------------------ answering

    def _answer(self, handler: _Handler) -> None:
        """Delay, fault, auth, then the static route or the collection; every request logged."""
        if self.delay:
            time.sleep(self.delay)
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.status is None:
            self._log(split.path, query, handler, 0)
            handler.close_connection = True  # nothing written: the client sees the connection end
            return
        status, body, headers = self._response(split.path, query, handler, fault)
        self._log(split.path, query, handler, status)
        _write(handler, status, body, headers)

    def _response(
        self, path: str, query: dict[str, str], handler: _Handler, fault: _Fault | None
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        json_type = [("Content-Type", "application/json")]
        if fault is not None:
            extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
            return fault.status or 503, _json({"error": "try again later"}), json_type + extra
        if not self._authorized(handler):
            return 401, _json({"error": "unauthorized"}), json_type + [("WWW-Authenticate", "Bearer")]
        if path in self._static:
            static = self._static[path]
            return static.status, static.body, [("Content-Type", static.content_type), *static.headers]
        if path != self.path:
            return 404, _json({"error": "not found"}), json_type
        try:
            body, headers = self._listing(path, query)
        except ValueError as err:
            return 400, _json({"error": str(err)}), json_type
        return 200, _json(body), json_type + headers

    def _authorized(self, handler: _Handler) -> bool:
        given = handler.headers.get("Authorization")
        if self.token is not None and given != f"Bearer {self.token}":
            return False
        if self.basic is not None and given != "Basic " + base64.b64encode(":".join(self.basic).encode()).decode():
            return False
        return self.api_key is None or handler.headers.get(self.api_key_header) == self.api_key

    def _log(self, path: str, query: dict[str, str], handler: _Handler, status: int) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items() if k.lower() != "authorization"}
        with self._lock:
            self.requests.append(LoggedRequest(path, query, headers, status))

    def _selected(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """The records the listing covers: filtered by updated_since, sorted by (updated_at, id)."""
        rows = list(self.records.values())
        if "updated_since" in query:
            since = _moment(query["updated_since"])
            rows = [r for r in rows if datetime.fromisoformat(r["updated_at"]) > since]
        return sorted(rows, key=lambda r: (r["updated_at"], r["id"]))

    def _listing(self, path: str, query: dict[str, str]) -> tuple[Any, list[tuple[str, str]]]:
        """One page of the collection in this server's style: the body and any extra headers."""
        rows = self._selected(query)
        meta: dict[str, Any] = {"total": len(rows)}
        links: dict[str, Any] = {}
        headers = [("X-Total-Count", str(len(rows)))]
        if self.style == "none":
            window = rows
        elif self.style == "offset":
            offset, limit = _int(query, "offset", 0), _size(query, "limit", self.page_size)
            window = rows[offset : offset + limit]
        elif self.style == "cursor":
            window, meta["next_cursor"] = self._keyset(rows, query)
        else:
            page, size = _int(query, "page", 1), _size(query, "per_page", self.page_size)
            window = rows[(page - 1) * size : page * size] if page >= 1 else []
            more = page * size < len(rows)
            following = self._link(path, {**query, "page": str(page + 1), "per_page": str(size)})
            links["next"] = following if more else None
            if self.style == "link_header":
                first = self._link(path, {**query, "page": "1", "per_page": str(size)})
                value = f'<{first}>; rel="first"' + (f', <{following}>; rel="next"' if more else "")
                headers.append(("Link", value))
        meta["count"] = len(window)
        return self._body(window, meta, links), headers

    def _keyset(self, rows: list[dict[str, Any]], query: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        """The page after the cursor's (updated_at, id) key, and the cursor of its last record if more follow."""
        size = _size(query, "limit", self.page_size)
        if query.get("cursor"):
            after = tuple(json.loads(base64.urlsafe_b64decode(query["cursor"].encode())))
            rows = [r for r in rows if (r["updated_at"], r["id"]) > after]
        window = rows[:size]
        if len(rows) <= size:
            return window, None
        last = window[-1]
        return window, base64.urlsafe_b64encode(json.dumps([last["updated_at"], last["id"]]).encode()).decode()

    def _link(self, path: str, query: dict[str, str]) -> str:
        base = self.url if self.link_base is None else self.link_base
        return f"{base}{path}?{urlencode(query)}"

    def _body(self, window: list[dict[str, Any]], meta: dict[str, Any], links: dict[str, Any]) -> Any:
        if self.envelope == "$":
            return window
        body: dict[str, Any] = {"meta": meta}
        if self.style == "next_url":
            body["links"] = links
        node = body
        *parents, leaf = self.envelope.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = window
        return body


class _Handler(BaseHTTPRequestHandler):
    """Hands every GET to the ApiServer; HTTP/1.1 so httpx keeps its connection alive as with real APIs."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # the stdlib's name
        self.server.api._answer(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `ApiServer.requests`
        pass


def _write(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def _size(query: dict[str, str], name: str, default: int) -> int:
    size = _int(query, name, default)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"{name} must be 1..{MAX_PAGE_SIZE}")
    return size


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("updated_since must be an ISO-8601 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
