"""Validation problems: one line each, `FILE:LINE:COL: key.path: message`, so editors can jump to them.

A problem's text comes partly from the file it is about (key names, values, even the file's own name),
so it is printed defanged: control characters (a newline that would fake a second problem line, an
escape sequence that would move the cursor and erase the lines above) are shown escaped, and a key
path or message too long to read is cut. Nothing a file holds can hide another file's problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]
MAX_PATH_CHARS = 120
MAX_MESSAGE_CHARS = 400
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def format_key_path(path: KeyPath) -> str:
    """Render ('source', 'primary_key', 0) as `source.primary_key[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def clip(text: str, limit: int = 60) -> str:
    """`text` cut to `limit` characters, with an ellipsis: a value quoted in a message can't drown the line."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str, limit: int | None = None) -> str:
    """`text` safe to print on one terminal line: control and bidi characters escaped, cut at `limit`."""
    clean = _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    return clean if limit is None else clip(clean, limit)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one file, located by line and column (1-based)."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        file = printable(self.file)
        path = printable(self.path, MAX_PATH_CHARS)
        return f"{file}:{self.line}:{self.col}: {path}: {printable(self.message, MAX_MESSAGE_CHARS)}"


class SpecError(Exception):
    """Raised when metadata has problems; carries all of them so callers can report every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
