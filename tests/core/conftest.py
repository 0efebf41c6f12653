"""Fixtures for the engine's acceptance tests: scratch projects with the demo source, and one shared run.

A scratch project is a folder in tmp_path holding a copy of the repo's metadata/, a fresh demo SQLite
database built by `demo_source`, and a link to the repo's jar cache (the only thing not copied: ~700 MB).
Its runtime comes from `load_settings(environ={}, cwd=<project>)`, as the CLI would build it there.

`demo` is the expensive end-to-end scenario, built once per test session and shared by every module
that needs it (a module-scoped copy per module would repeat ~2.5 minutes of Spark work each time):
  1. run every demo flow (full load),
  2. apply demo change batch 1 and run every flow again (incremental),
  3. full-refresh two flows.
After each phase it captures what the tests compare (silver rows, the source's own rows with the flows'
transforms applied by hand, layer counts, Delta versions, watermarks, gold rows, run logs), so tests
never depend on the order they run in.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipezone.core.demo import shop as demo_source
from pipezone.core.lake import delta_tables as dt
from pipezone.core.runs.flow_runner import RunReport, run_flows
from pipezone.core.spec.settings import load_settings
from pipezone.core.spec.value_types import parse_duration
from pipezone.core.state.run_history import RunRecord
from pipezone.core.steps.context import StepContext
from pipezone.core.steps.runtime import Runtime, load_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REPO_ROOT = Path(__file__).resolve().parents[2]
JAR_CACHE = REPO_ROOT / ".pipezone" / "jars"
DEMO_DB = Path(".pipezone/demo/retail.db")
EXPORT_DB = Path(".pipezone/demo/bi.db")  # metadata/connections/retail_bi.yaml
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SOURCE_FLOWS = ("retail_customers", "retail_order_items", "retail_orders", "retail_products")
GOLD_FLOW = "retail_daily_revenue"
ALL_FLOWS = (*SOURCE_FLOWS, GOLD_FLOW)
LAYERS = ("raw", "bronze", "silver")
REFRESHED_FLOWS = ("retail_customers", "retail_orders")  # one without, one with an initial_value
RUN_FULL, RUN_INCREMENTAL, RUN_REFRESH = "t-full-1", "t-incremental-2", "t-refresh-3"


# ------------------------------------------------------------------------------------------ expectations


def utc(text: str | None) -> datetime | None:
    """A demo timestamp (UTC text) as an aware UTC datetime."""
    return None if text is None else datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC)


def strip(text: str | None) -> str | None:
    """What the `trim` transform promises: surrounding whitespace removed (README: 'strip surrounding whitespace')."""
    return None if text is None else text.strip()


def lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


@dataclass(frozen=True)
class SilverModel:
    """A demo flow's silver table as it must follow from its source table: columns and the expected row."""

    table: str
    key: str
    columns: tuple[str, ...]
    expected: Callable[[sqlite3.Row], tuple[Any, ...]]


# The flows' transforms (metadata/flows/*.yaml) applied by hand, independently of the engine.
SILVER_MODELS: dict[str, SilverModel] = {
    "retail_customers": SilverModel(
        "customers",
        "customer_id",
        ("customer_id", "first_name", "last_name", "email", "country", "created_at", "updated_at"),
        lambda r: (
            r["customer_id"],
            strip(r["first_name"]),  # trim: [email, first_name, last_name]
            strip(r["last_name"]),
            lower(strip(r["email"])),  # lower: [email]
            r["country"],
            utc(r["created_at"]),
            utc(r["updated_at"]),
        ),
    ),
    "retail_products": SilverModel(
        "products",
        "product_id",
        ("product_id", "sku", "name", "category", "unit_price", "active", "updated_at"),
        lambda r: (
            r["product_id"],
            r["sku"],
            r["name"],
            r["category"],
            demo_source.as_money(r["unit_price"]),  # cast: decimal(10,2)
            bool(r["active"]),
            utc(r["updated_at"]),
        ),
    ),
    "retail_orders": SilverModel(
        "orders",
        "order_id",
        ("order_id", "customer_id", "order_date", "status", "total_amount", "updated_at", "is_cancelled"),
        lambda r: (
            r["order_id"],
            r["customer_id"],
            utc(r["order_date"]),
            r["status"],
            demo_source.as_money(r["total_amount"]),  # cast: decimal(12,2)
            utc(r["updated_at"]),
            r["status"] == "cancelled",  # derive: is_cancelled
        ),
    ),
    "retail_order_items": SilverModel(
        "order_items",
        "order_item_id",
        ("order_item_id", "order_id", "product_id", "quantity", "unit_price", "updated_at", "line_amount"),
        lambda r: (
            r["order_item_id"],
            r["order_id"],
            r["product_id"],
            r["quantity"],
            demo_source.as_money(r["unit_price"]),  # cast: decimal(10,2)
            utc(r["updated_at"]),
            r["quantity"] * demo_source.as_money(r["unit_price"]),  # derive: line_amount
        ),
    ),
}

