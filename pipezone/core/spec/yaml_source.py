"""Read one YAML file into plain data plus the line/column of every key and value, within hard limits.

Metadata files are untrusted input: a file that exhausts the parser must fail alone, with one located
line, never take the process (the CLI, the Airflow DAG file) down with it. So we do not let PyYAML
compose or construct anything. We read the event stream (libyaml's parser is an iterative state
machine, no recursion) and build the data with an explicit stack, checking as we go:

- size: at most `max_bytes` bytes, read from a regular file only (never a FIFO or a device);
- depth: at most `max_depth` nested collections (PyYAML's recursive composer segfaults at ~200k);
- nodes: at most `max_nodes` values counting every alias expansion (an alias bomb of ten lines expands
  to billions of nodes once a validator walks it), and no alias to a collection still being built
  (a recursive alias);
- time: at most `max_seconds` of building;
- tags: the YAML core schema only (str, int, float, bool, null, timestamp, map, seq). A custom tag
  (`!custom`), `!!binary`, `!!set`, `!!omap`, `!!python/...` is a problem, as is a merge key (`<<`):
  merged keys would make a file's effective content invisible in the file itself;
- values: a scalar its tag can't hold (`!!int three`, the date `2024-02-30`) is a problem at that scalar.

Duplicate keys are refused too (PyYAML lets the last one win, so a typo'd copy hides the real key).
"""

from __future__ import annotations

import math
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipezone.core.spec.problems import KeyPath, Problem, SpecError, clip, format_key_path

try:  # libyaml is ~10x faster than the pure-Python scanner
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

_SCALAR = yaml.constructor.SafeConstructor()
_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + name for name in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP, _SEQ, _MERGE, _STR = _CORE + "map", _CORE + "seq", _CORE + "merge", _CORE + "str"
_SCALAR_KEY_TYPES = (str, int, float)
# What an escape in a quoted string can smuggle in: terminal control sequences, bidi overrides ("Trojan
# source" SQL that reads differently than it runs), NUL. Tabs and line breaks stay allowed.
_HIDDEN = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one metadata file; far above any real flow (a large one is ~10 KB, depth 6)."""

    max_bytes: int = 256 * 1024
    max_depth: int = 64
    max_nodes: int = 50_000
    max_seconds: float = 1.0


LIMITS = YamlLimits()


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
    if isinstance(err, yaml.reader.ReaderError):  # a control character: no problem_mark, a byte offset
        code = err.character if isinstance(err.character, int) else ord(err.character)
        line, col = _line_col(text.encode("utf-8")[: err.position].decode("utf-8", "ignore"), None)
        return Problem(file, line, col, "yaml", f"malformed YAML: control character U+{code:04X} is not allowed")
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    lines = text.splitlines()
    bad_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in problem or (bad_line[col - 1 : col] == "\t") or "\t" in bad_line[:col]:
        message = "tab character: YAML indentation must use spaces"
    else:
        message = f"malformed YAML: {problem}" + (f" ({context})" if context else "")
    return Problem(file, line, col, "yaml", message)


def _line_col(text: str, offset: int | None) -> tuple[int, int]:
    """1-based line and column of `offset` in `text` (its end when None)."""
    offset = len(text) if offset is None else offset
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class _Refused(Exception):
    """The file goes beyond a limit or the tag policy: building stops at once with this one problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class _Frame:
    """A collection being built: a mapping waiting for a key or a value, or a sequence."""

    value: dict[Any, Any] | list[Any]
    path: KeyPath
    anchor: str | None
    nodes: int = 1
    key: Any = None
    key_mark: tuple[int, int] | None = None
    first_seen: dict[Any, int] = field(default_factory=dict)
    skip: bool = False  # the current key is a duplicate: drop its value


