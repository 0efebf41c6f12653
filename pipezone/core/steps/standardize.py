"""Bronze standardization: snake_case column names, so silver and gold SQL can rely on them.

Sources disagree on naming (`OrderID`, `order id`, `orderId`); types are fixed at read time by each
source adapter (custom schema and casts), so bronze only has to fix names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def snake_case(name: str) -> str:
    """`OrderID` -> `order_id`, `first Name` -> `first_name`, `_pz_batch` unchanged."""
    if name.startswith("_pz_"):
        return name
    text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    text = _NON_WORD.sub("_", text).strip("_").lower()
    if not text:
        return "column"
    return f"c_{text}" if text[0].isdigit() else text


def snake_case_columns(df: DataFrame) -> DataFrame:
    """Rename every column to snake_case; a collision is an error naming both source columns."""
    mapping = {c: snake_case(c) for c in df.columns}
    seen: dict[str, str] = {}
    for original, new in mapping.items():
        if new in seen:
            raise ValueError(f"columns '{seen[new]}' and '{original}' both become '{new}' in snake_case")
        seen[new] = original
    changed = {o: n for o, n in mapping.items() if o != n}
    return df.withColumnsRenamed(changed) if changed else df
