"""The HTTP side of the REST source: one endpoint's pages read into a list of JSON records.

An API is read like any other source: finitely (`max_pages`, `max_seconds`), politely (429 and 5xx are
retried with backoff, `Retry-After` is honoured), and without ever handing a credential to anyone else:

- credentials travel in headers only, never in a URL (httpx logs every URL at INFO, and a URL ends up in
  proxies' and servers' access logs);
- redirects are not followed and a next-page link must stay on base_url's scheme, host and port, since
  httpx would send the Authorization header (and our API key header) wherever it is pointed;
- every message names the path and the page, never the URL (its query may hold a filter someone considers
  secret) nor a header, and is scrubbed of every credential value on the way out, as a last line.

Pagination styles are small functions from the page just read to the next page's URL (or None), so a new
style is one function and one line in `_PAGERS`.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from pipezone.core.sources.contract import SourceError
from pipezone.core.spec.connection import RestAuth, RestConnection
from pipezone.core.spec.endpoint import (
    CursorPagination,
    EndpointSpec,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
)
from pipezone.core.spec.secrets import MASK
from pipezone.core.spec.value_types import is_secret_reference

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# a lost or slow connection is worth another try; a malformed request or a proxy refusal is not
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
FIRST_BACKOFF = 0.5  # seconds before the first retry; doubles each time, plus up to this much jitter
STOP_MAX_PAGES = "max_pages"
STOP_MAX_SECONDS = "max_seconds"
_HEADER_SAFE = re.compile(r"^[\x20-\x7e]*$")  # what a header value may hold (no line breaks, ASCII)
_MISSING = object()

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Origin = tuple[str, str, int | None]


@dataclass(frozen=True)
class Fetch:
    """What one read of an endpoint brought back, and how it went."""

    records: list[dict[str, Any]]
    pages: int
    requests: int  # HTTP requests sent, retries included
    retries: int
    stopped: str | None  # "max_pages" / "max_seconds" when a bound ended the read with pages left
    server_now: datetime | None  # the last response's Date header (UTC): the API's own clock
    seconds: float

    def __repr__(self) -> str:
        """A summary: the records themselves would flood a log line."""
        return (
            f"Fetch({len(self.records)} records, pages={self.pages}, requests={self.requests}, "
            f"retries={self.retries}, stopped={self.stopped!r}, server_now={self.server_now!r}, "
            f"seconds={self.seconds:.3f})"
        )


class _Transient(Exception):
    """A response worth asking for again (429, 5xx), with the server's Retry-After in seconds if it said."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


class _OutOfTime(Exception):
    """`max_seconds` ran out before the next request could be sent."""


@dataclass(frozen=True)
class _Page:
    """One page as read: its number (from 1), the URL asked for, the response, its body and records."""

    number: int
    url: httpx.URL
    response: httpx.Response
    body: Any
    records: list[dict[str, Any]]

    @property
    def where(self) -> str:
        return _where(self.url, self.number)


