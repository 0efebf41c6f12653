"""Schema drift policy: what to do when a batch's columns differ from the table it is written into.

Called before each write into raw, bronze and silver with the flow's `schema_drift`:
- `freeze`: any new, dropped, widened or changed column fails the step, naming them all.
- `evolve`: new columns are kept (the Delta writes evolve the schema); a dropped column never deletes data;
  a safe widening is left to Delta's type widening; an unsafe type change still fails.
- An incoming type narrower than the table's (table bigint, batch int) is no drift: it is cast up.

Measured on Delta 4.4 (tests/core/lake/test_schema_drift.py): with `delta.enableTypeWidening` set, an append with
mergeSchema and a MERGE with schema evolution widen integral -> wider integral, byte/short/int -> double,
float -> double, integral -> decimal(>= 10 or 20 integer digits) and decimal -> decimal keeping scale and
integer digits. Without the property an append fails and a MERGE silently casts the batch down to the table's
type (overflow errors, dropped decimal digits). long -> double (inexact) and date -> timestamp (a MERGE truncates
it to the date) are unsafe; date -> timestamp_ntz would need the extra `timestampNtz` table feature, so it
counts as unsafe too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipezone.core.lake import delta_tables as dt

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructField, StructType

METADATA_PREFIX = "_pz_"
POLICIES = ("evolve", "freeze")

# Set at table creation (with delta_tables.TABLE_PROPERTIES) so mergeSchema / withSchemaEvolution may widen
# column types; `enable_widening` sets it on tables created before.
WIDENING_TABLE_PROPERTIES = {"delta.enableTypeWidening": "true"}

WAY_OUT = "change the flow's silver cast or run a full refresh into a new table"

# Integral types by width, and the integer digits a decimal needs to hold each exactly; the minimums are
# Delta's (decimal(10,0) for byte/short/int, decimal(20,0) for long), not the tightest possible. Keyed by
# DataType.typeName() so that importing this module does not load pyspark, like the rest of pipezone.core.
_INTEGRAL_RANK = {"byte": 1, "short": 2, "integer": 3, "long": 4}
_DECIMAL_DIGITS = {"byte": 10, "short": 10, "integer": 10, "long": 20}


class SchemaDriftError(ValueError):
    """A batch's schema breaks the flow's drift policy; the message is one line naming every column."""


@dataclass(frozen=True)
class Drift:
    """How an incoming schema differs from a table's, metadata (`_pz_*`) columns aside."""

    added: list[tuple[str, str]] = field(default_factory=list)  # (column, type)
    dropped: list[str] = field(default_factory=list)
    widened: list[tuple[str, str, str]] = field(default_factory=list)  # (column, old, new): Delta widens it
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (column, old, new): unsafe

    def empty(self) -> bool:
        return not (self.added or self.dropped or self.widened or self.changed)

    def describe(self) -> str:
        """One line, e.g. 'new columns coupon_code (string); dropped columns note'."""
        parts = []
        if self.added:
            parts.append("new columns " + ", ".join(f"{name} ({kind})" for name, kind in self.added))
        if self.dropped:
            parts.append("dropped columns " + ", ".join(self.dropped))
        if self.widened:
            parts.append("widened types " + ", ".join(f"{n} {old} -> {new}" for n, old, new in self.widened))
        if self.changed:
            parts.append("changed types " + ", ".join(f"{n} {old} -> {new}" for n, old, new in self.changed))
        return "; ".join(parts) or "no schema drift"


def is_widening(old: DataType, new: DataType) -> bool:
    """Whether every `old` value is exactly a `new` value and Delta's type widening applies the change."""
    was, now = old.typeName(), new.typeName()
    if was in _INTEGRAL_RANK:
        if now in _INTEGRAL_RANK:
            return _INTEGRAL_RANK[now] > _INTEGRAL_RANK[was]
        if now == "decimal":
            return new.precision - new.scale >= _DECIMAL_DIGITS[was]  # type: ignore[attr-defined]
        return now == "double" and was != "long"  # a long has more digits than a double holds exactly
    if was == "float":
        return now == "double"
    if was == now == "decimal":
        p, s, p2, s2 = old.precision, old.scale, new.precision, new.scale  # type: ignore[attr-defined]
        return s2 >= s and p2 - s2 >= p - s and (p2, s2) != (p, s)
    return False


def added_fields(old: DataType, new: DataType, path: str) -> list[tuple[str, str]] | None:
    """The nested fields `new` adds to `old` (`customer.vip`, `items.element.note`) when adding fields is
    all it does, else None. Delta's schema evolution adds nested fields on append and MERGE (documents
    grow fields: a MongoDB sub-document, a REST object)."""
    was, now = old.typeName(), new.typeName()
    if was == now == "struct":
        fields = {f.name.lower(): f for f in new.fields}  # type: ignore[attr-defined]
        kept = [f.name.lower() for f in old.fields]  # type: ignore[attr-defined]
        if any(name not in fields for name in kept) or [n.lower() for n in list(fields)[: len(kept)]] != kept:
            return None
        added = [(f"{path}.{f.name}", f.dataType.simpleString()) for key, f in fields.items() if key not in kept]
        for f in old.fields:  # type: ignore[attr-defined]
            inner = _same_or_added(f.dataType, fields[f.name.lower()].dataType, f"{path}.{f.name}")
            if inner is None:
                return None
            added += inner
        return added
    if was == now == "array":
        return _same_or_added(old.elementType, new.elementType, f"{path}.element")  # type: ignore[attr-defined]
    return None