class _Builder:
    """Builds data from parser events with an explicit stack, recording positions and enforcing limits."""

    def __init__(self, file: str, limits: YamlLimits) -> None:
        self.file = file
        self.limits = limits
        self.positions: dict[KeyPath, Position] = {}
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int] | None] = {}  # None: the collection is still open
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.deadline = time.monotonic() + limits.max_seconds
        self.root: Any = None

    def refuse(self, mark: yaml.Mark | None, path: KeyPath, message: str) -> _Refused:
        line, col = _mark(mark)
        return _Refused(Problem(self.file, line, col, format_key_path(path) if path else "yaml", message))

    # ------------------------------------------------------------------ events

    def feed(self, event: yaml.Event, count: int) -> None:
        if count % 512 == 0 and time.monotonic() > self.deadline:
            raise self.refuse(event.start_mark, self._path(), f"took over {self.limits.max_seconds:g} s to read")
        kind = type(event)
        if kind is yaml.ScalarEvent:
            self._value(event, self._scalar(event), 1)
        elif kind is yaml.AliasEvent:
            self._alias(event)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            self._open(event)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            self._close()

    def _path(self) -> KeyPath:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return (*top.path, top.key) if top.key is not None else top.path

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self.nodes += nodes
        if self.nodes > self.limits.max_nodes:
            raise self.refuse(
                mark,
                self._path(),
                f"more than {self.limits.max_nodes:,} values (aliases expanded): refusing to read further",
            )

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR:  # most values: no constructor call
            value: Any = event.value
        else:
            value = self._construct(event, tag)
        if isinstance(value, str):
            if (hidden := _HIDDEN.search(value)) is not None:
                return self._invalid(event, f"control character U+{ord(hidden.group(0)):04X} is not allowed in text")
        elif isinstance(value, float) and not math.isfinite(value):
            return self._invalid(event, "infinite and NaN numbers are not allowed")
        return value

    def _construct(self, event: yaml.ScalarEvent, tag: str) -> Any:
        if tag == _MERGE and not self._expects_key():
            return event.value  # a plain `<<` as a value is just text
        if tag == _MERGE:
            raise self.refuse(
                event.start_mark,
                self._path(),
                "YAML merge keys ('<<') are not supported: write the keys out (anchors and aliases are fine)",
            )
        if tag not in _SCALAR_TAGS:
            raise self.refuse(event.start_mark, self._path(), _tag_message(tag))
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return _SCALAR.yaml_constructors[tag](_SCALAR, node)
        except Exception as err:  # noqa: BLE001 - PyYAML's constructors raise ValueError, KeyError, AttributeError...
            return self._invalid(event, _scalar_reason(tag, err))

    def _invalid(self, event: yaml.ScalarEvent, message: str) -> object:
        line, col = _mark(event.start_mark)
        self.problems.append(Problem(self.file, line, col, format_key_path(self._path()), message))
        return _INVALID

    def _expects_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) and self.stack[-1].key is None

    def _alias(self, event: yaml.AliasEvent) -> None:
        anchor = event.anchor
        if anchor not in self.anchors:
            raise self.refuse(event.start_mark, self._path(), f"unknown alias '*{clip(anchor)}'")
        target = self.anchors[anchor]
        if target is None:
            raise self.refuse(event.start_mark, self._path(), f"recursive alias '*{clip(anchor)}' (refers to itself)")
        value, nodes = target
        self._value(event, value, nodes)

    def _open(self, event: yaml.CollectionStartEvent) -> None:
        is_map = isinstance(event, yaml.MappingStartEvent)
        tag = event.tag
        if tag not in (None, "!", _MAP if is_map else _SEQ):
            raise self.refuse(event.start_mark, self._path(), _tag_message(tag))
        if self._expects_key():
            raise self.refuse(event.start_mark, self._path(), "a mapping key must be a plain value, not a collection")
        if len(self.stack) >= self.limits.max_depth:
            raise self.refuse(event.start_mark, self._path(), f"nested more than {self.limits.max_depth} levels deep")
        self._count(1, event.start_mark)
        path = self._path()
        self._record(event, path)
        if event.anchor is not None:
            self.anchors[event.anchor] = None
        self.stack.append(_Frame({} if is_map else [], path, event.anchor))

    def _close(self) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.value, frame.nodes)
        self._attach(frame.value, frame.nodes)

    def _value(self, event: yaml.NodeEvent, value: Any, nodes: int) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._count(1, event.start_mark)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, 1)
        else:
            self._count(nodes, event.start_mark)
        if self._expects_key():
            self._key(event, value)
            return
        self._record(event, self._path())
        self._attach(value, nodes)

    def _record(self, event: yaml.Event, path: KeyPath) -> None:
        if not self.stack:
            return
        top = self.stack[-1]
        line, col = _mark(event.start_mark)
        if isinstance(top.value, list):
            self.positions[path] = Position(line, col, line, col)
        elif not top.skip and top.key_mark is not None:
            self.positions[path] = Position(*top.key_mark, line, col)

    def _key(self, event: yaml.NodeEvent, key: Any) -> None:
        top = self.stack[-1]
        if isinstance(key, dict | list):
            raise self.refuse(event.start_mark, top.path, "a mapping key must be a plain value, not a collection")
        if not isinstance(key, _SCALAR_KEY_TYPES) or isinstance(key, bool):
            key = str(key)
        line, col = _mark(event.start_mark)
        top.skip = key in top.first_seen
        if top.skip:
            self.problems.append(
                Problem(
                    self.file,
                    line,
                    col,
                    format_key_path((*top.path, key)),
                    f"duplicate key '{clip(str(key))}' (first defined on line {top.first_seen[key]})",
                )
            )
        else:
            top.first_seen[key] = line
        top.key, top.key_mark = key, (line, col)

    def _attach(self, value: Any, nodes: int) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.nodes += nodes
        if isinstance(top.value, list):
            top.value.append(value)
            return
        if not top.skip:
            top.value[top.key] = value
        top.key, top.key_mark, top.skip = None, None, False