def fetch_records(
    conn: RestConnection,
    endpoint: EndpointSpec,
    credentials: Mapping[str, str],
    since: str | None = None,
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> Fetch:
    """Every record of `endpoint` on `conn`, page after page, until the API says there are no more or a
    bound is reached.

    `credentials` maps `conn.secret_refs()` keys ("auth.token", "headers.X-Tenant", ...) to resolved values;
    `since` is the already formatted value for `endpoint.incremental_param` (sent only when both are set).
    `sleep` and `clock` are what retries wait with and what `max_seconds` is measured by.
    Raises SourceError (one line, no credential in it) when the API can't be read as specified.
    """
    started = clock()
    secrets = _secret_values(conn, credentials)
    try:
        with _client(conn, credentials) as client:
            reader = _Reader(client, endpoint, conn.auth.type, sleep, clock, started)
            return _read_pages(reader, conn, endpoint, since, started)
    except SourceError as err:
        raise SourceError(_scrub(err.cause, secrets)) from None


def _read_pages(
    reader: _Reader, conn: RestConnection, endpoint: EndpointSpec, since: str | None, started: float
) -> Fetch:
    """Follow the pages from the first URL until the pager says stop or a bound does."""
    url: httpx.URL | None = _first_url(conn, endpoint, since)
    origin = _origin(url)
    next_url = _PAGERS[endpoint.pagination.style]
    records: list[dict[str, Any]] = []
    pages, stopped, server_now, last = 0, None, None, None
    while url is not None:
        if pages >= endpoint.max_pages:
            stopped = STOP_MAX_PAGES
            break
        try:
            page = _page(pages + 1, url, reader.get(url, pages + 1), endpoint.records)
        except _OutOfTime:
            stopped = STOP_MAX_SECONDS
            break
        if page.records and page.records == last:  # a page parameter ignored, a cursor or link that stays put
            raise SourceError(f"{page.where}: the same records as page {pages} (are the page parameters ignored?)")
        records.extend(page.records)
        last = page.records
        pages, server_now = page.number, _server_date(page.response)
        log.debug("%s: %d records", page.where, len(page.records))
        url = next_url(endpoint.pagination, page, origin)
    seconds = reader.clock() - started
    bound = f" (stopped at {stopped})" if stopped else ""
    log.info("GET %s: %d records in %d pages, %.1f s%s", endpoint.path, len(records), pages, seconds, bound)
    return Fetch(records, pages, reader.requests, reader.retries, stopped, server_now, seconds)


# ------------------------------------------------------------------------------------------ the client


def _client(conn: RestConnection, credentials: Mapping[str, str]) -> httpx.Client:
    """One client per fetch: the connection's headers and auth, its timeout and TLS check, no redirects."""
    headers = {"Accept": "application/json"}
    for name, raw in conn.headers.items():
        headers[name] = _header_value(f"headers.{name}", _value(f"headers.{name}", raw, credentials))
    headers.update(_auth_headers(conn.auth, credentials))
    return httpx.Client(
        headers=headers,
        auth=_basic_auth(conn.auth, credentials),
        timeout=conn.timeout.total_seconds(),
        verify=conn.verify_tls,
        follow_redirects=False,
    )


def _auth_headers(auth: RestAuth, credentials: Mapping[str, str]) -> dict[str, str]:
    """Bearer and API key auth as headers (basic goes through httpx.BasicAuth)."""
    if auth.type == "bearer":
        return {"Authorization": "Bearer " + _header_value("auth.token", _value("auth.token", auth.token, credentials))}
    if auth.type == "api_key":
        return {auth.header: _header_value("auth.key", _value("auth.key", auth.key, credentials))}
    return {}


def _basic_auth(auth: RestAuth, credentials: Mapping[str, str]) -> httpx.BasicAuth | None:
    if auth.type != "basic":
        return None
    return httpx.BasicAuth(
        _value("auth.user", auth.user, credentials), _value("auth.password", auth.password, credentials)
    )


def _value(key: str, raw: str | None, credentials: Mapping[str, str]) -> str:
    """A setting's value: itself when literal, the caller's resolved value when it is a reference."""
    if raw is None or not is_secret_reference(raw):
        return raw or ""
    if key not in credentials:
        raise SourceError(f"{key} ({raw}) was not resolved before reading")
    return credentials[key]


def _header_value(key: str, value: str) -> str:
    """Refuse a value no header can carry here, before httpx or h11 quote it in their own error."""
    if not _HEADER_SAFE.fullmatch(value):
        raise SourceError(f"{key} holds a line break, control or non-ASCII character: not a valid header value")
    return value


def _secret_values(conn: RestConnection, credentials: Mapping[str, str]) -> set[str]:
    """Every credential as it could appear in text: resolved values and the basic auth header's base64."""
    values = {v for v in credentials.values() if len(v) >= 3}  # as Redactor: shorter would mangle text
    if conn.auth.type == "basic":
        pair = f"{_value('auth.user', conn.auth.user, credentials)}:{credentials.get('auth.password', '')}"
        values.add(base64.b64encode(pair.encode()).decode())
    return values


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


# ------------------------------------------------------------------------------------------ requests


class _Reader:
    """One fetch's HTTP conversation: each page's GET with retries, backoff and the time bound."""

    def __init__(
        self, client: httpx.Client, endpoint: EndpointSpec, auth_type: str, sleep: Sleep, clock: Clock, started: float
    ) -> None:
        self.client = client
        self.clock = clock
        self.auth_type = auth_type
        self.deadline = started + endpoint.max_seconds.total_seconds()
        self.attempts = endpoint.retries + 1
        self.max_wait = endpoint.max_retry_wait.total_seconds()
        self.backoff = wait_exponential_jitter(multiplier=FIRST_BACKOFF, max=self.max_wait, jitter=FIRST_BACKOFF)
        self.requests = 0
        self.retries = 0
        self.retrying = Retrying(
            sleep=sleep,
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception_type((_Transient, *TRANSIENT_ERRORS)),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def get(self, url: httpx.URL, page: int) -> httpx.Response:
        """The page's 2xx response; SourceError once retries are spent or at once on any other answer."""
        try:
            return self.retrying(self._attempt, url, page)
        except _Transient as err:
            raise SourceError(
                f"GET {url.path} answered {err.status} after {self.attempts} attempts (page {page})"
            ) from None
        except TRANSIENT_ERRORS as err:
            raise SourceError(
                f"GET {url.path} failed after {self.attempts} attempts: {_describe(err)} (page {page})"
            ) from None
        except httpx.HTTPError as err:
            raise SourceError(f"GET {url.path} failed: {type(err).__name__} (page {page})") from None

    def _attempt(self, url: httpx.URL, page: int) -> httpx.Response:
        if self.clock() >= self.deadline:
            raise _OutOfTime
        self.requests += 1
        response = self.client.get(url)
        if response.status_code in RETRY_STATUSES:
            raise _Transient(response.status_code, _retry_after(response))
        if not 200 <= response.status_code < 300:
            raise SourceError(
                f"GET {url.path} answered {response.status_code}{self._why(response.status_code)} (page {page})"
            )
        return response

    def _why(self, status: int) -> str:
        if status in (401, 403):
            return ": the credentials were refused" if self.auth_type != "none" else ": the API wants credentials"
        if 300 <= status < 400:
            return ", a redirect, not followed (credentials go to base_url's host only)"
        return ""

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server said (up to max_retry_wait), else exponential backoff with jitter;
        never past max_seconds, so a long Retry-After ends the read as `stopped` instead of overrunning."""
        err = state.outcome.exception() if state.outcome else None
        after = err.retry_after if isinstance(err, _Transient) else None
        wait = min(after, self.max_wait) if after is not None else self.backoff(state)
        return max(0.0, min(wait, self.deadline - self.clock()))

    def _before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        url, page = state.args
        err = state.outcome.exception() if state.outcome else None
        what = f"answered {err.status}" if isinstance(err, _Transient) else f"failed: {_describe(err)}"
        wait = state.next_action.sleep if state.next_action else 0.0
        where = f"GET {url.path} {what} (page {page}, attempt {state.attempt_number} of {self.attempts})"
        log.warning("%s; retrying in %.1f s", where, wait)


def _describe(err: BaseException | None) -> str:
    """A lost connection's type and the OS's words (no URL or header is in them)."""
    detail = str(err).strip()
    return f"{type(err).__name__} ({detail[:200]})" if detail else type(err).__name__


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date measured against the server's own Date."""
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = _http_date(value)
    now = _server_date(response) or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds()) if when else None


def _server_date(response: httpx.Response) -> datetime | None:
    return _http_date(response.headers.get("date", ""))


def _http_date(value: str) -> datetime | None:
    """An RFC 9110 date as an aware UTC datetime; None when absent or unreadable (never worth failing on)."""
    try:
        return _utc(parsedate_to_datetime(value)) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ------------------------------------------------------------------------------------------ bodies


def _where(url: httpx.URL, number: int) -> str:
    """How a message names a page: method, path and number, never the query (it may hold anything)."""
    return f"GET {url.path}, page {number}"


def _page(number: int, url: httpx.URL, response: httpx.Response, selector: str) -> _Page:
    """The response as a page: its JSON body and the records the selector finds there."""
    where = _where(url, number)
    body = _json(response, where)
    return _Page(number, url, response, body, _records(body, selector, where))


def _json(response: httpx.Response, where: str) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")[:100]
        raise SourceError(f"{where}: the body is not JSON ({kind})") from None
    except RecursionError:  # json's parser stops at about 1,000 levels of nesting
        raise SourceError(f"{where}: the JSON body is nested too deep to read") from None


def _records(body: Any, selector: str, where: str) -> list[dict[str, Any]]:
    """The list at `selector`, every item a JSON object (a row of the lake)."""
    found = _at(body, selector)
    if found is _MISSING:
        raise SourceError(f"{where}: no '{selector}' in the body (the endpoint's records selector)")
    if not isinstance(found, list):
        raise SourceError(f"{where}: '{selector}' holds {_kind(found)}, not a list of records")
    for index, record in enumerate(found, start=1):
        if not isinstance(record, dict):
            raise SourceError(f"{where}: record {index} at '{selector}' is {_kind(record)}, not a JSON object")
    return found


def _at(body: Any, path: str) -> Any:
    """The value at a dotted path (`$`: the body itself), or _MISSING."""
    if path == "$":
        return body
    value = body
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _kind(value: Any) -> str:
    """A JSON value's type in JSON's words (never the value: it might be anything)."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


# ------------------------------------------------------------------------------------------ pagination


def _first_url(conn: RestConnection, endpoint: EndpointSpec, since: str | None) -> httpx.URL:
    """base_url + path, the endpoint's params, the incremental bound and the first page's own params."""
    params: dict[str, Any] = dict(endpoint.params)
    if since is not None and endpoint.incremental_param:
        params[endpoint.incremental_param] = since
    pagination = endpoint.pagination
    if isinstance(pagination, PageNumberPagination):
        params[pagination.page_param] = pagination.start
        if pagination.size_param and pagination.page_size:
            params[pagination.size_param] = pagination.page_size
    elif isinstance(pagination, OffsetPagination):
        params.update({pagination.offset_param: 0, pagination.limit_param: pagination.limit})
    return httpx.URL(conn.base_url.rstrip("/") + endpoint.path).copy_merge_params(params)


def _no_next(pagination: Any, page: _Page, origin: Origin) -> httpx.URL | None:
    return None


def _next_page_number(pagination: PageNumberPagination, page: _Page, origin: Origin) -> httpx.URL | None:
    """The next page number, unless this page was empty or short of a full page_size."""
    size = pagination.page_size
    if not page.records or (size is not None and len(page.records) < size):
        return None
    return page.url.copy_set_param(pagination.page_param, int(page.url.params[pagination.page_param]) + 1)


def _next_offset(pagination: OffsetPagination, page: _Page, origin: Origin) -> httpx.URL | None:
    """The offset after this page's records, unless it held fewer than `limit` (the last one)."""
    if len(page.records) < pagination.limit:
        return None
    offset = int(page.url.params[pagination.offset_param]) + len(page.records)
    return page.url.copy_set_param(pagination.offset_param, offset)


def _next_cursor(pagination: CursorPagination, page: _Page, origin: Origin) -> httpx.URL | None:
    """The body's token sent back as `cursor_param`; missing, null or empty ends the read."""
    token = _at(page.body, pagination.next_path)
    if token is _MISSING or token is None or token == "":
        return None
    if isinstance(token, dict | list | bool):
        raise SourceError(f"{page.where}: '{pagination.next_path}' holds {_kind(token)}, not a cursor token")
    return page.url.copy_set_param(pagination.cursor_param, str(token))


def _next_body_url(pagination: NextUrlPagination, page: _Page, origin: Origin) -> httpx.URL | None:
    """The next page's URL as the body gives it; missing, null or empty ends the read."""
    link = _at(page.body, pagination.next_path)
    if link is _MISSING or link is None or link == "":
        return None
    if not isinstance(link, str):
        raise SourceError(f"{page.where}: '{pagination.next_path}' holds {_kind(link)}, not a URL")
    return _follow(page, link, origin)


def _next_link_header(pagination: Any, page: _Page, origin: Origin) -> httpx.URL | None:
    """RFC 8288 `Link: <...>; rel="next"`; no such link ends the read."""
    link = page.response.links.get("next", {}).get("url")
    return _follow(page, link, origin) if link else None


def _follow(page: _Page, link: str, origin: Origin) -> httpx.URL:
    """A next-page link resolved against this page's URL, if it stays where the credentials may go."""
    try:
        url = page.url.join(link)
    except httpx.InvalidURL:
        raise SourceError(f"{page.where}: the next-page link is not a URL") from None
    if _origin(url) != origin:
        there = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
        raise SourceError(
            f"{page.where}: the next page is on another host ({there}); credentials go to base_url's host only"
        )
    return url


def _origin(url: httpx.URL) -> Origin:
    """Scheme, host and port (httpx leaves a scheme's default port out, so :443 and no port compare equal)."""
    return url.scheme, url.host, url.port


_PAGERS: dict[str, Callable[[Any, _Page, Origin], httpx.URL | None]] = {
    "none": _no_next,
    "page_number": _next_page_number,
    "offset": _next_offset,
    "cursor": _next_cursor,
    "next_url": _next_body_url,
    "link_header": _next_link_header,
}
