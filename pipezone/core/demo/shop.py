"""A deterministic SQLite retail database to demo and test incremental sync without a real source.

`create_retail_db` builds customers, products, orders and order_items from a seed; `apply_change_batch`
then inserts and updates rows with `updated_at` beyond everything already there, as an application would,
so each batch is exactly what the next incremental run must pick up. The data carries the quirks cleaning
transforms exist for: NULL emails, mixed-case emails with stray whitespace, untidy country codes,
cancelled orders, inactive products.

Timestamps are UTC text `YYYY-MM-DD HH:MM:SS` in columns declared TIMESTAMP. Money columns are declared
NUMERIC(p,2) and hold the double nearest to a 2-decimal value, so `as_money` (or a JDBC DECIMAL(p,2)
read) gives back the exact amount. All times derive from a fixed epoch, never the wall clock, so the same
seed and batches give byte-for-byte the same rows.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from pipezone.core.demo import reviews
from pipezone.core.demo.tables import DDL

TABLES = ("customers", "products", "orders", "order_items", "reviews")
REVIEWS, NEW_REVIEWS = 300, 20  # initial reviews, reviews a change batch adds
BATCHES_TABLE = "_demo_batches"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # the initial data spans 2024
YEAR_S = 366 * 24 * 3600
CENT = Decimal("0.01")
TS_FORMAT = "%Y-%m-%d %H:%M:%S"

FIRST_NAMES = (
    "Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam",
    "Maria", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Victor", "Wei", "Yara", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Smith", "Müller", "Dubois", "García", "Rossi", "Kowalski", "Tanaka", "Okafor", "Patel",
    "Johansson", "Novak", "O'Brien", "Nguyen", "Haddad", "Costa", "Weber", "Kim", "Larsen", "Moreau",
)  # fmt: skip
COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "ES", "BR", "IN", "JP", "CA", "AU", "NL", "PT")
DOMAINS = ("example.com", "mail.test", "shop.example", "inbox.test")
CATEGORIES = ("Electronics", "Home", "Garden", "Toys", "Books", "Sports", "Beauty", "Grocery")
ADJECTIVES = ("Classic", "Smart", "Eco", "Pro", "Mini", "Ultra", "Cozy", "Rapid", "Solid", "Bright")
NOUNS = ("Lamp", "Kettle", "Backpack", "Speaker", "Blender", "Chair", "Notebook", "Drone", "Mug", "Tent")
LEADING_SPACE = ("", " ", "  ")
TRAILING_SPACE = (" ", "  ", "\t")
STATUSES = ("pending", "shipped", "delivered", "cancelled")
STATUS_WEIGHTS = (12, 20, 60, 8)
NEXT_STATUS = {"pending": "shipped", "shipped": "delivered"}


class DemoSourceError(Exception):
    """A one-line, user-facing problem with the demo database (bad path, repeated batch...)."""


@dataclass
class _Batch:
    """Rows to write, and the clock that hands out increasing timestamps inside one batch."""

    rng: random.Random
    now: int  # epoch seconds; every row written takes a later one
    rows: dict[str, list[tuple[object, ...]]]

    def tick(self, max_step: int = 90) -> str:
        self.now += self.rng.randint(1, max_step)
        return _ts(self.now)


# ---------------------------------------------------------------------------------------------------------
# Public API


def create_retail_db(
    path: Path,
    seed: int = 42,
    customers: int = 200,
    products: int = 50,
    orders: int = 1000,
    *,
    overwrite: bool = False,
) -> dict[str, int]:
    """Build the database at `path` (atomically, via a temporary file) and return its row counts."""
    path = Path(path)
    if customers < 1 or products < 1 or orders < 0:
        raise DemoSourceError("need at least 1 customer and 1 product, and no negative counts")
    if path.is_dir():
        raise DemoSourceError(f"{path} is a directory")
    if path.exists() and not overwrite:
        raise DemoSourceError(f"{path} already exists (pass overwrite / --force to replace it)")
    _check_parent(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        with _connect(tmp, create=True) as conn:
            conn.executescript(f"BEGIN;\n{DDL}{reviews.DDL}")  # one transaction: thousands of rows, one fsync
            batch = _Batch(random.Random(seed), _epoch_s(EPOCH), {t: [] for t in TABLES})
            _generate_initial(batch, customers, products, orders)
            _write(conn, batch, updates={})
            conn.execute(f"INSERT INTO {BATCHES_TABLE} VALUES (0, ?, ?)", (seed, _max_updated_at(conn)))
            conn.execute("COMMIT")
        os.replace(tmp, path)
    except (OSError, sqlite3.Error) as exc:
        raise DemoSourceError(f"cannot create {path}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
    return table_counts(path)


def _check_parent(path: Path) -> None:
    """Name the real culprit when the nearest existing ancestor is a file, not 'File exists'."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DemoSourceError(f"cannot create {path}: {parent} is not a directory")
            return


