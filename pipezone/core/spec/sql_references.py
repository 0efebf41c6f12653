"""`silver.<flow>` / `gold.<table>` references in an analyst's SQL.

Only references in the SQL text itself count: the same words inside a string literal ('see silver.x'),
a quoted identifier or a comment are left alone, so rewriting references to Delta paths never changes
a literal the query compares against.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Alternatives tried left to right at each position: things to skip first, then a reference.
_SCANNER = re.compile(
    r"""
      (?P<skip>
          '(?:[^'\\]|\\.|'')*'          # 'string', with \' or '' escapes
        | "(?:[^"\\]|\\.|"")*"          # "string" (Spark SQL treats double quotes as a string too)
        | --[^\n]*                      # -- line comment
        | /\*.*?\*/                     # /* block comment */
      )
    | \b(?P<layer>silver|gold)\s*\.\s*(?P<tick>`?)(?P<name>[a-z][a-z0-9_]*)(?P=tick)(?![a-z0-9_])
    """,
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def table_references(sql: str) -> set[tuple[str, str]]:
    """(layer, name) pairs, lower-cased, that `sql` reads."""
    return {(m.group("layer").lower(), m.group("name").lower()) for m in _SCANNER.finditer(sql) if m.group("layer")}


def rewrite_references(sql: str, replace: Callable[[str, str], str]) -> str:
    """`sql` with each reference replaced by `replace(layer, name)`; literals and comments untouched."""

    def one(match: re.Match[str]) -> str:
        if not match.group("layer"):
            return match.group(0)
        return replace(match.group("layer").lower(), match.group("name").lower())

    return _SCANNER.sub(one, sql)