# daily_revenue computed by SQLite itself over the source; money summed in integer cents, so exact.
GOLD_SQL = """
SELECT date(o.order_date) AS order_day,
       p.category,
       COUNT(DISTINCT o.order_id) AS orders,
       SUM(i.quantity * CAST(ROUND(i.unit_price * 100) AS INTEGER)) AS revenue_cents
FROM orders o
JOIN order_items i ON i.order_id = o.order_id
JOIN products p ON p.product_id = i.product_id
WHERE o.status <> 'cancelled'
GROUP BY date(o.order_date), p.category
"""
GOLD_COLUMNS = ("order_day", "category", "orders", "revenue")


def assert_same_rows(
    actual: Sequence[tuple[Any, ...]],
    expected: Sequence[tuple[Any, ...]],
    what: str,
    key: Callable[[tuple[Any, ...]], Any] = lambda row: row[0],
) -> None:
    """Row-for-row equality by key, with a message that shows the first differences."""
    dupes = sorted(k for k, n in Counter(map(key, actual)).items() if n > 1)
    assert not dupes, f"{what}: {len(dupes)} duplicated keys, e.g. {dupes[:5]}"
    got = {key(r): r for r in actual}
    want = {key(r): r for r in expected}
    missing = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    differ = sorted(k for k in want.keys() & got.keys() if got[k] != want[k])
    lines = []
    if missing:
        lines.append(f"{len(missing)} missing, e.g. {[want[k] for k in missing[:3]]}")
    if extra:
        lines.append(f"{len(extra)} unexpected, e.g. {[got[k] for k in extra[:3]]}")
    for k in differ[:3]:
        lines.append(f"key {k!r}: got {got[k]!r}, expected {want[k]!r}")
    if len(differ) > 3:
        lines.append(f"... {len(differ)} rows differ in all")
    assert not lines, f"{what} (got {len(actual)} rows, expected {len(expected)}):\n  " + "\n  ".join(lines)
    assert len(actual) == len(expected)


# ------------------------------------------------------------------------------------------ scratch project


