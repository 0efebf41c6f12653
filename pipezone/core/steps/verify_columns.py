"""What `pipezone verify` compares, and the canonical text and row hash of a row in Spark.

A source column is compared with the silver column it became: bronze names it in snake_case
(steps/standardize.py), then silver's transforms may rename it. A transform that changes values (cast,
trim, lower, a derive over the column) or drops the column leaves that column out of the comparison,
since silver no longer holds the value the source does; a transform that changes which rows silver
holds (filter, deduplicate on other columns) makes the flow not verifiable at all, since every key left
out would read as missing. Key columns must reach silver unchanged.

The row hash is computed identically here and in the source's SQL (JdbcDialect.canonical_text /
row_hash_sql): each column's canonical text by its Spark type in silver, '=' + text or 'N' for NULL,
joined by chr(31), MD5 of the UTF-8 bytes, the first 8 hex digits as an integer. Float, double and nested
columns have no text both sides render alike: they are compared by key presence only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pipezone.core.spec.flow import Transform
from pipezone.core.steps.standardize import snake_case

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

INTEGER_TYPES = ("tinyint", "smallint", "int", "bigint")
TIME_TYPES = ("timestamp", "timestamp_ntz")
ORDERED_TYPES = (*INTEGER_TYPES, "date", *TIME_TYPES)  # with decimals: ordered alike in every database
SEPARATOR = "\x1f"  # chr(31), the unit separator: joins a row's column texts
NULL_TEXT = "N"  # a NULL's text; every value's text starts with '=', so none reads as NULL
TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss.SSSSSS"  # the session is UTC (spark/session.py)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NotVerifiable(Exception):
    """The flow's silver cannot be compared with its source: one line saying why."""


@dataclass(frozen=True)
class ComparedColumn:
    """A source column and the silver column holding its value, hashed by silver's type."""

    source: str
    silver: str
    spark_type: str


@dataclass(frozen=True)
class ColumnPlan:
    """The key columns, every hashed column (keys first), the columns left out and why, and how key ranges
    are drawn: over the key values themselves (`ordered`: numbers, dates and times order alike in every
    database) or over a hash of the key (strings sort by each database's collation, not Spark's)."""

    keys: list[ComparedColumn]
    hashed: list[ComparedColumn]
    skipped: list[str] = field(default_factory=list)  # "column (why)"
    ordered: bool = True

    @property
    def key_types(self) -> list[str]:
        return [k.spark_type for k in self.keys]


