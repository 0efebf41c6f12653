"""Exact values from JDBC sources: which columns are read through a SQL expression, and as which type.

Spark's JDBC reader maps a driver's types well for the common cases and loses or breaks values in the
others: MySQL TIME beyond 24 h fails the read, DECIMAL(65,30) is cut to 3 decimals, PostgreSQL time
becomes a 1970 timestamp, an n-dimensional array fails. Each dialect names the columns it reads through
an expression of its own SQL instead (`JdbcDialect.read_expression`: the database's own text of the value,
a cast to an exact number), from the type the driver reports (`jdbcClientType` in Spark's schema metadata).

The read then selects those expressions over the window: `(SELECT expr AS col, ... FROM <window>)`, the
same text for the JDBC and the Arrow path, so both land identical values. A flow's `source.column_types`
overrides a column: `string` is the database's own text of the value, any other type the driver's value
read as that Spark type (README, "Type mappings").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

    from pipezone.core.sources.jdbc.dialect import JdbcDialect

CLIENT_TYPE_KEY = "jdbcClientType"  # Spark's schema metadata: the driver's own type name
SCALE_KEY = "scale"  # Spark's schema metadata: the driver's scale of a numeric column
TYPED_ALIAS = "pz_typed"
# Spark maps a decimal wider than 38 digits to decimal(38, s - (p - 38)) and keeps the driver's scale in the
# metadata, so a cut scale shows, except for integers: DECIMAL(40,0) is decimal(38,0) with scale 0 as
# DECIMAL(38,0) is (the driver's precision is not in the metadata). Both are read as the server's text.
AMBIGUOUS_WIDE_DECIMAL = "decimal(38,0)"


@dataclass(frozen=True)
class SourceColumn:
    """A column of a read as the JDBC driver reports it, and as Spark would map it."""

    name: str
    spark_type: str  # Spark's mapping, `DataType.simpleString()`
    native_type: str  # the driver's type name, upper-cased (`VARCHAR`, `BIGINT UNSIGNED`, `_INT4`, `MOOD`)
    scale: int  # the driver's scale (numbers), 0 where it has none
    metadata: Mapping[str, object]


@dataclass(frozen=True)
class TypedRead:
    """How to read a relation exactly: the `dbtable` text and the Spark types to force (customSchema)."""

    dbtable: str
    spark_types: Mapping[str, str]
    native_types: Mapping[str, str]  # column -> the driver's type of what the typed read selects


def source_columns(schema: StructType) -> list[SourceColumn]:
    """The columns of a schema-only JDBC load, with what the driver said about each."""
    columns = []
    for field in schema.fields:
        meta = dict(field.metadata)
        columns.append(
            SourceColumn(
                name=field.name,
                spark_type=field.dataType.simpleString(),
                native_type=str(meta.get(CLIENT_TYPE_KEY, "")).upper(),
                scale=int(meta.get(SCALE_KEY, 0) or 0),
                metadata=meta,
            )
        )
    return columns


def typed_read(
    dialect: JdbcDialect, dbtable: str, columns: Sequence[SourceColumn], overrides: Mapping[str, str]
) -> TypedRead:
    """`dbtable` with the columns the dialect (or the flow's `types`) reads through an expression selected
    as such; unchanged when no column needs one. Unknown override names are checked by `check_overrides`."""
    expressions: dict[str, str] = {}
    spark_types: dict[str, str] = {}
    native = {c.name: c.native_type for c in columns}
    for column in columns:
        quoted = dialect.quote(column.name)
        override = overrides.get(column.name)
        if override is not None:
            spark_types[column.name] = override
            if override.lower() == "string":
                expressions[column.name] = dialect.text_expression(quoted, column)
            continue
        mapped = dialect.read_expression(quoted, column)
        if mapped is not None:
            expressions[column.name], spark_types[column.name] = mapped
            native[column.name] = "EXPRESSION"
    if not expressions:
        return TypedRead(dbtable, spark_types, native)
    select = ", ".join(
        f"{expressions[c.name]} AS {dialect.quote(c.name)}" if c.name in expressions else dialect.quote(c.name)
        for c in columns
    )
    return TypedRead(f"(SELECT {select} FROM {dbtable}) {TYPED_ALIAS}", spark_types, native)


def check_overrides(columns: Sequence[SourceColumn], overrides: Mapping[str, str]) -> str | None:
    """One line naming the `source.column_types` entries the read has no column for, or None."""
    known = {c.name for c in columns}
    missing = sorted(name for name in overrides if name not in known)
    if not missing:
        return None
    columns = ", ".join(sorted(known))
    return f"source.column_types names {', '.join(missing)}, not a column of the read (columns: {columns})"
