"""Document sources benchmark: a MongoDB collection's first load and a paginated REST endpoint's read,
each next to its driver or HTTP client alone reading the same documents in a fresh process.

**MongoDB**: N plain documents (ints, doubles, strings, a flag, two dates, a sub-document and a small
array; FerretDB v1 knows no Decimal128) are inserted into a fresh collection of the bench database on
the project's MongoDB-wire server (FerretDB on SQLite, `setup/local/ferretdb.sh`), not timed. PipeZone is
`pipezone run FLOW --in-process --steps extract` on an empty lake (the first load: pymongo's documents
typed into Arrow chunks, delta-rs writes raw), once with one connection and once with
`read.num_partitions: 2` (two `_id` ranges, two connections). The **physical reference** is what
`mongoexport` would do without the writing (it is not installed here): a fresh Python process iterating
`collection.find()` with pymongo, decoding each document and dropping it.

**REST**: the tests' JSON API (tests/api_server.py: a stdlib HTTP server thread in this bench process,
one core; every contender is a child process, so they share nothing but the machine) serves M order
records with cursor pagination, 500 records a page. PipeZone is the same `pipezone run ... --steps
extract` over the endpoint; the **reference** is httpx alone in a fresh process following the cursors
and `json.loads`-ing every page. The server's own request log counts what each contender asked for.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import DATABASE, REPO, VENV_BIN, Project, measured, start_service
from incremental import PROFILE

sys.path.append(str(REPO / "tests"))  # after bench/: tests/ must shadow none of its modules
from api_server import ApiServer  # noqa: E402

COLLECTION = "orders_docs"
MONGO_FLOW = "bench_mongo_orders"
REST_FLOW = "bench_rest_orders"
INSERT_BATCH = 10_000
PAGE_SIZE = 500  # the ApiServer's maximum is 1,000 (MAX_PAGE_SIZE); 500 is a common API default
FETCH_SIZE = 10_000  # read.fetch_size's default: the batch size PipeZone's find() asks for
STATUSES = ("new", "paid", "shipped", "returned")
TIERS = ("gold", "silver", "bronze")
CREATED = datetime(2024, 1, 1, tzinfo=UTC)
UPDATED = datetime(2024, 6, 1, tzinfo=UTC)

MONGO_CONNECTION = "name: bench_mongo\ntype: mongodb\nhost: {host}\nport: {port}\ndatabase: {database}\n"
REST_CONNECTION = "name: bench_api\ntype: rest\nbase_url: {url}\n"
MONGO_FLOW_YAML = """\
name: {name}
source:
  connection: bench_mongo
  table: {collection}
  primary_key: [_id]
  read:
    num_partitions: {partitions}
schedule: "@daily"
"""
REST_FLOW_YAML = """\
name: {name}
source:
  connection: bench_api
  primary_key: [id]
  endpoint:
    path: /v1/orders
    records: data.items
    pagination: {{style: cursor, next_path: meta.next_cursor}}
    params: {{limit: {limit}}}
    max_pages: 1000000
schedule: "@daily"
"""
# The references: the driver or the HTTP client alone, in a fresh interpreter like `pipezone run`, printing
# what the loop read, how long the loop took (the process's own start is in the measured wall time) and its
# own peak RSS: wait4's figure for a small child is the bench process's RSS (the child is spawned with vfork
# and Linux counts the shared memory's high-water mark at exec).
MONGO_REFERENCE = """\
import json, sys, time
from pymongo import MongoClient
host, port, database, collection, batch = sys.argv[1:6]
client = MongoClient(host=host, port=int(port))
started = time.perf_counter()
documents = 0
for _ in client[database][collection].find(batch_size=int(batch)):
    documents += 1
loop_s = time.perf_counter() - started
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({"rows": documents, "loop_s": loop_s, "peak_rss_mb": int(status) / 1024}))
"""
REST_REFERENCE = """\
import json, sys, time
import httpx
url, limit = sys.argv[1:3]
pages = records = 0
cursor = None
started = time.perf_counter()
with httpx.Client(headers={"Accept": "application/json"}) as client:
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = json.loads(client.get(url, params=params).raise_for_status().content)
        pages += 1
        records += len(body["data"]["items"])
        cursor = body["meta"].get("next_cursor")
        if not cursor:
            break