def silver_names(
    source_columns: Sequence[str], transforms: Sequence[Transform], primary_key: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """(source column -> its silver name, for the columns silver keeps as read; columns left out with why).
    Raises NotVerifiable for transforms that make silver hold a subset of the source's rows."""
    current = {snake_case(c): c for c in source_columns}  # name in the frame -> source column
    skipped: list[str] = []

    def rewrite(names: Sequence[str], why: str) -> None:
        for name in names:
            if name in current:
                skipped.append(f"{current.pop(name)} ({why})")

    for t in transforms:
        kind = t.kind
        if kind == "rename":
            renames = dict(t.rename or {})
            current = {renames.get(name, name): source for name, source in current.items()}
        elif kind in ("cast", "trim", "lower"):
            rewrite(list(getattr(t, kind) or []), f"silver transform {kind}")
        elif kind == "derive":
            rewrite(list(t.derive or {}), "silver transform derive")
        elif kind == "drop":
            rewrite(list(t.drop or []), "dropped by silver transforms")
        elif kind == "filter":
            raise NotVerifiable(f"silver transforms filter rows ({t.filter}): silver holds a subset of the source")
        elif kind == "deduplicate" and t.deduplicate is not None:
            key_names = {name for name, source in current.items() if source in primary_key}
            if set(t.deduplicate.keys) != key_names:  # on the primary key it changes nothing: one row per key
                raise NotVerifiable(
                    f"silver transforms deduplicate on {', '.join(t.deduplicate.keys)}: silver holds a subset"
                )
    return {source: name for name, source in current.items()}, skipped


def plan_columns(
    primary_key: Sequence[str],
    source_columns: Sequence[str],
    transforms: Sequence[Transform],
    silver_types: dict[str, str],
    hashable: Callable[[str], bool],
) -> ColumnPlan:
    """The comparison plan: `source_columns` as the read names them, `silver_types` silver's business
    columns (name -> Spark type), `hashable(type)` whether both sides render that type alike."""
    by_name = {c.lower(): c for c in source_columns}
    missing = [k for k in primary_key if k not in source_columns and k.lower() not in by_name]
    if missing:
        raise NotVerifiable(f"primary_key column {', '.join(missing)} is not a column of the source read")
    pk = [k if k in source_columns else by_name[k.lower()] for k in primary_key]
    names, skipped = silver_names(source_columns, transforms, pk)
    keys: list[ComparedColumn] = []
    for column in pk:
        name = names.get(column)
        if name is None or name not in silver_types:
            why = next((s for s in skipped if s.startswith(f"{column} (")), f"{column} (not in silver)")
            raise NotVerifiable(f"key column {why}: silver rows cannot be matched to the source's")
        if not hashable(silver_types[name]):
            raise NotVerifiable(f"key column {column} is {silver_types[name]}: it has no text both sides render alike")
        keys.append(ComparedColumn(column, name, silver_types[name]))
    hashed = list(keys)
    for column in source_columns:
        name = names.get(column)
        if column in pk or name is None:
            continue
        if name not in silver_types:
            skipped.append(f"{column} (not in silver)")
        elif not hashable(silver_types[name]):
            skipped.append(f"{column} ({silver_types[name]}: not hashed)")
        else:
            hashed.append(ComparedColumn(column, name, silver_types[name]))
    ordered = all(k.spark_type in ORDERED_TYPES or k.spark_type.startswith("decimal(") for k in keys)
    return ColumnPlan(keys, hashed, skipped, ordered)


# ------------------------------------------------------------------ canonical text and row hash in Spark


def spark_text(column: Column, spark_type: str) -> Column | None:
    """The canonical text of `column`'s value read as `spark_type` (NULL stays NULL); None: not hashed."""
    from pyspark.sql import functions as F

    if spark_type in INTEGER_TYPES or spark_type.startswith("decimal("):
        return column.cast(spark_type).cast("string")  # decimals print with exactly their scale, never 1E+3
    if spark_type == "string":
        return column.cast("string")
    if spark_type == "boolean":
        flag = column.cast("boolean")
        return F.when(flag, F.lit("1")).when(~flag, F.lit("0"))
    if spark_type == "date":
        return F.date_format(column.cast("date"), "yyyy-MM-dd")
    if spark_type in TIME_TYPES:
        return F.date_format(column.cast(spark_type), TIMESTAMP_FORMAT)
    if spark_type == "binary":
        return F.hex(column.cast("binary"))
    return None


def spark_hashable(spark_type: str) -> bool:
    from pyspark.sql import functions as F

    return spark_text(F.lit(None), spark_type) is not None


def spark_row_hash(texts: Sequence[Column]) -> Column:
    """MD5 over the joined texts, its first 8 hex digits as a bigint in [0, 2^32): as row_hash_sql does."""
    from pyspark.sql import functions as F

    fields = [F.coalesce(F.concat(F.lit("="), text), F.lit(NULL_TEXT)) for text in texts]
    return F.conv(F.substring(F.md5(F.concat_ws(SEPARATOR, *fields)), 1, 8), 16, 10).cast("bigint")


# ------------------------------------------------------------------ key values


def collect_keys(df: DataFrame, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows of `names` as Python tuples, timestamps as aware UTC datetimes read through their epoch
    microseconds (PySpark would otherwise render them in this process's local time zone)."""
    from pyspark.sql import functions as F

    kinds = {f.name: f.dataType.typeName() for f in df.schema.fields}
    stamps = [n for n in names if kinds.get(n) in ("timestamp", "timestamp_ntz")]
    columns = [F.col(f"`{n}`") for n in names]
    select = [
        F.unix_micros(c.cast("timestamp")).alias(n) if n in stamps else c for n, c in zip(names, columns, strict=True)
    ]
    rows = df.select(*select).collect()
    return [
        tuple(
            UNIX_EPOCH + timedelta(microseconds=v) if n in stamps and v is not None else v
            for n, v in zip(names, r, strict=True)
        )
        for r in rows
    ]


def sort_key(texts: Sequence[str], key_types: Sequence[str]) -> tuple[Any, ...]:
    """Canonical key texts ordered as their values are (integers as numbers), for listing keys."""
    out: list[Any] = []
    for text, kind in zip(texts, key_types, strict=True):
        if kind in INTEGER_TYPES or kind.startswith("decimal("):
            try:
                out.append((0, Decimal(text), ""))
                continue
            except ArithmeticError:
                pass
        out.append((1, Decimal(0), text))
    return tuple(out)