def make_project(root: Path) -> Path:
    """A scratch project: a copy of the repo's metadata/, a fresh demo database, the repo's jar cache."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO_ROOT / "metadata", root / "metadata")
    (root / ".pipezone").mkdir(exist_ok=True)
    (root / ".pipezone" / "jars").symlink_to(JAR_CACHE, target_is_directory=True)
    demo_source.create_retail_db(root / DEMO_DB)
    return root


def runtime_for(root: Path) -> Runtime:
    return load_runtime(load_settings(environ={}, cwd=root))


class Project:
    """A scratch project, its runtime, and ways to look at its source and its lake."""

    def __init__(self, root: Path, spark: SparkSession) -> None:
        self.root = root
        self.spark = spark
        self.runtime = runtime_for(root)

    @property
    def db(self) -> Path:
        return self.root / DEMO_DB

    @property
    def state(self):  # noqa: ANN201 - StateStore
        return self.runtime.state

    def close(self) -> None:
        if "state" in self.runtime.__dict__:  # only if it was opened
            self.runtime.state.close()

    def reload(self) -> None:
        """A new runtime, e.g. after adding files to metadata/."""
        self.close()
        self.runtime = runtime_for(self.root)

    def key(self, flow: str) -> str:
        return SILVER_MODELS[flow].key

    def model_columns(self, flow: str) -> tuple[str, ...]:
        """The business columns silver must have: the source's, plus the flow's derived ones."""
        return SILVER_MODELS[flow].columns

    def ctx(self, flow: str, run_id: str, *, full_refresh: bool = False) -> StepContext:
        return StepContext(self.runtime, self.spark, self.runtime.flow(flow), run_id, full_refresh)

    def run(self, flows: Sequence[str], run_id: str, **options: Any) -> RunReport:
        """run_flows in this process's Spark session, quietly."""
        return run_flows(self.runtime, list(flows), in_process=True, run_id=run_id, progress=lambda _: None, **options)

    # -- lake

    def path(self, layer: str, flow: str) -> str:
        lake = self.runtime.lake
        return lake.raw(self.runtime.flow(flow)) if layer == "raw" else lake.table(layer, flow)

    def count(self, layer: str, flow: str) -> int:
        return dt.row_count(self.spark, self.path(layer, flow))

    def version(self, layer: str, flow: str) -> int | None:
        commit = dt.last_commit(self.spark, self.path(layer, flow))
        return None if commit is None else int(commit["version"])

    def layers(self, flow: str) -> dict[str, tuple[int | None, int]]:
        """{layer: (Delta version, row count)} for raw, bronze and silver."""
        return {layer: (self.version(layer, flow), self.count(layer, flow)) for layer in LAYERS}

    def read(self, layer: str, flow: str):  # noqa: ANN201 - DataFrame
        return self.spark.read.format("delta").load(self.path(layer, flow))

    def business_columns(self, layer: str, flow: str) -> list[str]:
        return [c for c in self.read(layer, flow).columns if not c.startswith("_pz_")]

    def silver_rows(self, flow: str) -> list[tuple[Any, ...]]:
        """The model's columns of silver; timestamps as aware UTC (read as epoch micros: no local-zone guessing)."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import TimestampType

        df = self.read("silver", flow)
        model = SILVER_MODELS[flow]
        stamps = {f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType)}
        cols = [F.unix_micros(F.col(c)).alias(c) if c in stamps else F.col(c) for c in model.columns]
        rows = df.select(*cols).collect()
        return [
            tuple(
                UNIX_EPOCH + timedelta(microseconds=v) if c in stamps and v is not None else v
                for c, v in zip(model.columns, row, strict=True)
            )
            for row in rows
        ]

    def gold_rows(self) -> list[tuple[Any, ...]]:
        df = self.spark.read.format("delta").load(self.runtime.lake.gold("daily_revenue"))
        return [tuple(r) for r in df.select(*GOLD_COLUMNS).collect()]

    def exported_gold(self) -> list[tuple[Any, ...]]:
        """daily_revenue as the demo's export left it in the BI database (SQLite: dates and decimals as text)."""
        conn = sqlite3.connect(self.root / EXPORT_DB)
        try:
            rows = conn.execute(f"SELECT {', '.join(GOLD_COLUMNS)} FROM daily_revenue").fetchall()
        finally:
            conn.close()
        return [(date.fromisoformat(d), category, orders, Decimal(revenue)) for d, category, orders, revenue in rows]

    # -- source

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"{self.db.resolve().as_uri()}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def expected_silver(self, flow: str) -> list[tuple[Any, ...]]:
        """Silver as it must be: every source row with the flow's transforms applied by hand."""
        model = SILVER_MODELS[flow]
        return [model.expected(r) for r in self.query(f"SELECT * FROM {model.table}")]

    def expected_gold(self) -> list[tuple[Any, ...]]:
        return [
            (date.fromisoformat(r["order_day"]), r["category"], r["orders"], Decimal(r["revenue_cents"]).scaleb(-2))
            for r in self.query(GOLD_SQL)
        ]

    def source_count(self, flow: str) -> int:
        return self.query(f"SELECT COUNT(*) FROM {SILVER_MODELS[flow].table}")[0][0]

    def source_max(self, flow: str) -> datetime:
        return utc(self.query(f"SELECT MAX(updated_at) FROM {SILVER_MODELS[flow].table}")[0][0])

    def keys_updated_after(self, flow: str, after: datetime) -> list[Any]:
        """Keys of source rows whose updated_at is later than `after` (text compare, as the demo stores UTC text)."""
        model = SILVER_MODELS[flow]
        text = after.astimezone(UTC).strftime(TS_FORMAT)
        sql = f"SELECT {model.key} FROM {model.table} WHERE updated_at > ? ORDER BY {model.key}"
        return [r[0] for r in self.query(sql, (text,))]

    # -- state

    def logs(self, run_id: str, flow: str) -> dict[str, RunRecord]:
        """step -> the newest log row of this run id."""
        found: dict[str, RunRecord] = {}
        for record in self.state.recent_runs(flow, limit=200):  # newest first
            if record.run_id == run_id:
                found.setdefault(record.step, record)
        return found


# ------------------------------------------------------------------------------------------ scenario


