"""fetch_records against a real HTTP server (tests/core/sources/rest/api_server.py) over real sockets.

What a REST read must get right: every record exactly once whatever the page style, the record selector,
the three kinds of auth, retries that honour the server (Retry-After) and give up with one clear line,
bounds that end a read early, next links that must not carry credentials to another host, and never a
credential in an error, a log line (httpx's own included) or a returned value.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import pytest
from api_server import SEED_START, ApiServer, iso

from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.rest.pages import Fetch, fetch_records
from pipezone.core.spec.connection import RestConnection
from pipezone.core.spec.endpoint import EndpointSpec

TOKEN = "tok-4f8a1c9e77-bearer-secret"
API_KEY = "key-7d2b90aa-api-secret"
PASSWORD = "pw-93e1c0-basic-secret"
HEADER_SECRET = "hdr-5e6f-header-secret"
BEARER = {"type": "bearer", "token": "${env:SHOP_TOKEN}"}
PATH = "/v1/orders"
PAGES_OF_10 = {"style": "page_number", "size_param": "per_page", "page_size": 10}  # the `api` fixture's style

STYLE_CASES = [  # (server style, pagination, pages read for 25 records with 10 a page)
    ("none", {"style": "none"}, 1),
    ("page_number", {"style": "page_number", "size_param": "per_page", "page_size": 10}, 3),
    ("page_number", {"style": "page_number"}, 4),  # no page_size: ends at the empty 4th page
    ("offset", {"style": "offset", "limit": 10}, 3),
    ("cursor", {"style": "cursor", "next_path": "meta.next_cursor"}, 3),
    ("next_url", {"style": "next_url", "next_path": "links.next"}, 3),
    ("link_header", {"style": "link_header"}, 3),
]
LINK_STYLES = [(style, pagination) for style, pagination, _ in STYLE_CASES[-2:]]  # the ones that follow links


def connection(api: ApiServer | str, auth: dict[str, Any] | None = None, **fields: Any) -> RestConnection:
    base_url = api if isinstance(api, str) else api.url
    return RestConnection.model_validate(
        {"name": "shop_api", "type": "rest", "base_url": base_url, "auth": auth or {"type": "none"}, **fields}
    )


def endpoint(**fields: Any) -> EndpointSpec:
    return EndpointSpec.model_validate({"path": PATH, "records": "data.items", **fields})


def ids(fetch: Fetch) -> list[int]:
    return [r["id"] for r in fetch.records]


def error_of(call: Callable[[], object]) -> str:
    """The message of the SourceError `call` raises (it must raise one)."""
    with pytest.raises(SourceError) as raised:
        call()
    return str(raised.value)


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer(count=25, page_size=10) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """Pass `sleep=sleeps.append`: the waits a fetch asked for, without waiting."""
    return []


# ------------------------------------------------------------------------------------------ pagination


@pytest.mark.parametrize(("style", "pagination", "pages"), STYLE_CASES, ids=lambda c: str(c))
def test_every_style_reads_every_record_exactly_once(style: str, pagination: dict[str, Any], pages: int) -> None:
    with ApiServer(count=25, style=style, page_size=10) as api:
        fetch = fetch_records(connection(api), endpoint(pagination=pagination), {})
    assert ids(fetch) == list(range(1, 26))
    assert (fetch.pages, fetch.requests, fetch.retries, fetch.stopped) == (pages, pages, 0, None)
    assert fetch.records[0]["customer"] == {"name": "customer 1", "tier": "silver"}


def test_offset_params_count_up() -> None:
    with ApiServer(count=25, style="offset") as api:
        fetch_records(connection(api), endpoint(pagination={"style": "offset", "limit": 10}), {})
    assert [(r.query["offset"], r.query["limit"]) for r in api.requests] == [("0", "10"), ("10", "10"), ("20", "10")]


def test_page_params_count_up_beside_the_endpoint_params(api: ApiServer) -> None:
    pagination = {"style": "page_number", "page_param": "page", "start": 1, "size_param": "per_page", "page_size": 10}
    fetch_records(connection(api), endpoint(pagination=pagination, params={"status": "open"}), {})
    assert [r.query for r in api.requests] == [{"status": "open", "page": str(n), "per_page": "10"} for n in (1, 2, 3)]


@pytest.mark.parametrize(("style", "pagination"), LINK_STYLES)
def test_relative_next_links_resolve_against_the_current_url(style: str, pagination: dict[str, Any]) -> None:
    with ApiServer(count=25, style=style, link_base="") as api:
        fetch = fetch_records(connection(api), endpoint(pagination=pagination), {})
    assert ids(fetch) == list(range(1, 26))
    assert fetch.pages == 3


@pytest.mark.parametrize("other", ["http://localhost:{port}", "https://127.0.0.1:{port}", "http://127.0.0.1:1"])
@pytest.mark.parametrize(("style", "pagination"), LINK_STYLES)
def test_a_next_link_to_another_host_is_refused(style: str, pagination: dict[str, Any], other: str) -> None:
    with ApiServer(count=25, style=style, token=TOKEN) as api:
        api.link_base = other.format(port=api.url.rsplit(":", 1)[1])
        with pytest.raises(SourceError) as raised:
            fetch_records(connection(api, BEARER), endpoint(pagination=pagination), {"auth.token": TOKEN})
    message = str(raised.value)
    assert message.startswith(f"GET {PATH}, page 1: the next page is on another host (")
    assert "credentials go to base_url's host only" in message
    assert len(api.requests) == 1  # nothing was sent there (localhost would have reached this server)


def test_an_api_that_ignores_the_page_parameters_is_stopped(api: ApiServer) -> None:
    with pytest.raises(SourceError) as raised:
        fetch_records(connection(api), endpoint(pagination={"style": "offset", "limit": 10}), {})
    assert str(raised.value) == f"GET {PATH}, page 2: the same records as page 1 (are the page parameters ignored?)"
    assert len(api.requests) == 2


def test_a_cursor_that_does_not_move_is_a_loop(api: ApiServer) -> None:
    api.serve_static("/v1/stuck", {"data": {"items": [{"id": 1}]}, "meta": {"next_cursor": "abc"}})
    pagination = {"style": "cursor", "next_path": "meta.next_cursor"}
    with pytest.raises(SourceError, match=r"^GET /v1/stuck, page 2: the same records as page 1 \(are the page"):
        fetch_records(connection(api), endpoint(path="/v1/stuck", pagination=pagination), {})


# ------------------------------------------------------------------------------------------ record selector


def test_a_nested_record_selector() -> None:
    with ApiServer(count=5, envelope="result.orders.rows", style="none") as api:
        fetch = fetch_records(connection(api), endpoint(records="result.orders.rows"), {})
    assert ids(fetch) == [1, 2, 3, 4, 5]
    assert fetch.records[1]["items"] == [
        {"sku": "SKU-0002-1", "qty": 1},
        {"sku": "SKU-0002-2", "qty": 2},
        {"sku": "SKU-0002-3", "qty": 3},
    ]


def test_dollar_selects_a_list_body() -> None:
    with ApiServer(count=12, envelope="$", page_size=5) as api:
        pagination = {"style": "page_number", "size_param": "per_page", "page_size": 5}
        fetch = fetch_records(connection(api), endpoint(records="$", pagination=pagination), {})
    assert ids(fetch) == list(range(1, 13))
    assert fetch.pages == 3


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        ("data.nope", "no 'data.nope' in the body"),
        ("meta", "'meta' holds an object, not a list of records"),
        ("meta.total", "'meta.total' holds a number, not a list of records"),
        ("$", "'$' holds an object, not a list of records"),
    ],
)
def test_a_selector_that_finds_no_list(api: ApiServer, records: str, problem: str) -> None:
    with pytest.raises(SourceError) as raised:
        fetch_records(connection(api), endpoint(records=records), {})
    assert str(raised.value).startswith(f"GET {PATH}, page 1: {problem}")


def test_a_record_that_is_not_an_object(api: ApiServer) -> None:
    api.serve_static("/v1/numbers", [{"id": 1}, 2, 3])
    with pytest.raises(
        SourceError, match=r"^GET /v1/numbers, page 1: record 2 at '\$' is a number, not a JSON object$"
    ):
        fetch_records(connection(api), endpoint(path="/v1/numbers", records="$"), {})


def test_a_body_that_is_not_json(api: ApiServer) -> None:
    api.serve_static("/v1/html", "<html>maintenance</html>", content_type="text/html; charset=utf-8")
    with pytest.raises(SourceError, match=r"^GET /v1/html, page 1: the body is not JSON \(text/html; charset=utf-8\)$"):
        fetch_records(connection(api), endpoint(path="/v1/html"), {})


# ------------------------------------------------------------------------------------------ auth


def test_bearer_auth() -> None:
    with ApiServer(count=3, token=TOKEN) as api:
        fetch = fetch_records(connection(api, BEARER), endpoint(), {"auth.token": TOKEN})
    assert ids(fetch) == [1, 2, 3]
    assert [r.status for r in api.requests] == [200]


def test_api_key_auth_in_the_named_header() -> None:
    auth = {"type": "api_key", "header": "X-Shop-Key", "key": "${env:SHOP_KEY}"}
    with ApiServer(count=3, api_key=API_KEY, api_key_header="X-Shop-Key") as api:
        fetch = fetch_records(connection(api, auth), endpoint(), {"auth.key": API_KEY})
    assert ids(fetch) == [1, 2, 3]
    assert api.requests[0].headers["x-shop-key"] == API_KEY


def test_basic_auth() -> None:
    auth = {"type": "basic", "user": "reader", "password": "${env:SHOP_PASSWORD}"}
    with ApiServer(count=3, basic=("reader", PASSWORD)) as api:
        fetch = fetch_records(connection(api, auth), endpoint(), {"auth.password": PASSWORD})
    assert ids(fetch) == [1, 2, 3]


def test_connection_headers_are_sent_references_resolved(api: ApiServer) -> None:
    conn = connection(api, headers={"X-Tenant": "acme", "X-Signature": "${env:SIGNATURE}"})
    fetch_records(conn, endpoint(), {"headers.X-Signature": HEADER_SECRET})
    sent = api.requests[0].headers
    assert (sent["x-tenant"], sent["x-signature"], sent["accept"]) == ("acme", HEADER_SECRET, "application/json")


def test_no_credentials_401_fails_at_once() -> None:
    with ApiServer(count=3, token=TOKEN) as api, pytest.raises(SourceError) as raised:
        fetch_records(connection(api), endpoint(), {})
    assert str(raised.value) == f"GET {PATH} answered 401: the API wants credentials (page 1)"
    assert len(api.requests) == 1


def test_a_refused_token_fails_at_once_without_quoting_it() -> None:
    wrong = "tok-wrong-but-still-secret"
    with ApiServer(count=3, token=TOKEN) as api, pytest.raises(SourceError) as raised:
        fetch_records(connection(api, BEARER), endpoint(), {"auth.token": wrong})
    assert str(raised.value) == f"GET {PATH} answered 401: the credentials were refused (page 1)"
    assert wrong not in str(raised.value)
    assert len(api.requests) == 1


def test_an_unresolved_credential(api: ApiServer) -> None:
    with pytest.raises(SourceError, match=r"^auth.token \(\$\{env:SHOP_TOKEN\}\) was not resolved before reading$"):
        fetch_records(connection(api, BEARER), endpoint(), {})


def test_a_credential_no_header_can_carry_is_refused_unquoted(api: ApiServer) -> None:
    bad = "tok-line\r\nX-Injected: 1"
    with pytest.raises(SourceError) as raised:
        fetch_records(connection(api, BEARER), endpoint(), {"auth.token": bad})
    assert (
        str(raised.value) == "auth.token holds a line break, control or non-ASCII character: not a valid header value"
    )
    assert api.requests == []


@pytest.mark.parametrize(("status", "why"), [(404, ""), (400, ""), (501, ""), (403, ": the API wants credentials")])
def test_other_errors_fail_at_once(api: ApiServer, sleeps: list[float], status: int, why: str) -> None:
    api.serve_static("/v1/broken", {"error": "no"}, status=status)
    with pytest.raises(SourceError) as raised:
        fetch_records(connection(api), endpoint(path="/v1/broken"), {}, sleep=sleeps.append)
    assert str(raised.value) == f"GET /v1/broken answered {status}{why} (page 1)"
    assert (len(api.requests), sleeps) == (1, [])


def test_a_redirect_is_not_followed(api: ApiServer) -> None:
    api.serve_static(
        "/v1/moved", b"", status=302, headers=[("Location", f"http://localhost:{api.url.rsplit(':', 1)[1]}{PATH}")]
    )
    with pytest.raises(SourceError) as raised:
        fetch_records(connection(api), endpoint(path="/v1/moved"), {})
    assert (
        str(raised.value)
        == "GET /v1/moved answered 302, a redirect, not followed (credentials go to base_url's host only) (page 1)"
    )
    assert len(api.requests) == 1


# ------------------------------------------------------------------------------------------ retries


def test_429_honours_retry_after(api: ApiServer, sleeps: list[float]) -> None:
    api.rate_limit_next(1, retry_after=1)
    fetch = fetch_records(connection(api), endpoint(), {}, sleep=sleeps.append)
    assert sleeps == [1.0]
    assert (len(fetch.records), fetch.pages, fetch.requests, fetch.retries) == (10, 1, 2, 1)
    assert [r.status for r in api.requests] == [429, 200]


def test_429_really_waits(api: ApiServer) -> None:
    api.rate_limit_next(1, retry_after=1)
    started = time.monotonic()
    fetch = fetch_records(connection(api), endpoint(), {})
    assert time.monotonic() - started >= 1.0
    assert fetch.retries == 1


def test_retry_after_as_an_http_date(api: ApiServer, sleeps: list[float]) -> None:
    api.rate_limit_next(1, retry_after=formatdate(time.time() + 3, usegmt=True))
    fetch_records(connection(api), endpoint(), {}, sleep=sleeps.append)
    assert len(sleeps) == 1 and 1.5 <= sleeps[0] <= 4.5  # whole seconds on both sides, measured on the server's clock


def test_retry_after_is_capped_at_max_retry_wait(api: ApiServer, sleeps: list[float]) -> None:
    api.rate_limit_next(1, retry_after=formatdate(time.time() + 3600, usegmt=True))
    api.rate_limit_next(1, retry_after=7200)
    fetch_records(connection(api), endpoint(max_retry_wait="2s"), {}, sleep=sleeps.append)
    assert sleeps == [2.0, 2.0]


def test_503_is_retried_with_exponential_backoff(api: ApiServer, sleeps: list[float]) -> None:
    api.fail_next(3, status=503)
    fetch = fetch_records(connection(api), endpoint(), {}, sleep=sleeps.append)
    assert len(fetch.records) == 10 and fetch.retries == 3 and fetch.requests == 4
    assert len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 1.5 and 2.0 <= sleeps[2] <= 2.5


@pytest.mark.parametrize("status", [500, 502, 504])
def test_other_5xx_are_retried(api: ApiServer, sleeps: list[float], status: int) -> None:
    api.fail_next(1, status=status)
    fetch = fetch_records(connection(api), endpoint(), {}, sleep=sleeps.append)
    assert (fetch.retries, len(sleeps)) == (1, 1)


def test_a_dropped_connection_is_retried(api: ApiServer, sleeps: list[float]) -> None:
    api.drop_next(1)
    fetch = fetch_records(connection(api), endpoint(pagination=PAGES_OF_10), {}, sleep=sleeps.append)
    assert ids(fetch) == list(range(1, 26))
    assert (fetch.retries, len(sleeps)) == (1, 1)


def test_retries_exhausted(api: ApiServer, sleeps: list[float]) -> None:
    api.fail_next(10, status=503)
    with pytest.raises(SourceError) as raised:
        fetch_records(connection(api), endpoint(retries=2), {}, sleep=sleeps.append)
    assert str(raised.value) == f"GET {PATH} answered 503 after 3 attempts (page 1)"
    assert (len(api.requests), len(sleeps)) == (3, 2)


def test_no_retries_configured(api: ApiServer, sleeps: list[float]) -> None:
    api.rate_limit_next(1)
    with pytest.raises(SourceError, match=r"^GET /v1/orders answered 429 after 1 attempts \(page 1\)$"):
        fetch_records(connection(api), endpoint(retries=0), {}, sleep=sleeps.append)
    assert sleeps == []


def test_an_unreachable_api(sleeps: list[float]) -> None:
    with ApiServer() as gone:
        url = gone.url
    with pytest.raises(SourceError, match=r"^GET /v1/orders failed after 2 attempts: ConnectError \(.+\) \(page 1\)$"):
        fetch_records(connection(url), endpoint(retries=1), {}, sleep=sleeps.append)
    assert len(sleeps) == 1


# ------------------------------------------------------------------------------------------ bounds


def test_max_pages_stops_early(api: ApiServer) -> None:
    fetch = fetch_records(
        connection(api), endpoint(max_pages=2, pagination={"style": "page_number", "page_size": 10}), {}
    )
    assert (ids(fetch), fetch.pages, fetch.stopped) == (list(range(1, 21)), 2, "max_pages")


def test_max_pages_reached_on_the_last_page_is_not_a_stop(api: ApiServer) -> None:
    fetch = fetch_records(
        connection(api), endpoint(max_pages=3, pagination={"style": "page_number", "page_size": 10}), {}
    )
    assert (len(fetch.records), fetch.pages, fetch.stopped) == (25, 3, None)


def test_max_seconds_stops_early() -> None:
    with ApiServer(count=50, page_size=10) as api:
        clock = lambda: 0.4 * len(api.requests)  # noqa: E731 (each answered request takes 0.4 s on this clock)
        fetch = fetch_records(connection(api), endpoint(max_seconds="1s", pagination=PAGES_OF_10), {}, clock=clock)
    assert (ids(fetch), fetch.pages, fetch.requests, fetch.stopped) == (list(range(1, 31)), 3, 3, "max_seconds")
    assert fetch.seconds == pytest.approx(1.2)


def test_a_long_retry_after_ends_at_max_seconds(api: ApiServer) -> None:
    now, waits = [0.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    api.rate_limit_next(1, retry_after=600)
    fetch = fetch_records(
        connection(api), endpoint(max_seconds="5s", max_retry_wait="10m"), {}, sleep=sleep, clock=lambda: now[0]
    )
    assert waits == [5.0]  # not 600: the read had 5 s in all
    assert (fetch.records, fetch.pages, fetch.stopped) == ([], 0, "max_seconds")


# ------------------------------------------------------------------------------------------ incremental, clock


def test_incremental_param_is_sent_and_filters(api: ApiServer) -> None:
    since = iso(SEED_START + timedelta(minutes=20))
    pagination = {"style": "page_number", "size_param": "per_page", "page_size": 2}
    fetch = fetch_records(
        connection(api), endpoint(pagination=pagination, incremental_param="updated_since"), {}, since
    )
    assert ids(fetch) == [21, 22, 23, 24, 25]
    assert [r.query["updated_since"] for r in api.requests] == [since] * 3


def test_updates_come_back_after_the_watermark(api: ApiServer) -> None:
    spec = endpoint(pagination={"style": "cursor", "next_path": "meta.next_cursor"}, incremental_param="updated_since")
    watermark = api.newest()
    api.update(4, status="shipped")
    api.insert(status="new")
    api.delete(5)
    fetch = fetch_records(connection(api), spec, {}, watermark)
    assert [(r["id"], r["status"]) for r in fetch.records] == [(4, "shipped"), (26, "new")]


def test_since_without_incremental_param_is_not_sent(api: ApiServer) -> None:
    fetch = fetch_records(connection(api), endpoint(pagination=PAGES_OF_10), {}, "2024-01-01T00:20:00Z")
    assert len(fetch.records) == 25
    assert "updated_since" not in api.requests[0].query


def test_server_now_is_the_date_header(api: ApiServer) -> None:
    fetch = fetch_records(connection(api), endpoint(), {})
    assert fetch.server_now is not None and fetch.server_now.tzinfo is not None
    assert fetch.server_now.utcoffset() == timedelta(0)
    assert abs(fetch.server_now - datetime.now(UTC)) < timedelta(minutes=1)


# ------------------------------------------------------------------------------------------ secrets


AUTH_CASES = [  # (server settings, connection auth, credentials, secret values that must never show)
    ({"token": TOKEN}, BEARER, {"auth.token": TOKEN}, [TOKEN]),
    ({"api_key": API_KEY}, {"type": "api_key", "key": "${env:K}"}, {"auth.key": API_KEY}, [API_KEY]),
    (
        {"basic": ("reader", PASSWORD)},
        {"type": "basic", "user": "reader", "password": "${env:P}"},
        {"auth.password": PASSWORD},
        [PASSWORD, base64.b64encode(f"reader:{PASSWORD}".encode()).decode()],
    ),
]


@pytest.mark.parametrize(("server", "auth", "credentials", "secrets"), AUTH_CASES, ids=["bearer", "api_key", "basic"])
def test_no_secret_in_logs_errors_or_results(
    caplog: pytest.LogCaptureFixture,
    server: dict[str, Any],
    auth: dict[str, Any],
    credentials: dict[str, str],
    secrets: list[str],
) -> None:
    for name in ("", "httpx", "httpcore", "pipezone"):
        caplog.set_level(logging.DEBUG, logger=name)
    credentials = {**credentials, "headers.X-Signature": HEADER_SECRET}
    secrets = [*secrets, HEADER_SECRET]
    texts: list[str] = []
    with ApiServer(count=25, style="next_url", **server) as api:
        conn = connection(api, auth, headers={"X-Signature": "${env:SIG}"})
        api.fail_next(1, 503)
        api.rate_limit_next(1, retry_after=0)
        api.drop_next(1)
        spec = endpoint(pagination={"style": "next_url", "next_path": "links.next"}, incremental_param="updated_since")
        fetch = fetch_records(conn, spec, credentials, "2024-01-01T00:00:00Z", sleep=lambda s: None)
        texts += [repr(fetch), str(fetch)]
        api.fail_next(2, 503)
        texts.append(error_of(lambda: fetch_records(conn, endpoint(retries=1), credentials, sleep=lambda s: None)))
        api.link_base = "http://localhost:1"
        texts.append(error_of(lambda: fetch_records(conn, spec, credentials)))
        wrong = {k: v + "-wrong" for k, v in credentials.items()}
        texts.append(error_of(lambda: fetch_records(conn, endpoint(), wrong)))
    assert ids(fetch) == list(range(1, 26)) and fetch.retries == 3
    assert "HTTP Request: GET http://127.0.0.1:" in caplog.text  # httpx's own URL lines were captured
    assert "retrying in" in caplog.text
    for secret in secrets:
        for text in [caplog.text, *texts, *(r.getMessage() for r in caplog.records)]:
            assert secret not in text
    assert all("\n" not in text for text in texts[2:])


def test_a_credential_the_server_echoes_is_masked_in_the_message() -> None:
    """The last line of defence: a server quoting a credential back (here in its Content-Type)."""
    with ApiServer(token=TOKEN) as api:
        api.serve_static("/v1/html", "<p>", content_type=f"text/html; echo={TOKEN}")
        conn = connection(api, BEARER)
        message = error_of(lambda: fetch_records(conn, endpoint(path="/v1/html"), {"auth.token": TOKEN}))
    assert message == "GET /v1/html, page 1: the body is not JSON (text/html; echo=***)"


def test_repr_of_a_fetch_is_a_summary(api: ApiServer) -> None:
    fetch = fetch_records(connection(api), endpoint(), {})
    assert repr(fetch).startswith("Fetch(10 records, pages=1, requests=1, retries=0, stopped=None, server_now=datetime")
