"""Validation problems: one line each, `FILE:LINE:COL: key.path: message`, so editors can jump to them."""

from __future__ import annotations

from dataclasses import dataclass

KeyPath = tuple[str | int, ...]


def format_key_path(path: KeyPath) -> str:
    """Render ('source', 'primary_key', 0) as `source.primary_key[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one file, located by line and column (1-based)."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class SpecError(Exception):
    """Raised when metadata has problems; carries all of them so callers can report every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