def _same_or_added(old: DataType, new: DataType, path: str) -> list[tuple[str, str]] | None:
    return [] if old.simpleString() == new.simpleString() else added_fields(old, new, path)


def _business_fields(schema: StructType) -> dict[str, StructField]:
    """Fields by lower-cased name (Spark resolves names case-insensitively), metadata columns left out."""
    return {f.name.lower(): f for f in schema.fields if not f.name.lower().startswith(METADATA_PREFIX)}


def _casts_up(incoming: DataType, existing: DataType) -> bool:
    """A narrower incoming type (or an all-NULL column) the table's type holds exactly: no drift."""
    return incoming.typeName() == "void" or is_widening(incoming, existing)


def compare(incoming: StructType, existing: StructType | None) -> Drift:
    """The drift from `existing` (the table, None if there is none yet) to `incoming` (the batch).

    Nested types compare by their simpleString: a struct (or an array's struct) that only gains fields adds
    them (`customer.vip`); any other change inside a struct, array or map is unsafe.
    """
    if existing is None:
        return Drift()
    new, old = _business_fields(incoming), _business_fields(existing)
    widened: list[tuple[str, str, str]] = []
    changed: list[tuple[str, str, str]] = []
    nested: list[tuple[str, str]] = []
    for key, f in new.items():
        if key not in old:
            continue
        was, now = old[key].dataType, f.dataType
        if was.simpleString() == now.simpleString() or _casts_up(now, was):
            continue
        grown = added_fields(was, now, f.name)
        if grown:
            nested += grown
            continue
        (widened if is_widening(was, now) else changed).append((f.name, was.simpleString(), now.simpleString()))
    return Drift(
        added=[(f.name, f.dataType.simpleString()) for key, f in new.items() if key not in old] + nested,
        dropped=[f.name for key, f in old.items() if key not in new],
        widened=widened,
        changed=changed,
    )


def conform(
    df: DataFrame, existing: StructType | None, policy: str, table: str, *, for_merge: bool = False
) -> tuple[DataFrame, Drift]:
    """Apply the drift policy to a batch about to be written into `table` (e.g. 'silver.retail_orders').

    Returns the batch to write and the drift found (for the run log). Raises SchemaDriftError when the policy
    refuses it. Widened columns are left as they are: the table needs WIDENING_TABLE_PROPERTIES (see
    `enable_widening`), else a MERGE would cast them down. Columns the batch lacks are added as NULL for an
    append, so old rows keep their values; for a MERGE (`for_merge`) they are left out, because a NULL in the
    source would overwrite the target's value where `whenMatchedUpdateAll` with schema evolution keeps it.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown schema_drift policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if existing is None:
        return df, Drift()
    drift = compare(df.schema, existing)
    if policy == "freeze" and not drift.empty():
        raise SchemaDriftError(f"schema drift in {table} (schema_drift: freeze): {drift.describe()}")
    if drift.changed:
        unsafe = Drift(changed=drift.changed).describe()
        raise SchemaDriftError(f"schema drift in {table} (schema_drift: {policy}): {unsafe}: {WAY_OUT}")
    return _align(df, existing, add_missing=not for_merge), drift


def _align(df: DataFrame, existing: StructType, *, add_missing: bool) -> DataFrame:
    """Cast narrower columns up to the table's types and, if asked, add the table's missing columns as NULL."""
    from pyspark.sql import functions as F

    old = _business_fields(existing)
    columns = []
    for f in df.schema.fields:
        column = F.col("`" + f.name.replace("`", "``") + "`")
        target = old.get(f.name.lower())
        if target is not None and _casts_up(f.dataType, target.dataType):
            column = column.cast(target.dataType).alias(f.name)
        columns.append(column)
    if add_missing:
        present = {name.lower() for name in df.columns}
        columns += [F.lit(None).cast(f.dataType).alias(f.name) for key, f in old.items() if key not in present]
    return df.select(*columns)


def enable_widening(spark: SparkSession, path: str) -> None:
    """Set WIDENING_TABLE_PROPERTIES on an existing table that lacks them (one commit; none when already set).

    Upgrades the table's protocol (reader 3 / writer 7, feature typeWidening): readers need Delta 3.2 or newer.
    """
    if not dt.table_exists(spark, path):
        return  # the first write creates the table with the properties
    properties = spark.sql(f"DESCRIBE DETAIL {dt.sql_table(path)}").first()["properties"] or {}
    missing = {key: value for key, value in WIDENING_TABLE_PROPERTIES.items() if properties.get(key) != value}
    if missing:
        assignments = ", ".join(f"'{key}' = '{value}'" for key, value in missing.items())
        spark.sql(f"ALTER TABLE {dt.sql_table(path)} SET TBLPROPERTIES ({assignments})")


def conform_to_table(
    df: DataFrame, path: str, policy: str, table: str, *, for_merge: bool = False
) -> tuple[DataFrame, Drift]:
    """`conform` against the Delta table at `path` (none yet: nothing to compare), turning type widening
    on for that table only when this batch widens a column (it raises the table's protocol version)."""
    spark = df.sparkSession
    if not dt.table_exists(spark, path):
        return df, Drift()
    existing = spark.read.format("delta").load(path).schema
    df, drift = conform(df, existing, policy, table, for_merge=for_merge)
    if drift.widened:
        enable_widening(spark, path)
    return df, drift