loop_s = time.perf_counter() - started
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({"rows": records, "pages": pages, "loop_s": loop_s, "peak_rss_mb": int(status) / 1024}))
"""


# --------------------------------------------------------------------------- the servers


class Mongo:
    """The project's MongoDB-wire server (FerretDB on SQLite): no login; databases appear on first write."""

    host = "127.0.0.1"
    port = int(os.environ.get("PIPEZONE_FERRETDB_PORT") or 27017)

    def client(self) -> Any:
        from pymongo import MongoClient

        return MongoClient(host=self.host, port=self.port, serverSelectionTimeoutMS=10_000)

    def version(self) -> str:
        client = self.client()
        try:
            info = client.admin.command("buildInfo")
        finally:
            client.close()
        ferret = info.get("ferretdbVersion") or info.get("ferretdb", {}).get("version")
        return f"FerretDB {ferret} (MongoDB {info['version']} wire)" if ferret else f"MongoDB {info['version']}"

    def fill(self, rows: int) -> float:
        """A fresh `orders_docs` of `rows` documents, inserted in batches; returns the seconds it took."""
        started = time.perf_counter()
        client = self.client()
        try:
            coll = client[DATABASE][COLLECTION]
            coll.drop()
            for first in range(1, rows + 1, INSERT_BATCH):
                coll.insert_many([document(i) for i in range(first, min(first + INSERT_BATCH, rows + 1))])
            count = coll.count_documents({})
        finally:
            client.close()
        if count != rows:
            raise SystemExit(f"bench: {COLLECTION} holds {count:,} documents, {rows:,} were inserted")
        return time.perf_counter() - started

    def drop(self) -> None:
        client = self.client()
        try:
            client[DATABASE][COLLECTION].drop()
        finally:
            client.close()


def document(i: int) -> dict[str, Any]:
    """An order as an application stores it: plain scalars, two dates, a sub-document, a 1-3 item array;
    a third of the notes and a seventh of the discounts null."""
    return {
        "order_id": i,
        "customer_id": i % 50_000,
        "sku": f"SKU-{i % 9973:06d}",
        "quantity": 1 + i % 9,
        "unit_price": (i % 100_000) / 100,
        "discount": None if i % 7 == 0 else (i % 30) / 100,
        "status": STATUSES[i % 4],
        "note": None if i % 3 == 0 else f"note for order {i} lorem ipsum dolor sit amet",
        "is_gift": i % 2 == 0,
        "created_at": CREATED + timedelta(seconds=i),
        "updatedAt": UPDATED + timedelta(seconds=i),
        "customer": {"name": f"customer {i % 50_000}", "tier": TIERS[i % 3]},
        "items": [{"sku": f"SKU-{(i + n) % 9973:06d}", "qty": n} for n in range(1, 2 + i % 3)],
    }


