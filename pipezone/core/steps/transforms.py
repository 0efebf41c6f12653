"""Silver's declarative transforms, applied in order to a DataFrame.

Each transform kind is one small function; `apply_transforms` also tracks how key and cursor columns
are renamed so the merge that follows uses the right names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipezone.core.lake.delta_tables import DELETED
from pipezone.core.spec.flow import Transform

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _rename(df: DataFrame, t: Transform) -> DataFrame:
    return df.withColumnsRenamed(dict(t.rename or {}))


def _cast(df: DataFrame, t: Transform) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumns({c: F.col(f"`{c}`").cast(kind) for c, kind in (t.cast or {}).items()})


def _filter(df: DataFrame, t: Transform) -> DataFrame:
    """Tombstones carry only keys, so a filter on other columns must not drop them."""
    from pyspark.sql import functions as F

    keep = F.expr(t.filter or "true")
    if DELETED in df.columns:
        keep = keep | F.col(DELETED)
    return df.filter(keep)


def _derive(df: DataFrame, t: Transform) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumns({name: F.expr(expr) for name, expr in (t.derive or {}).items()})


def _drop(df: DataFrame, t: Transform) -> DataFrame:
    return df.drop(*(t.drop or []))


# Spark's one-argument trim() strips spaces only; tabs and line breaks are surrounding whitespace too.
# A regex, not trim(col, chars): Spark 4.2 deprecates the two-argument TRIM (a warning on every run).
_SURROUNDING_WHITESPACE = r"^[ \t\n\r\f\x0B]+|[ \t\n\r\f\x0B]+$"


def _trim(df: DataFrame, t: Transform) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumns({c: F.regexp_replace(F.col(f"`{c}`"), _SURROUNDING_WHITESPACE, "") for c in t.trim or []})


def _lower(df: DataFrame, t: Transform) -> DataFrame:
    from pyspark.sql import functions as F

    return df.withColumns({c: F.lower(F.col(f"`{c}`")) for c in t.lower or []})


def _deduplicate(df: DataFrame, t: Transform) -> DataFrame:
    spec = t.deduplicate
    assert spec is not None
    return latest_per_key(df, spec.keys, [spec.order_by] if spec.order_by else [])


_APPLY = {
    "rename": _rename,
    "cast": _cast,
    "filter": _filter,
    "derive": _derive,
    "drop": _drop,
    "trim": _trim,
    "lower": _lower,
    "deduplicate": _deduplicate,
}


def latest_per_key(df: DataFrame, keys: list[str], order_by: list[str]) -> DataFrame:
    """One row per key: the one with the highest `order_by` values (nulls lowest)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not keys:
        return df
    order = [F.col(f"`{c}`").desc_nulls_last() for c in order_by] or [F.lit(1)]
    window = Window.partitionBy(*[F.col(f"`{k}`") for k in keys]).orderBy(*order)
    return df.withColumn("_pz_rank", F.row_number().over(window)).filter("_pz_rank = 1").drop("_pz_rank")


def renamed(columns: list[str], transforms: list[Transform]) -> list[str]:
    """Names of `columns` after the transforms' renames (so keys and cursor follow a rename)."""
    out = list(columns)
    for t in transforms:
        for old, new in (t.rename or {}).items():
            out = [new if c == old else c for c in out]
    return out


def unchanged_columns(columns: list[str], transforms: list[Transform]) -> dict[str, str] | None:
    """Each of `columns` by its name after the transforms -> its name before them, when the transforms
    only rename it; None when one may change its values (a cast, derive, trim, lower or drop of it, or
    another column renamed onto it). What holds for the values before (a key range from bronze's file
    statistics) then holds after."""
    current = {c: c for c in columns}  # name before -> name now
    for t in transforms:
        now = {name.lower(): before for before, name in current.items()}
        if t.kind == "rename":
            for old, new in (t.rename or {}).items():
                if old.lower() in now and current[now[old.lower()]] != old:
                    return None  # a rename spelled in another case: renamed() would not follow it
                if new.lower() in now and old.lower() != new.lower():
                    return None
                if old.lower() in now:
                    current[now[old.lower()]] = new
        elif t.kind in ("cast", "derive", "drop", "trim", "lower"):
            written = getattr(t, t.kind) or []
            if any(str(c).lower() in now for c in written):
                return None
    return {name: before for before, name in current.items()}


def apply_transforms(df: DataFrame, transforms: list[Transform]) -> DataFrame:
    for t in transforms:
        df = _APPLY[t.kind](df, t)
    return df