@dataclass
class Phase:
    """What one run left behind, captured right after it."""

    run_id: str
    report: RunReport
    layers: dict[str, dict[str, tuple[int | None, int]]]  # flow -> layer -> (version, rows)
    silver: dict[str, list[tuple[Any, ...]]]
    expected: dict[str, list[tuple[Any, ...]]]  # from the source at that moment
    source_counts: dict[str, int]
    source_max: dict[str, datetime]
    watermarks: dict[str, Any]
    logs: dict[str, dict[str, RunRecord]]  # flow -> step -> record
    gold: list[tuple[Any, ...]] = field(default_factory=list)
    expected_gold: list[tuple[Any, ...]] = field(default_factory=list)
    exported_gold: list[tuple[Any, ...]] = field(default_factory=list)


def capture(project: Project, run_id: str, report: RunReport, flows: Sequence[str]) -> Phase:
    sources = [f for f in flows if f in SOURCE_FLOWS]
    phase = Phase(
        run_id=run_id,
        report=report,
        layers={f: project.layers(f) for f in sources},
        silver={f: project.silver_rows(f) for f in sources},
        expected={f: project.expected_silver(f) for f in sources},
        source_counts={f: project.source_count(f) for f in sources},
        source_max={f: project.source_max(f) for f in sources},
        watermarks={f: getattr(project.state.get_watermark(f), "value", None) for f in sources},
        logs={f: project.logs(run_id, f) for f in flows},
    )
    if GOLD_FLOW in flows:
        phase.gold, phase.expected_gold = project.gold_rows(), project.expected_gold()
        phase.exported_gold = project.exported_gold()
    return phase


@dataclass
class Scenario:
    project: Project
    full: Phase
    changes: dict[str, dict[str, int]]  # what demo change batch 1 did: {table: {inserted, updated}}
    window_keys: dict[str, list[Any]]  # flow -> keys the incremental extract must read (cursor > watermark - lookback)
    changed_keys: dict[str, list[Any]]  # flow -> keys changed by the batch (cursor > watermark)
    incremental: Phase
    refresh: Phase

    def lookback(self, flow: str) -> timedelta:
        incremental = self.project.runtime.flow(flow).source.incremental
        return parse_duration(incremental.lookback)


@pytest.fixture(scope="session")
def demo(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The shared end-to-end run: full load, change batch 1 + incremental run, full refresh of two flows."""
    project = Project(make_project(tmp_path_factory.mktemp("demo") / "project"), spark)
    full = capture(project, RUN_FULL, project.run(ALL_FLOWS, RUN_FULL), ALL_FLOWS)

    changes = demo_source.apply_change_batch(project.db, batch=1)
    window_keys, changed_keys = {}, {}
    for flow in SOURCE_FLOWS:
        watermark = full.watermarks[flow]
        incremental = project.runtime.flow(flow).source.incremental
        window_keys[flow] = project.keys_updated_after(flow, watermark - parse_duration(incremental.lookback))
        changed_keys[flow] = project.keys_updated_after(flow, watermark)
    incremental = capture(project, RUN_INCREMENTAL, project.run(ALL_FLOWS, RUN_INCREMENTAL), ALL_FLOWS)

    report = project.run(REFRESHED_FLOWS, RUN_REFRESH, full_refresh=True, steps=["extract", "bronze", "silver"])
    refresh = capture(project, RUN_REFRESH, report, REFRESHED_FLOWS)

    yield Scenario(project, full, changes, window_keys, changed_keys, incremental, refresh)
    project.close()


# ------------------------------------------------------------------------------------------ small fixtures


@pytest.fixture
def project(spark: SparkSession, tmp_path: Path) -> Iterator[Project]:
    """A fresh scratch project (nothing run yet)."""
    proj = Project(make_project(tmp_path / "project"), spark)
    yield proj
    proj.close()


@pytest.fixture
def new_project(spark: SparkSession, tmp_path: Path) -> Iterator[Callable[[str], Project]]:
    """`new_project(name)`: one more fresh scratch project in this test (all closed after it)."""
    made: list[Project] = []

    def make(name: str) -> Project:
        made.append(Project(make_project(tmp_path / name), spark))
        return made[-1]

    yield make
    for proj in made:
        proj.close()


@pytest.fixture(scope="session")
def same_rows() -> Callable[..., None]:
    """`same_rows(actual, expected, what, key=...)`: row-for-row equality with a readable failure."""
    return assert_same_rows