_RESOLVER = yaml.resolver.Resolver()  # the implicit-tag rules (what a plain `3`, `true` or `2024-01-01` is)
_INVALID = object()  # a scalar its tag can't hold; its problem is already recorded


def _scalar_reason(tag: str, err: Exception) -> str:
    """Why a scalar can't be what its tag says, without quoting it (it may be a pasted secret)."""
    kind = tag.removeprefix(_CORE)
    if kind == "timestamp":
        if isinstance(err, ValueError):  # datetime's own words: 'day is out of range for month'
            return f"not a valid date: {str(err).splitlines()[0]}"
        return "not a valid date: expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"
    if kind == "int" and "digits" in str(err):
        return "not a valid integer: too many digits"
    return {
        "int": "not a valid integer",
        "float": "not a valid number",
        "bool": "not a valid boolean: use true or false",
    }.get(kind, f"not a valid {kind}")


def _tag_message(tag: str | None) -> str:
    shown = "!!" + tag.removeprefix(_CORE) if tag and tag.startswith(_CORE) else str(tag)
    return (
        f"unsupported YAML tag '{clip(shown)}': PipeZone reads plain YAML "
        "(strings, numbers, booleans, null, dates, mappings and lists)"
    )


def parse_yaml(text: str, file: str, limits: YamlLimits = LIMITS) -> YamlDocument:
    """Parse YAML text; raise SpecError with located problems for anything it can't hold."""
    builder = _Builder(file, limits)
    loader = _Loader(text)
    documents, count = 0, 0
    try:
        while loader.check_event():
            event = loader.get_event()
            count += 1
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                continue
            if documents > 1 and isinstance(event, yaml.NodeEvent):
                line, col = _mark(event.start_mark)
                raise SpecError([Problem(file, line, col, "(document)", "expected one YAML document, found several")])
            builder.feed(event, count)
    except yaml.YAMLError as err:
        raise SpecError([_syntax_problem(text, file, err)]) from None
    except _Refused as refused:
        raise SpecError([refused.problem]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise SpecError(builder.problems)
    data = builder.root
    if data is None or (documents == 0):
        raise SpecError([Problem(file, 1, 1, "(document)", "file is empty: expected a YAML mapping")])
    if not isinstance(data, dict):
        raise SpecError([Problem(file, 1, 1, "(document)", "expected a YAML mapping at the top level")])
    return YamlDocument(file=file, data=data, positions=builder.positions)


def read_text(path: Path, file: str, limits: YamlLimits = LIMITS) -> str:
    """A metadata file's text: a regular file of at most `limits.max_bytes`, UTF-8 (a BOM is allowed)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError([Problem(file, 1, 1, "(document)", "not a regular file")])
        if info.st_size > limits.max_bytes:
            raise SpecError([_too_big(file, info.st_size, limits)])
        with open(path, "rb") as handle:
            raw = handle.read(limits.max_bytes + 1)
    except OSError as err:
        raise SpecError([Problem(file, 1, 1, "(document)", f"cannot read file: {err.strerror or err}")]) from None
    if len(raw) > limits.max_bytes:  # grew since stat
        raise SpecError([_too_big(file, len(raw), limits)])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, col = _line_col(raw[: err.start].decode("utf-8", "replace"), None)
        raise SpecError([Problem(file, line, col, "(document)", "not UTF-8 text: save the file as UTF-8")]) from None


def _too_big(file: str, size: int, limits: YamlLimits) -> Problem:
    return Problem(
        file, 1, 1, "(document)", f"file is {size:,} bytes, over the limit of {limits.max_bytes:,} for a metadata file"
    )


def load_yaml(path: Path, display: str | None = None, limits: YamlLimits = LIMITS) -> YamlDocument:
    """Read and parse a file; unreadable, oversized and malformed files become located problems too."""
    file = display or str(path)
    return parse_yaml(read_text(path, file, limits), file, limits)
