"""The two sides `pipezone verify` compares, answering the same four questions about key ranges.

- `aggregate(ranges)`: rows and the SUM of row hashes per range, for many ranges in ONE pass;
- `rows(ranges)`: each row's key (its canonical text) and row hash, for the few ranges that differ;
- `sample([(range, rows)], parts)`: key values inside each range, to cut it further, in one pass;
- `texts(keys)`: the canonical text of every compared column of a few rows, to say what differs.

`SqlSide` asks the source database: the hash aggregate is one query (a CASE over the ranges, GROUP BY),
run through Spark's JDBC reader, so only a few numbers per range cross the network. `FrameSide` asks a
Spark DataFrame: silver's live rows, or a SQLite source read through its typed read (SQLite has no hash
function; the file is local). Both see the same derived columns: `pz_c*` the range coordinates (the key
values, or the key's hash), `pz_k*` the key's canonical texts, `pz_h` the row hash, `pz_t*` the texts.

Ranges are half-open `[lo, hi)` tuples compared as row values, `(k1, k2) >= (lo1, lo2)`; None is open.
They are drawn over the key values only where every database orders them as Spark does (numbers, dates,
times); string keys sort by each database's collation (case-blind on MySQL by default), so their ranges
are drawn over a hash of the key instead, which is an integer everywhere.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.jdbc.source import JdbcSource
from pipezone.core.spark.errors import summarize_error
from pipezone.core.steps.verify_columns import ColumnPlan, ComparedColumn, collect_keys, spark_row_hash, spark_text

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

Key = tuple[Any, ...]
Tally = tuple[int, int]  # (rows, SUM of row hashes)
HASH_END = 2**32  # row and key hashes lie in [0, 2^32)
SAMPLE_PER_PART = 32  # keys sampled per sub-range wanted, when splitting a range on a DataFrame


@dataclass(frozen=True)
class KeyRange:
    """Keys in `[lo, hi)`; None leaves that end open (the first range catches source keys below silver's)."""

    lo: Key | None
    hi: Key | None
    depth: int = 0

    def split(self, bounds: Iterable[Key]) -> list[KeyRange]:
        """Sub-ranges at the given bounds (those strictly inside this range), one level deeper."""
        inner = sorted({b for b in bounds if (self.lo is None or b > self.lo) and (self.hi is None or b < self.hi)})
        edges = [self.lo, *inner, self.hi]
        return [KeyRange(a, b, self.depth + 1) for a, b in zip(edges, edges[1:], strict=False)]

    def hash_split(self, parts: int) -> list[KeyRange]:
        """Equal sub-ranges of a range over the key hash."""
        lo = self.lo[0] if self.lo is not None else 0
        hi = self.hi[0] if self.hi is not None else HASH_END
        return self.split((lo + (hi - lo) * i // parts,) for i in range(1, parts))

    def describe(self, hashed: bool) -> str:
        def end(value: Key | None, open_text: str) -> str:
            if value is None:
                return open_text
            return str(value[0]) if len(value) == 1 else "(" + ", ".join(map(str, value)) + ")"

        return f"{'key hash ' if hashed else 'keys '}[{end(self.lo, '-inf')}, {end(self.hi, '+inf')})"


def quantile_bounds(keys: Iterable[Key], parts: int) -> list[Key]:
    """`parts - 1` keys splitting the distinct `keys` into about equal parts (Python orders them as Spark
    does: numbers, dates and times by value)."""
    ordered = sorted(set(keys))
    return [ordered[len(ordered) * i // parts] for i in range(1, parts)] if ordered else []


def _by_bucket(rows: Iterable[Key], buckets: int) -> list[list[Key]]:
    """(bucket, *key) rows as each bucket's keys."""
    found: list[list[Key]] = [[] for _ in range(buckets)]
    for row in rows:
        found[int(row[0])].append(tuple(row[1:]))
    return found


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


class Side(ABC):
    """One side of the comparison; `queries` and `fetched` say what it cost."""

    def __init__(self, label: str, coords: int, keys: int, columns: int) -> None:
        self.label = label
        self.coords, self.keys, self.columns = names("pz_c", coords), names("pz_k", keys), names("pz_t", columns)
        self.queries = 0
        self.fetched = 0
        self.duplicates: set[tuple[str, ...]] = set()  # keys held by more than one row, among those fetched

    def _keyed(self, rows: Iterable[Any]) -> dict[tuple[str, ...], tuple[int, int]]:
        """(key texts..., row hash, range index) rows by key, noting keys that come twice."""
        n = len(self.keys)
        found: dict[tuple[str, ...], tuple[int, int]] = {}
        for row in rows:
            key = tuple(row[:n])
            if key in found:
                self.duplicates.add(key)
            found[key] = (int(row[n]), int(row[n + 1]))
        self.fetched += len(found)
        return found

    @abstractmethod
    def aggregate(self, ranges: Sequence[KeyRange]) -> list[Tally]:
        """(rows, SUM of row hashes) per range, in one pass."""

    @abstractmethod
    def rows(self, ranges: Sequence[KeyRange]) -> dict[tuple[str, ...], tuple[int, int]]:
        """Key texts -> (row hash, index of the range holding it), for every row in the ranges."""

    @abstractmethod
    def sample(self, wanted: Sequence[tuple[KeyRange, int]], parts: int) -> list[list[Key]]:
        """For each (range, rows it holds here): key values in it, enough to split it into `parts`; one pass."""

    @abstractmethod
    def texts(self, wanted: Sequence[tuple[KeyRange, tuple[str, ...]]]) -> dict[tuple[str, ...], tuple[Any, ...]]:
        """Key texts -> every compared column's text, for a few keys (each with the range holding it)."""

    def close(self) -> None:  # noqa: B027 - optional: only a side that caches has something to release
        """Release what the side holds (a cached DataFrame)."""


# ------------------------------------------------------------------ the source database, in its SQL


def sql_condition(rng: KeyRange, coords: Sequence[str], literal: Callable[[Any], str]) -> str:
    """`rng` as SQL over `coords`: a row-value comparison for composite keys."""

    def row(values: Sequence[str]) -> str:
        return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"

    parts = []
    if rng.lo is not None:
        parts.append(f"{row(coords)} >= {row([literal(v) for v in rng.lo])}")
    if rng.hi is not None:
        parts.append(f"{row(coords)} < {row([literal(v) for v in rng.hi])}")
    return " AND ".join(parts) or "1 = 1"


class SqlSide(Side):
    """The source database, asked in its own SQL over `rows_sql` (the typed read with the derived columns)."""

    def __init__(self, source: JdbcSource, spark: SparkSession, rows_sql: str, coords: int, plan: ColumnPlan) -> None:
        super().__init__("source", coords, len(plan.keys), len(plan.hashed))
        self.source, self.spark, self.rows_sql = source, spark, rows_sql

    def _run(self, sql: str, schema: str | None = None, collect: Callable[[DataFrame], Any] | None = None) -> Any:
        """The query's rows (or `collect` of its DataFrame); a failure is one line naming the connection."""
        self.queries += 1
        try:
            df = self.source.run_query(self.spark, sql, schema)
            return collect(df) if collect is not None else df.collect()
        except Exception as err:  # noqa: BLE001 - a JVM error becomes the connection's one line
            raise SourceError(f"verify query failed: {summarize_error(err)}", self.source.connection.name) from err

    def _where(self, ranges: Sequence[KeyRange]) -> str:
        literal = self.source.dialect.literal
        return " OR ".join(f"({sql_condition(r, self.coords, literal)})" for r in ranges)

    def _bucket(self, ranges: Sequence[KeyRange]) -> str:
        """The index of the range holding a row (ranges never overlap), NULL outside them."""
        literal = self.source.dialect.literal
        arms = " ".join(f"WHEN {sql_condition(r, self.coords, literal)} THEN {i}" for i, r in enumerate(ranges))
        return f"CASE {arms} END"

    def aggregate(self, ranges: Sequence[KeyRange]) -> list[Tally]:
        where = "" if all(r.depth == 0 for r in ranges) else f" WHERE {self._where(ranges)}"  # the top covers all
        sql = (
            "SELECT pz_b, COUNT(*) AS pz_n, CAST(SUM(pz_h) AS DECIMAL(38,0)) AS pz_s FROM "
            f"(SELECT {self._bucket(ranges)} AS pz_b, pz_h FROM ({self.rows_sql}) pz_rows{where}) pz_buckets "
            "GROUP BY pz_b"
        )
        found = {
            int(r[0]): (int(r[1]), int(r[2] or 0))
            for r in self._run(sql, "pz_b INT, pz_n BIGINT, pz_s DECIMAL(38,0)")
            if r[0] is not None
        }
        return [found.get(i, (0, 0)) for i in range(len(ranges))]

    def rows(self, ranges: Sequence[KeyRange]) -> dict[tuple[str, ...], tuple[int, int]]:
        select = ", ".join([*self.keys, "pz_h", f"{self._bucket(ranges)} AS pz_b"])
        sql = f"SELECT {select} FROM ({self.rows_sql}) pz_rows WHERE {self._where(ranges)}"
        schema = ", ".join([*(f"{k} STRING" for k in self.keys), "pz_h BIGINT", "pz_b INT"])
        return self._keyed(self._run(sql, schema))

    def sample(self, wanted: Sequence[tuple[KeyRange, int]], parts: int) -> list[list[Key]]:
        """Every (rows // parts)-th key of each range in key order: one window query for all of them."""
        ranges = [rng for rng, _ in wanted]
        coords = ", ".join(self.coords)
        steps = " ".join(f"WHEN {i} THEN {max(1, rows // parts)}" for i, (_, rows) in enumerate(wanted))
        sql = (
            f"SELECT pz_b, {coords} FROM (SELECT pz_b, {coords}, "
            f"ROW_NUMBER() OVER (PARTITION BY pz_b ORDER BY {coords}) AS pz_rn FROM "
            f"(SELECT {self._bucket(ranges)} AS pz_b, {coords} FROM ({self.rows_sql}) pz_rows "
            f"WHERE {self._where(ranges)}) pz_in) pz_q WHERE MOD(pz_rn, CASE pz_b {steps} END) = 0"
        )
        keys = self._run(sql, collect=lambda df: collect_keys(df, ["pz_b", *self.coords]))
        return _by_bucket(keys, len(wanted))

    def texts(self, wanted: Sequence[tuple[KeyRange, tuple[str, ...]]]) -> dict[tuple[str, ...], tuple[Any, ...]]:
        literal = self.source.dialect.literal
        clauses = []
        for rng, key in wanted:
            same = " AND ".join(f"{name} = {literal(text)}" for name, text in zip(self.keys, key, strict=True))
            clauses.append(f"({sql_condition(rng, self.coords, literal)} AND {same})")
        columns = [*self.keys, *self.columns]
        sql = f"SELECT {', '.join(columns)} FROM ({self.rows_sql}) pz_rows WHERE {' OR '.join(clauses)}"
        rows = self._run(sql, ", ".join(f"{c} STRING" for c in columns))
        return {tuple(r[: len(self.keys)]): tuple(r[len(self.keys) :]) for r in rows}


def sql_side(source: JdbcSource, spark: SparkSession, typed_dbtable: str, plan: ColumnPlan) -> SqlSide:
    """The source's side: canonical texts and hashes in the dialect's SQL over the typed read, which selects
    exactly the values the extract reads."""
    dialect = source.dialect

    def text(column: ComparedColumn) -> str:
        rendered = dialect.canonical_text(dialect.quote(column.source), column.spark_type)
        assert rendered is not None, column  # plan_columns kept only hashable columns
        return rendered

    key_texts = [text(k) for k in plan.keys]
    texts = [text(c) for c in plan.hashed]
    key_hash, row_hash = dialect.row_hash_sql(key_texts), dialect.row_hash_sql(texts)
    assert key_hash is not None and row_hash is not None
    coords = [dialect.quote(k.source) for k in plan.keys] if plan.ordered else [key_hash]
    select = [f"{c} AS pz_c{i}" for i, c in enumerate(coords)]
    select += [f"{t} AS pz_k{i}" for i, t in enumerate(key_texts)]
    select += [f"{row_hash} AS pz_h", *(f"{t} AS pz_t{i}" for i, t in enumerate(texts))]
    present = " AND ".join(f"{dialect.quote(k.source)} IS NOT NULL" for k in plan.keys)
    rows_sql = f"SELECT {', '.join(select)} FROM {typed_dbtable} WHERE {present}"
    return SqlSide(source, spark, rows_sql, len(coords), plan)


# ------------------------------------------------------------------ a Spark DataFrame


def spark_condition(rng: KeyRange, coords: Sequence[Column]) -> Column:
    """`rng` over `coords` as a Spark condition (keys are never NULL here, so NOT is exact)."""
    from pyspark.sql import functions as F

    def at_least(values: Key) -> Column:
        pairs = list(zip(coords, values, strict=True))
        column, value = pairs[-1]
        condition = column >= F.lit(value)
        for column, value in reversed(pairs[:-1]):
            condition = (column > F.lit(value)) | ((column == F.lit(value)) & condition)
        return condition

    condition = F.lit(True)
    if rng.lo is not None:
        condition = condition & at_least(rng.lo)
    if rng.hi is not None:
        condition = condition & ~at_least(rng.hi)
    return condition


class FrameSide(Side):
    """A DataFrame holding the derived columns; the narrow part (coordinates, key texts, hash) is cached,
    since every level of the narrowing reads it again."""

    def __init__(self, label: str, full: DataFrame, coords: int, plan: ColumnPlan) -> None:
        super().__init__(label, coords, len(plan.keys), len(plan.hashed))
        self.full = full
        self.narrow = full.select(*self.coords, *self.keys, "pz_h").persist()

    def _coords(self) -> list[Column]:
        from pyspark.sql import functions as F

        return [F.col(c) for c in self.coords]

    def _bucket(self, ranges: Sequence[KeyRange]) -> Column:
        """The index of the range holding a row (ranges never overlap), NULL outside them."""
        from pyspark.sql import functions as F

        bucket = None
        for i, rng in enumerate(ranges):
            condition = spark_condition(rng, self._coords())
            bucket = F.when(condition, F.lit(i)) if bucket is None else bucket.when(condition, F.lit(i))
        assert bucket is not None
        return bucket

    def aggregate(self, ranges: Sequence[KeyRange]) -> list[Tally]:
        from pyspark.sql import functions as F

        self.queries += 1
        totals = (
            self.narrow.select(self._bucket(ranges).alias("pz_b"), "pz_h")
            .filter("pz_b IS NOT NULL")
            .groupBy("pz_b")
            .agg(F.count(F.lit(1)).alias("pz_n"), F.sum("pz_h").alias("pz_s"))
            .collect()
        )
        found = {int(r["pz_b"]): (int(r["pz_n"]), int(r["pz_s"] or 0)) for r in totals}
        return [found.get(i, (0, 0)) for i in range(len(ranges))]

    def rows(self, ranges: Sequence[KeyRange]) -> dict[tuple[str, ...], tuple[int, int]]:
        self.queries += 1
        picked = self.narrow.select(*self.keys, "pz_h", self._bucket(ranges).alias("pz_b"))
        return self._keyed(picked.filter("pz_b IS NOT NULL").collect())

    def sample(self, wanted: Sequence[tuple[KeyRange, int]], parts: int) -> list[list[Key]]:
        """A random sample of each range's keys, about SAMPLE_PER_PART per part wanted: one pass."""
        from pyspark.sql import functions as F

        self.queries += 1
        fractions = F.array(*(F.lit(parts * SAMPLE_PER_PART / max(rows, 1)) for _, rows in wanted))
        df = self.narrow.select(self._bucket([rng for rng, _ in wanted]).alias("pz_b"), *self.coords)
        df = df.filter("pz_b IS NOT NULL").filter(F.rand(7) < F.element_at(fractions, F.col("pz_b") + 1))
        return _by_bucket(collect_keys(df, ["pz_b", *self.coords]), len(wanted))

    def texts(self, wanted: Sequence[tuple[KeyRange, tuple[str, ...]]]) -> dict[tuple[str, ...], tuple[Any, ...]]:
        from pyspark.sql import functions as F

        self.queries += 1
        condition = None
        for rng, key in wanted:
            same = functools.reduce(
                lambda a, b: a & b, (F.col(n) == F.lit(t) for n, t in zip(self.keys, key, strict=True))
            )
            clause = spark_condition(rng, self._coords()) & same
            condition = clause if condition is None else condition | clause
        assert condition is not None
        rows = self.full.filter(condition).select(*self.keys, *self.columns).collect()
        return {tuple(r[: len(self.keys)]): tuple(r[len(self.keys) :]) for r in rows}

    def close(self) -> None:
        self.narrow.unpersist()


def frame_side(label: str, df: DataFrame, plan: ColumnPlan, name_of: Callable[[ComparedColumn], str]) -> FrameSide:
    """A DataFrame's side: `df` holds the compared columns under `name_of(column)` (silver's names in the
    lake, the source's in a SQLite read); values are read as silver's types, as the source's SQL does."""
    from pyspark.sql import functions as F

    def column(c: ComparedColumn) -> Column:
        return F.col("`" + name_of(c).replace("`", "``") + "`")

    def text(c: ComparedColumn) -> Column:
        rendered = spark_text(column(c), c.spark_type)
        assert rendered is not None, c
        return rendered

    key_texts = [text(k) for k in plan.keys]
    coords = [column(k).cast(k.spark_type) for k in plan.keys] if plan.ordered else [spark_row_hash(key_texts)]
    present = functools.reduce(lambda a, b: a & b, (column(k).isNotNull() for k in plan.keys))
    full = df.filter(present).select(
        *(c.alias(f"pz_c{i}") for i, c in enumerate(coords)),
        *(t.alias(f"pz_k{i}") for i, t in enumerate(key_texts)),
        spark_row_hash([text(c) for c in plan.hashed]).alias("pz_h"),
        *(text(c).alias(f"pz_t{i}") for i, c in enumerate(plan.hashed)),
    )
    return FrameSide(label, full, len(coords), plan)
