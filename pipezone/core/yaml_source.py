"""Read one YAML file into plain data plus the line/column of every key and value.

PyYAML's constructors drop positions, so we compose the node graph (libyaml when available: fast)
and build the data ourselves. That also lets us refuse duplicate keys, which PyYAML silently
accepts (the last one wins, and a typo'd copy of a key hides the real one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipezone.core.problems import KeyPath, Problem, SpecError, format_key_path

try:  # libyaml is ~10x faster than the pure-Python scanner
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

_SCALAR = yaml.constructor.SafeConstructor()


@dataclass(frozen=True)
class Position:
    """Where a key and its value start (1-based)."""

    key_line: int
    key_col: int
    value_line: int
    value_col: int


@dataclass
class YamlDocument:
    """A parsed file: its data and a position for every key path in it."""

    file: str
    data: Any
    positions: dict[KeyPath, Position] = field(default_factory=dict)

    def locate(self, path: KeyPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column of the deepest existing node on `path` (the key itself when `key`)."""
        for end in range(len(path), 0, -1):
            pos = self.positions.get(path[:end])
            if pos is not None:
                if key or end < len(path):
                    return pos.key_line, pos.key_col
                return pos.value_line, pos.value_col
        return 1, 1

    def problem(self, path: KeyPath, message: str, *, key: bool = False) -> Problem:
        line, col = self.locate(path, key=key)
        return Problem(self.file, line, col, format_key_path(path), message)


def _mark(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _syntax_problem(text: str, file: str, err: yaml.YAMLError) -> Problem:
    """Turn a PyYAML error into our one-line form, with a plainer message for common slips."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line, col = _mark(mark)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    lines = text.splitlines()
    bad_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in problem or (bad_line[col - 1 : col] == "\t") or "\t" in bad_line[:col]:
        message = "tab character: YAML indentation must use spaces"
    else:
        message = f"malformed YAML: {problem}" + (f" ({context})" if context else "")
    return Problem(file, line, col, "yaml", message)


class _Builder:
    """Turns composed nodes into Python data, recording positions and rejecting duplicate keys."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[KeyPath, Position] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        return _SCALAR.construct_object(node, deep=True)

    def _sequence(self, node: yaml.SequenceNode, path: KeyPath) -> list[Any]:
        items = []
        for index, child in enumerate(node.value):
            line, col = _mark(child.start_mark)
            self.positions[(*path, index)] = Position(line, col, line, col)
            items.append(self.build(child, (*path, index)))
        return items

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path)
            key_line, key_col = _mark(key_node.start_mark)
            if not isinstance(key, str | int | bool | float) or isinstance(key, bool):
                key = str(key)
            if key in first_seen:
                self.problems.append(
                    Problem(
                        self.file,
                        key_line,
                        key_col,
                        format_key_path((*path, key)),
                        f"duplicate key '{key}' (first defined on line {first_seen[key]})",
                    )
                )
                continue
            first_seen[key] = key_line
            value_line, value_col = _mark(value_node.start_mark)
            self.positions[(*path, key)] = Position(key_line, key_col, value_line, value_col)
            result[key] = self.build(value_node, (*path, key))
        return result


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse YAML text; raise SpecError with located problems for syntax errors and duplicate keys."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as err:
        raise SpecError([_syntax_problem(text, file, err)]) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise SpecError([Problem(file, 1, 1, "(document)", "file is empty: expected a YAML mapping")])
    if len(nodes) > 1:
        line, col = _mark(nodes[1].start_mark)
        raise SpecError([Problem(file, line, col, "(document)", "expected one YAML document, found several")])
    builder = _Builder(file)
    data = builder.build(nodes[0], ())
    if builder.problems:
        raise SpecError(builder.problems)
    if not isinstance(data, dict):
        line, col = _mark(nodes[0].start_mark)
        raise SpecError([Problem(file, line, col, "(document)", "expected a YAML mapping at the top level")])
    return YamlDocument(file=file, data=data, positions=builder.positions)


def load_yaml(path: Path, display: str | None = None) -> YamlDocument:
    """Read and parse a file; unreadable files become located problems too."""
    file = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([Problem(file, 1, 1, "(document)", f"cannot read file: {err}")]) from None
    return parse_yaml(text, file)