class BenchApi(ApiServer):
    """The tests' API server with its listing sorted once. The test server filters and sorts every record
    on each request (O(N) a page: nothing at a test's dozens of records, most of the time at 100,000), so
    either contender would measure the server; this one answers the same pages and cursors from a sorted
    list and a bisect. The records do not change during the bench."""

    def __init__(self, **kwargs: Any) -> None:
        self._order: list[dict[str, Any]] | None = None
        self._keys: list[tuple[str, int]] = []
        super().__init__(**kwargs)

    def _selected(self, query: dict[str, str]) -> list[dict[str, Any]]:
        if "updated_since" in query:
            return super()._selected(query)
        if self._order is None or len(self._order) != len(self.records):
            self._order = super()._selected(query)
            self._keys = [(r["updated_at"], r["id"]) for r in self._order]
        return self._order

    def _keyset(self, rows: list[dict[str, Any]], query: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        if rows is not self._order or not query.get("cursor"):
            return super()._keyset(rows, query)
        after = tuple(json.loads(base64.urlsafe_b64decode(query["cursor"].encode())))
        rest = {k: v for k, v in query.items() if k != "cursor"}
        return super()._keyset(rows[bisect_right(self._keys, after) :], rest)


# --------------------------------------------------------------------------- the runs


def run(project: Project, docs: int, records: int) -> list[dict[str, Any]]:
    """MongoDB: a fresh collection of `docs` documents, the reference, then PipeZone on 1 and 2 connections;
    REST: an API of `records` records, the reference, then PipeZone."""
    start_service("ferretdb")
    return mongodb(project, Mongo(), docs) + rest(project, records)


def mongodb(project: Project, mongo: Mongo, rows: int) -> list[dict[str, Any]]:
    seconds = mongo.fill(rows)
    _say(f"mongodb: {rows:,} documents inserted into {DATABASE}.{COLLECTION} in {seconds:.0f} s (not timed)")
    connection = MONGO_CONNECTION.format(host=mongo.host, port=mongo.port, database=DATABASE)
    (project.root / "metadata" / "connections" / "bench_mongo.yaml").write_text(connection)
    base = {"bench": "documents", "source": "mongodb", "rows": rows, "server_version": mongo.version()}
    args = [mongo.host, str(mongo.port), DATABASE, COLLECTION, str(FETCH_SIZE)]
    ref = reference(MONGO_REFERENCE, args, rows, "pymongo find()")
    results = [base | ref]
    _say(f"mongodb: pymongo find() alone: {ref['seconds']:.1f} s (loop {ref['loop_s']:.1f} s)")
    for partitions in (1, 2):
        flow = MONGO_FLOW_YAML.format(name=MONGO_FLOW, collection=COLLECTION, partitions=partitions)
        (project.root / "metadata" / "flows" / f"{MONGO_FLOW}.yaml").write_text(flow)
        ours = extract_run(project, MONGO_FLOW, rows)
        results.append(base | {"contender": "pipezone", "partitions": partitions, **ours})
        _say(
            f"mongodb: PipeZone, {partitions} connection(s): {ours['seconds']:.1f} s, extract step "
            f"{ours['extract_s']:.1f} s ({ours['phases_s']})"
        )
    (project.root / "metadata" / "flows" / f"{MONGO_FLOW}.yaml").unlink()
    mongo.drop()
    return results


def rest(project: Project, rows: int) -> list[dict[str, Any]]:
    with BenchApi(count=rows, style="cursor", page_size=PAGE_SIZE) as api:
        url = f"{api.url}/v1/orders"
        (project.root / "metadata" / "connections" / "bench_api.yaml").write_text(REST_CONNECTION.format(url=api.url))
        (project.root / "metadata" / "flows" / f"{REST_FLOW}.yaml").write_text(
            REST_FLOW_YAML.format(name=REST_FLOW, limit=PAGE_SIZE)
        )
        base = {"bench": "documents", "source": "rest", "rows": rows, "page_size": PAGE_SIZE}
        before = len(api.requests)
        ref = reference(REST_REFERENCE, [url, str(PAGE_SIZE)], rows, "httpx + json.loads")
        ref["requests"] = len(api.requests) - before
        _say(f"rest: httpx alone: {ref['pages']} pages in {ref['seconds']:.1f} s (loop {ref['loop_s']:.1f} s)")
        before = len(api.requests)
        ours = extract_run(project, REST_FLOW, rows)
        ours["requests"] = len(api.requests) - before
        if any(r.status != 200 for r in api.requests):
            raise SystemExit("bench: the API answered a request with an error")
        _say(f"rest: PipeZone: {ours['requests']} requests, {ours['seconds']:.1f} s, extract {ours['extract_s']:.1f} s")
    (project.root / "metadata" / "flows" / f"{REST_FLOW}.yaml").unlink()
    return [base | ref, base | {"contender": "pipezone", **ours}]


def reference(script: str, args: list[str], rows: int, tool: str) -> dict[str, Any]:
    """The client alone in a fresh `python -c` process: its wall time, the loop's own time and its peak RSS
    (VmHWM, as the process itself reports it)."""
    m = measured([str(VENV_BIN / "python"), "-c", script, *args]).check(tool)
    said = json.loads(m.stdout.strip().splitlines()[-1])
    if said["rows"] != rows:
        raise SystemExit(f"bench: {tool} read {said['rows']:,} rows, expected {rows:,}")
    return {
        "contender": "reference",
        "tool": tool,
        "seconds": round(m.seconds, 3),
        "peak_rss_mb": round(said["peak_rss_mb"]),
        "loop_s": round(said["loop_s"], 3),
        **({"pages": said["pages"]} if "pages" in said else {}),
    }


def extract_run(project: Project, flow: str, rows: int) -> dict[str, Any]:
    """`pipezone run FLOW --in-process --steps extract` on an empty lake and state store (a first load),
    timed from outside, with the extract step's own time and phases from the run history."""
    shutil.rmtree(project.root / ".pipezone" / "lake", ignore_errors=True)
    (project.root / ".pipezone" / "state.db").unlink(missing_ok=True)
    m = project.run(PROFILE, flow, "--in-process", "--steps", "extract").check(f"pipezone run {flow}")
    log = [entry for entry in project.step_logs() if entry["step"] == "extract"][-1]
    if log["rows_written"] != rows:
        raise SystemExit(f"bench: {flow}'s extract wrote {log['rows_written']:,} rows, expected {rows:,}")
    return {
        "seconds": round(m.seconds, 3),
        "peak_rss_mb": round(m.peak_rss_mb),
        "extract_s": log["details"]["duration_s"],
        "phases_s": log["details"].get("phases_s"),
        "read_path": log["details"].get("read_path"),
        "bench_peak_rss_mb": round(_own_peak_mb()),  # wait4's floor for the child (see the references)
    }


def _own_peak_mb() -> float:
    """This bench process's peak RSS (VmHWM): what wait4 reports at least for any child it spawns."""
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024


# --------------------------------------------------------------------------- the report


def section(run: dict[str, Any]) -> list[str]:
    """The report's section: each source's reference against PipeZone's whole process and its extract step."""
    rows = [r for r in run["results"] if r["bench"] == "documents"]
    if not rows:
        return []
    lines = [
        "## MongoDB and REST sources",
        "",
        "First loads by `pipezone run FLOW --in-process --steps extract` on an empty lake (process, JVM and "
        "Spark session start, the source read, Arrow typing, delta-rs write of raw; the extract step row is the "
        "step alone, from the run history). The **physical reference** is the source's client alone in a fresh "
        "`python -c` process reading the same documents and dropping them (its loop row: the loop alone, without "
        "the interpreter's start and imports). Every ratio is rows/s against the reference process's.",
        "",
    ]
    mongo = [r for r in rows if r["source"] == "mongodb"]
    if mongo:
        ref = next(r for r in mongo if r["contender"] == "reference")
        size = ref["rows"]
        lines += [
            f"MongoDB: {size:,} documents (14 fields with `_id`: ints, doubles, strings, nullable ones, a flag, two "
            f"dates, a sub-document, a 1-3 item array) on {ref['server_version']}, SQLite backend; `mongoexport` is "
            f"not installed here, the reference is pymongo's `find(batch_size={FETCH_SIZE:,})` loop (PipeZone's "
            "`read.fetch_size`). The source read shows in the step's `prepare` (the documents are read when the step "
            "asks for the batch's DataFrame); `read_write` is delta-rs writing raw.",
            "",
            *_table(ref, [r for r in mongo if r["contender"] == "pipezone"], "rows/s", None),
            "",
        ]
    api = [r for r in rows if r["source"] == "rest"]
    if api:
        ref = next(r for r in api if r["contender"] == "reference")
        lines += [
            f"REST: {ref['rows']:,} order records (id, updated_at, status, total, a nested customer, a 1-3 item "
            f"array) served by tests/api_server.py in the bench process (a stdlib HTTP server thread, its listing "
            f"sorted once), cursor pagination, {ref['page_size']} records a page; pages/s counts the requests the "
            "server answered (PipeZone's one more is the first page read again to describe the columns).",
            "",
            *_table(ref, [r for r in api if r["contender"] == "pipezone"], "records/s", "pages/s"),
            "",
        ]
    return [
        *lines,
        "Peak RSS: PipeZone's is the largest process of the run (the driver JVM or its Python process); the "
        "reference's is the process's own VmHWM (wait4's figure for so small a child is the bench process's RSS). "
        "What dominates: for MongoDB on FerretDB the server, which keeps documents as JSON in SQLite and "
        "converts each one on every read; a count, a sorted skip and an `_id` range each take as long as a scan "
        "of the whole collection (the range's explain: `SCAN`), so `read.num_partitions: 2` (a count, a skip to "
        "the middle `_id`, two ranges) costs four scans instead of one. On MongoDB the skip and the ranges walk "
        "the `_id` index. For REST the process's fixed costs (imports, JVM and Spark session start) and, inside "
        "the step, building the batch's Spark DataFrame from the Arrow table.",
        "",
    ]


def _table(ref: dict[str, Any], ours: list[dict[str, Any]], unit: str, pages: str | None) -> list[str]:
    """Reference, reference loop, then per PipeZone run its process and its extract step; every ratio is
    against the reference process's rows/s (a process against a process, as the other sections quote)."""
    size = ref["rows"]
    extra = f" {pages} |" if pages else ""
    lines = [
        f"| contender | seconds | {unit} |{extra} peak RSS | vs reference | phases (s) |",
        f"| --- | ---: | ---: |{' ---: |' if pages else ''} ---: | ---: | --- |",
    ]
    base = size / ref["seconds"]

    def row(label: str, seconds: float, requests: int | None, rss: str, phases: str) -> str:
        cells = f" {requests / seconds:,.1f} |" if pages and requests is not None else (" |" if pages else "")
        ratio = f"{size / seconds / base:.2f}x"
        return f"| {label} | {seconds:.1f} | {size / seconds:,.0f} |{cells} {rss} | {ratio} | {phases} |"

    requests = ref.get("requests")
    lines.append(row(f"{ref['tool']}, process", ref["seconds"], requests, f"{ref['peak_rss_mb']:,} MB", ""))
    lines.append(row(f"{ref['tool']}, its loop", ref["loop_s"], requests, "(same)", ""))
    for r in ours:
        where = f", {r['partitions']} connection{'s' if r['partitions'] > 1 else ''}" if "partitions" in r else ""
        phases = ", ".join(f"{k} {v:.1f}" for k, v in (r["phases_s"] or {}).items())
        rss = f"{r['peak_rss_mb']:,} MB"
        lines.append(row(f"PipeZone{where}, `pipezone run` process", r["seconds"], r.get("requests"), rss, ""))
        lines.append(row(f"PipeZone{where}, extract step", r["extract_s"], r.get("requests"), "(same)", phases))
    return lines


def _say(text: str) -> None:
    print(f"bench: documents: {text}", flush=True)