def apply_change_batch(path: Path, batch: int = 1, seed: int | None = None) -> dict[str, dict[str, int]]:
    """Insert and update rows in every table, stamped after the current max `updated_at`.

    Returns {table: {"inserted": n, "updated": m}}. The batch number (>= 1) is recorded and a repeat is
    refused, so a demo cannot silently double-apply. `seed` defaults to the seed the database was built
    with; the same (seed, batch) sequence always produces the same rows.
    """
    if batch < 1:
        raise DemoSourceError(f"batch must be >= 1 (0 is the initial load), got {batch}")
    with _open_existing(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        seeds = dict(conn.execute(f"SELECT batch, seed FROM {BATCHES_TABLE}").fetchall())
        if batch in seeds:
            raise DemoSourceError(f"batch {batch} was already applied to {path}")
        base_seed = seeds.get(0, 42) if seed is None else seed
        start = _parse_ts(_max_updated_at(conn)) + 60
        work = _Batch(random.Random(base_seed * 1_000_003 + batch), start, {t: [] for t in TABLES})
        updates = _generate_changes(conn, work)
        _write(conn, work, updates)
        conn.execute(f"INSERT INTO {BATCHES_TABLE} VALUES (?, ?, ?)", (batch, base_seed, _ts(work.now)))
        conn.execute("COMMIT")
    return {t: {"inserted": len(work.rows[t]), "updated": len({row[-1] for row in updates.get(t, [])})} for t in TABLES}


def table_counts(path: Path) -> dict[str, int]:
    """Row count of each retail table."""
    with _open_existing(path) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def max_updated_at(path: Path) -> dict[str, str | None]:
    """Each retail table's newest `updated_at` (what an incremental sync's watermark will reach)."""
    with _open_existing(path) as conn:
        return {t: conn.execute(f"SELECT MAX(updated_at) FROM {t}").fetchone()[0] for t in TABLES}


def applied_batches(path: Path) -> list[int]:
    """Change batches applied so far (0, the initial load, excluded)."""
    with _open_existing(path) as conn:
        rows = conn.execute(f"SELECT batch FROM {BATCHES_TABLE} WHERE batch > 0 ORDER BY batch")
        return [r[0] for r in rows]


def as_money(value: float | int | str) -> Decimal:
    """The exact 2-decimal amount a NUMERIC(p,2) column holds (SQLite hands back a double or an int)."""
    return Decimal(str(value)).quantize(CENT)


# ---------------------------------------------------------------------------------------------------------
# Generation


def _generate_initial(b: _Batch, customers: int, products: int, orders: int) -> None:
    """Rows spread over 2024; `b.rows` gets complete tuples in column order."""
    rng = b.rng
    for customer_id in range(1, customers + 1):
        created = b.now + rng.randrange(YEAR_S // 2)
        updated = min(created + rng.choice((0, 0, rng.randrange(YEAR_S // 4))), b.now + YEAR_S - 1)
        b.rows["customers"].append(_customer(rng, customer_id, _ts(created), _ts(updated)))
    for product_id in range(1, products + 1):
        b.rows["products"].append(_product(rng, product_id, _ts(b.now + rng.randrange(YEAR_S))))
    prices = {p[0]: Decimal(str(p[4])) for p in b.rows["products"]}
    created_at = {c[0]: _parse_ts(c[5]) for c in b.rows["customers"]}
    item_id = 0
    for order_id in range(1, orders + 1):
        customer_id = rng.randint(1, customers)
        ordered = created_at[customer_id] + rng.randrange(YEAR_S // 2)
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        updated = ordered + (0 if status == "pending" else rng.randrange(3600, 10 * 86400))
        items = _items(rng, prices, item_id, order_id, _ts(ordered))
        item_id += len(items)
        b.rows["order_items"].extend(items)
        total = sum((Decimal(str(i[4])) * i[3] for i in items), Decimal(0))
        b.rows["orders"].append((order_id, customer_id, _ts(ordered), status, _money(total), _ts(updated)))
    start, spread = b.now, YEAR_S // 2  # reviews come last: drawing them changes none of the rows above
    b.rows["reviews"] = reviews.review_rows(
        start,
        1,
        REVIEWS,
        [p[0] for p in b.rows["products"]],
        list(created_at),
        lambda n: _ts(start + n * spread // REVIEWS),
    )


def _generate_changes(conn: sqlite3.Connection, b: _Batch) -> dict[str, list[tuple[object, ...]]]:
    """New rows go to `b.rows`; updates are returned as parameter tuples ending with the primary key."""
    rng = b.rng
    counts = {t: conn.execute(f"SELECT COUNT(*), MAX(rowid) FROM {t}").fetchone() for t in TABLES}
    updates: dict[str, list[tuple[object, ...]]] = {t: [] for t in TABLES}

    next_customer = (counts["customers"][1] or 0) + 1
    for offset in range(max(1, counts["customers"][0] // 40)):
        ts = b.tick()
        b.rows["customers"].append(_customer(rng, next_customer + offset, ts, ts))
    for (customer_id,) in _sample(conn, rng, "customers", max(1, counts["customers"][0] // 20)):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        updates["customers"].append((_email(rng, first, last, customer_id), _country(rng), b.tick(), customer_id))

    next_product = (counts["products"][1] or 0) + 1
    for offset in range(max(1, counts["products"][0] // 25)):
        b.rows["products"].append(_product(rng, next_product + offset, b.tick()))
    for product_id, price, active in _sample(
        conn, rng, "products", max(1, counts["products"][0] // 10), "unit_price, active"
    ):
        new_price = _money(as_money(price) * Decimal(rng.choice(("0.9", "1.05", "1.1", "1.25"))))
        updates["products"].append(
            (max(new_price, 0.99), int(rng.random() > 0.1) if active else 1, b.tick(), product_id)
        )

    prices = {p: as_money(v) for p, v in conn.execute("SELECT product_id, unit_price FROM products")}
    prices |= {p[0]: Decimal(str(p[4])) for p in b.rows["products"]}
    customer_ids = [r[0] for r in conn.execute("SELECT customer_id FROM customers")]
    customer_ids += [c[0] for c in b.rows["customers"]]
    next_order = (counts["orders"][1] or 0) + 1
    next_item = counts["order_items"][1] or 0
    for order_id in range(next_order, next_order + max(1, counts["orders"][0] // 20)):
        ts = b.tick(30)
        items = _items(rng, prices, next_item, order_id, ts)
        next_item += len(items)
        b.rows["order_items"].extend(items)
        total = sum((Decimal(str(i[4])) * i[3] for i in items), Decimal(0))
        b.rows["orders"].append((order_id, rng.choice(customer_ids), ts, "pending", _money(total), ts))

    open_orders = conn.execute(
        "SELECT order_id, status FROM orders WHERE status IN ('pending', 'shipped') ORDER BY order_id"
    ).fetchall()
    for order_id, status in rng.sample(open_orders, min(len(open_orders), max(1, counts["orders"][0] // 50))):
        new_status = "cancelled" if status == "pending" and rng.random() < 0.2 else NEXT_STATUS[status]
        updates["orders"].append((new_status, None, b.tick(), order_id))

    # Quantity changes on existing lines; their orders' totals are recomputed in _write.
    for item_id, quantity in _sample(conn, rng, "order_items", max(1, counts["order_items"][0] // 100), "quantity"):
        updates["order_items"].append((quantity + rng.randint(1, 3), b.tick(), item_id))
    now, next_review = b.now, (counts["reviews"][1] or 0) + 1  # seeded by the clock: b.rng's draws stay as they were
    b.rows["reviews"] = reviews.review_rows(
        now, next_review, NEW_REVIEWS, sorted(prices), customer_ids, lambda n: _ts(now + 1 + n)
    )  # inserts only: reviews are never edited
    return updates


def _customer(rng: random.Random, customer_id: int, created: str, updated: str) -> tuple[object, ...]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return (customer_id, first, last, _email(rng, first, last, customer_id), _country(rng), created, updated)


def _email(rng: random.Random, first: str, last: str, n: int) -> str | None:
    """Mostly clean; some NULL and some `  Ana.Silva7@EXAMPLE.COM ` for cleaning transforms to fix."""
    roll = rng.random()
    if roll < 0.05:
        return None
    local = f"{first}.{last}{n}".replace("'", "").replace(" ", "")
    domain = rng.choice(DOMAINS)
    if roll < 0.13:
        return f"{rng.choice(LEADING_SPACE)}{local}@{domain.upper()}{rng.choice(TRAILING_SPACE)}"
    return f"{local}@{domain}".lower()


def _country(rng: random.Random) -> str | None:
    roll = rng.random()
    country = rng.choice(COUNTRIES)
    if roll < 0.02:
        return None
    if roll < 0.06:
        return rng.choice((country.lower(), f"{country} ", f" {country.lower()}"))
    return country


def _product(rng: random.Random, product_id: int, updated: str) -> tuple[object, ...]:
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    price = _money(Decimal(rng.randint(199, 49_999)) / 100)
    active = int(rng.random() > 0.1)
    return (product_id, f"SKU-{product_id:05d}", name, rng.choice(CATEGORIES), price, active, updated)


def _items(
    rng: random.Random, prices: dict[int, Decimal], last_id: int, order_id: int, ts: str
) -> list[tuple[object, ...]]:
    products = rng.sample(sorted(prices), min(len(prices), rng.randint(1, 4)))
    return [
        (last_id + n, order_id, product_id, rng.choice((1, 1, 1, 2, 2, 3, 5)), _money(prices[product_id]), ts)
        for n, product_id in enumerate(products, start=1)
    ]


def _sample(
    conn: sqlite3.Connection, rng: random.Random, table: str, k: int, columns: str = ""
) -> list[tuple[object, ...]]:
    pk = f"{table[:-1]}_id"
    select = f"SELECT {pk}{', ' + columns if columns else ''} FROM {table} ORDER BY {pk}"
    rows = conn.execute(select).fetchall()
    return rng.sample(rows, min(k, len(rows)))


# ---------------------------------------------------------------------------------------------------------
# Storage


UPDATE_SQL = {
    "customers": "UPDATE customers SET email = ?, country = ?, updated_at = ? WHERE customer_id = ?",
    "products": "UPDATE products SET unit_price = ?, active = ?, updated_at = ? WHERE product_id = ?",
    "orders": "UPDATE orders SET status = ?, total_amount = COALESCE(?, total_amount), updated_at = ?"
    " WHERE order_id = ?",
    "order_items": "UPDATE order_items SET quantity = ?, updated_at = ? WHERE order_item_id = ?",
}


def _write(conn: sqlite3.Connection, b: _Batch, updates: dict[str, list[tuple[object, ...]]]) -> None:
    for table in TABLES:
        rows = b.rows[table]
        if rows:
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
        if updates.get(table):
            conn.executemany(UPDATE_SQL[table], updates[table])
    _recompute_totals(conn, b, updates)


def _recompute_totals(conn: sqlite3.Connection, b: _Batch, updates: dict[str, list[tuple[object, ...]]]) -> None:
    """Orders whose lines changed get a new total and a new `updated_at`, as the application would do."""
    item_ids = [u[-1] for u in updates.get("order_items", [])]
    if not item_ids:
        return
    marks = ", ".join("?" * len(item_ids))
    order_ids = [r[0] for r in conn.execute(
        f"SELECT DISTINCT order_id FROM order_items WHERE order_item_id IN ({marks}) ORDER BY order_id", item_ids
    )]  # fmt: skip
    for order_id in order_ids:
        lines = conn.execute("SELECT quantity, unit_price FROM order_items WHERE order_id = ?", (order_id,))
        total = sum((as_money(price) * qty for qty, price in lines), Decimal(0))
        status = conn.execute("SELECT status FROM orders WHERE order_id = ?", (order_id,)).fetchone()[0]
        update = (status, _money(total), b.tick(), order_id)
        conn.execute(UPDATE_SQL["orders"], update)
        updates.setdefault("orders", []).append(update)


@contextmanager
def _connect(path: Path, *, create: bool = False) -> Iterator[sqlite3.Connection]:
    """Autocommit connection: callers BEGIN/COMMIT themselves so a batch is all-or-nothing."""
    uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


@contextmanager
def _open_existing(path: Path) -> Iterator[sqlite3.Connection]:
    """Open a demo database that must already exist; driver errors become one-line DemoSourceErrors."""
    path = Path(path)
    if not path.is_file():
        raise DemoSourceError(f"no demo database at {path}")
    try:
        with _connect(path) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [t for t in (*TABLES, BATCHES_TABLE) if t not in names]
            if missing:
                raise DemoSourceError(f"{path} is not a demo retail database (missing {', '.join(missing)})")
            yield conn
    except sqlite3.Error as exc:
        raise DemoSourceError(f"{path}: {exc}") from None


def _max_updated_at(conn: sqlite3.Connection) -> str:
    union = " UNION ALL ".join(f"SELECT MAX(updated_at) AS m FROM {t}" for t in TABLES)
    return conn.execute(f"SELECT MAX(m) FROM ({union})").fetchone()[0] or _ts(_epoch_s(EPOCH))


def _money(value: Decimal) -> float:
    """The double nearest to the 2-decimal amount; SQLite has no decimal type."""
    return float(value.quantize(CENT))


def _epoch_s(value: datetime) -> int:
    return int(value.timestamp())


def _ts(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime(TS_FORMAT)


def _parse_ts(text: str) -> int:
    return _epoch_s(datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC))


# ---------------------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipezone.core.demo.shop create|change|counts PATH`; one line per table."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "create":
            counts = create_retail_db(
                args.path, args.seed, args.customers, args.products, args.orders, overwrite=args.force
            )
            lines = [f"{t}: {n} rows" for t, n in counts.items()]
        elif args.command == "change":
            changes = apply_change_batch(args.path, args.batch, args.seed)
            lines = [f"{t}: {c['inserted']} inserted, {c['updated']} updated" for t, c in changes.items()]
        else:
            counts, newest = table_counts(args.path), max_updated_at(args.path)
            lines = [f"{t}: {n} rows, max updated_at {newest[t]}" for t, n in counts.items()]
    except DemoSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipezone.core.demo.shop", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="build a new retail database")
    create.add_argument("path", type=Path)
    create.add_argument("--seed", type=int, default=42)
    create.add_argument("--customers", type=int, default=200)
    create.add_argument("--products", type=int, default=50)
    create.add_argument("--orders", type=int, default=1000)
    create.add_argument("--force", action="store_true", help="replace an existing file")
    change = commands.add_parser("change", help="apply a batch of inserts and updates")
    change.add_argument("path", type=Path)
    change.add_argument("--batch", type=int, required=True)
    change.add_argument("--seed", type=int, default=None, help="default: the seed the database was built with")
    counts = commands.add_parser("counts", help="rows and newest updated_at per table")
    counts.add_argument("path", type=Path)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
