"""The project's metadata: every connection and flow file, loaded, validated and cross-checked.

Loading never stops at the first bad file: each file is validated on its own, every problem is
collected, and the valid specs stay usable (the DAG factory builds DAGs for them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import groupby
from pathlib import Path
from typing import Generic, TypeVar

from pipezone.core.spec.connection import ConnectionSpec
from pipezone.core.spec.cross_checks import cross_check
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.loader import validate_connection, validate_document
from pipezone.core.spec.problems import Problem, SpecError
from pipezone.core.spec.profile import ProfileSpec
from pipezone.core.spec.secret_scan import literal_secrets, scrub
from pipezone.core.spec.yaml_source import YamlDocument, load_yaml

S = TypeVar("S")
_AFTER = re.compile(r"schedule\.after\[(\d+)\]")
_EXPORT_CONNECTION = re.compile(r"exports\[(\d+)\]\.connection")
_GOLD_SQL = re.compile(r"layers\.gold\[\d+\]\.sql")
_UNKNOWN_TABLE = re.compile(r"unknown table (silver|gold)\.([a-z][a-z0-9_]*)")
YAML_SUFFIXES = (".yaml", ".yml")
MAX_PROBLEMS_PER_FILE = 50


@dataclass(frozen=True)
class Entry(Generic[S]):
    """A valid spec with the document it came from (for locating cross-file problems)."""

    spec: S
    doc: YamlDocument
    path: Path


@dataclass
class Catalog:
    """All valid connections and flows, plus every problem found on the way."""

    connections: dict[str, Entry[ConnectionSpec]] = field(default_factory=dict)
    flows: dict[str, Entry[FlowSpec]] = field(default_factory=dict)
    profiles: dict[str, Entry[ProfileSpec]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    invalid_files: set[str] = field(default_factory=set)
    broken_connections: dict[str, str] = field(default_factory=dict)  # name -> file, for clearer references
    file_kinds: dict[str, str] = field(default_factory=dict)  # file as shown -> connection, profile or flow

    def flow(self, name: str) -> FlowSpec:
        return self.flows[name].spec

    def connection(self, name: str) -> ConnectionSpec:
        return self.connections[name].spec

    @cached_property
    def broken_flows(self) -> frozenset[str]:
        """Names (file stems) of flow files that are invalid and define no valid flow (read once loaded)."""
        stems = {Path(f).stem for f in self.invalid_files if self.file_kinds.get(f) == "flow"}
        return frozenset(stems - set(self.flows))

    @cached_property
    def problems_by_file(self) -> dict[str, list[Problem]]:
        by_file: dict[str, list[Problem]] = {}
        for problem in self.problems:
            by_file.setdefault(problem.file, []).append(problem)
        return by_file

    def own_problems(self, name: str) -> list[Problem]:
        """Problems of a valid flow's file that are about the file itself: not those that only say
        another file it references is invalid. A flow with own problems gets no DAG and does not run."""
        entry = self.flows[name]
        mine = self.problems_by_file.get(entry.doc.file, [])
        return [p for p in mine if not _inherited(p, entry.spec, self, self.broken_flows)]

    def profile(self, name: str) -> ProfileSpec:
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise SpecError(
                [Problem("metadata/profiles", 1, 1, "profile", f"unknown profile '{name}' (known: {known})")]
            )
        return self.profiles[name].spec


def _inherited(problem: Problem, flow: FlowSpec, catalog: Catalog, broken_flows: frozenset[str]) -> bool:
    """Whether a flow's problem only says that *another* file it references is invalid.

    Such a flow keeps its DAG (its shape does not depend on the broken file): breaking retail_orders.yaml
    must not remove retail_daily_revenue's DAG. The broken file gets its own placeholder.
    """
    if problem.path == "source.connection":
        return flow.source is not None and flow.source.connection in catalog.broken_connections
    if match := _EXPORT_CONNECTION.fullmatch(problem.path):
        index = int(match.group(1))
        return index < len(flow.exports) and flow.exports[index].connection in catalog.broken_connections
    if (match := _AFTER.fullmatch(problem.path)) and flow.schedule and flow.schedule.after:
        index = int(match.group(1))
        return index < len(flow.schedule.after) and flow.schedule.after[index] in broken_flows
    if _GOLD_SQL.fullmatch(problem.path) and (match := _UNKNOWN_TABLE.search(problem.message)):
        layer, name = match.groups()
        return name in broken_flows if layer == "silver" else bool(broken_flows)
    return False


def display_path(path: Path, cwd: Path | None = None) -> str:
    """Paths relative to the working directory when below it: shorter, and clickable in terminals.
    `path` should be absolute and `cwd` resolved (resolving per file costs ~0.2 ms: 1,000 flows parse)."""
    try:
        absolute = path if path.is_absolute() else path.resolve()
        return str(absolute.relative_to(cwd or Path.cwd().resolve()))
    except ValueError:
        return str(path)


ROLE_FOLDERS = {"connections": "connection", "profiles": "profile", "flows": "flow"}


def yaml_files(folder: Path) -> list[Path]:
    """Every `*.yaml`/`*.yml` below `folder` that is not a directory: FIFOs, devices and dangling links too,
    so they are reported (never opened) instead of silently skipped. Emacs lock links (`.#x.yaml`) aside."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.rglob("*"):
        if path.suffix not in YAML_SUFFIXES or path.is_dir():
            continue
        if path.name.startswith(".#") and path.is_symlink() and not path.exists():
            continue
        found.append(path)
    return sorted(found)


def file_kind(path: Path, root: Path, doc: YamlDocument) -> str:
    """A file's role from its folders below `root` (the metadata folder, or a folder given on the command
    line): never from folders above it, so a project under `/srv/connections/` reads its flows as flows.
    A file outside any role folder is told by its keys."""
    try:
        folders = path.relative_to(root).parts[:-1]
    except ValueError:
        folders = ()
    for folder in (*folders, root.name):
        if folder in ROLE_FOLDERS:
            return ROLE_FOLDERS[folder]
    if "type" in doc.data and "source" not in doc.data and "layers" not in doc.data:
        return "connection"
    return "profile" if "state_store" in doc.data else "flow"


def _outside(path: Path, root: Path) -> bool:
    """A symlink below `root` that leads out of it (to /etc/shadow, say) is not metadata."""
    if not path.is_symlink():
        return False
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    return False


def _merge(model: list[Problem], found: list[Problem]) -> list[Problem]:
    """The model's problems, plus the secret scan's at key paths the model did not already flag."""
    taken = {p.path for p in model}
    return model + [p for p in found if p.path not in taken]


def _validate(doc: YamlDocument, kind: str) -> tuple[object | None, list[Problem]]:
    if kind == "connection":
        spec, problems = validate_connection(doc)
    else:
        spec, problems = validate_document(doc, ProfileSpec if kind == "profile" else FlowSpec)
    secrets = [doc.problem(path, message) for path, message in literal_secrets(doc.data, kind)]
    problems = _merge(problems, secrets)
    return (None if problems else spec), problems


def _load_file(catalog: Catalog, source: tuple[Path, Path], duplicates: dict[str, list[Entry]], cwd: Path) -> None:
    path, root = source
    shown = display_path(path, cwd)
    if _outside(path, root):
        catalog.problems.append(Problem(shown, 1, 1, "(document)", "a symlink to a file outside the metadata folder"))
        catalog.invalid_files.add(shown)
        return
    try:
        doc = load_yaml(path, shown)
    except SpecError as err:
        catalog.problems += err.problems
        catalog.invalid_files.add(shown)
        catalog.file_kinds[shown] = file_kind(path, root, YamlDocument(shown, {}))
        return
    kind = catalog.file_kinds[shown] = file_kind(path, root, doc)
    spec, problems = _validate(doc, kind)
    catalog.problems += problems
    target: dict = {"connection": catalog.connections, "profile": catalog.profiles, "flow": catalog.flows}[kind]
    if spec is None:
        catalog.invalid_files.add(shown)
        if kind == "connection" and isinstance(doc.data.get("name"), str):
            catalog.broken_connections[doc.data["name"]] = shown
        return
    entry = Entry(spec=spec, doc=doc, path=path)
    if spec.name in target:
        duplicates.setdefault(f"{kind}:{spec.name}", [target[spec.name]]).append(entry)
    else:
        target[spec.name] = entry


def _load_guarded(catalog: Catalog, source: tuple[Path, Path], duplicates: dict[str, list[Entry]], cwd: Path) -> None:
    """One file's failure of any kind, even a bug of ours, is that file's problem and never the catalog's."""
    try:
        _load_file(catalog, source, duplicates, cwd)
    except Exception as err:  # noqa: BLE001 - the promise: one bad file never hides the others
        shown = display_path(source[0], cwd)
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
        catalog.problems.append(Problem(shown, 1, 1, "(document)", f"internal error reading this file ({reason})"))
        catalog.invalid_files.add(shown)


def _kind_of(spec: object) -> str:
    if isinstance(spec, ConnectionSpec):
        return "connection"
    return "profile" if isinstance(spec, ProfileSpec) else "flow"


def _duplicate_problems(groups: dict[str, list[Entry]]) -> list[Problem]:
    problems = []
    for entries in groups.values():
        first = entries[0]
        line, _ = first.doc.locate(("name",))
        kind = _kind_of(first.spec)
        for dup in entries[1:]:
            problems.append(
                dup.doc.problem(
                    ("name",), f"duplicate {kind} name '{dup.spec.name}' (also defined at {first.doc.file}:{line})"
                )
            )
    return problems


def load_catalog(
    metadata_dir: Path | None,
    extra: Iterable[Path | tuple[Path, Path]] = (),
    *,
    file_roots: Sequence[Path] | None = None,
) -> Catalog:
    """Load metadata/connections, profiles and flows (plus `extra` files, each optionally with the folder it
    was found in), then run the cross-file checks. `metadata_dir` None: the `extra` files are the catalog.
    `file_roots`: where `${file:...}` references may point (None: not checked)."""
    catalog = Catalog()
    duplicates: dict[str, list[Entry]] = {}
    sources: list[tuple[Path, Path]] = []
    if metadata_dir is not None:
        metadata_dir = metadata_dir.resolve()  # files found below a resolved folder need no resolving of their own
        catalog.problems += _folder_problems(metadata_dir)
        sources += [(f, metadata_dir) for folder in ROLE_FOLDERS for f in yaml_files(metadata_dir / folder)]
    for item in extra:
        path, root = item if isinstance(item, tuple) else (item, item.parent)
        sources.append((Path(os.path.abspath(path)), Path(os.path.abspath(root))))
    cwd = Path.cwd().resolve()
    seen: set[Path] = set()
    for source in sources:
        if source[0] in seen:
            continue
        seen.add(source[0])
        _load_guarded(catalog, source, duplicates, cwd)
    catalog.problems += _duplicate_problems(duplicates)
    catalog.problems += cross_check(catalog, file_roots)
    catalog.problems = _capped(sorted({_scrubbed(p) for p in catalog.problems}))
    return catalog


def _capped(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS_PER_FILE lines per file (sorted), then one saying how many more: a file of ten
    thousand mistakes must not bury the next file's one."""
    out: list[Problem] = []
    for _, group in groupby(problems, key=lambda p: p.file):
        lines = list(group)
        out += lines[:MAX_PROBLEMS_PER_FILE]
        if len(lines) > MAX_PROBLEMS_PER_FILE:
            last = lines[MAX_PROBLEMS_PER_FILE - 1]
            more = len(lines) - MAX_PROBLEMS_PER_FILE
            out.append(replace(last, path="(document)", message=f"and {more:,} more problem(s) in this file"))
    return out


def _folder_problems(metadata_dir: Path) -> list[Problem]:
    if not metadata_dir.is_dir():
        return [Problem(str(metadata_dir), 1, 1, "(folder)", "metadata folder does not exist")]
    if not any((metadata_dir / folder).is_dir() for folder in ROLE_FOLDERS):
        return [Problem(str(metadata_dir), 1, 1, "(folder)", "no connections/, profiles/ or flows/ folder here")]
    return []


def _scrubbed(problem: Problem) -> Problem:
    """A problem quotes the file; whatever in that quote looks like a secret is masked."""
    return replace(problem, path=scrub(problem.path), message=scrub(problem.message))


def expand_paths(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """Files as given, folders as the YAML files below them; each with the folder its role is read below."""
    out: list[tuple[Path, Path]] = []
    for path in paths:
        out += [(f, path) for f in yaml_files(path)] if path.is_dir() else [(path, path.parent)]
    return out


def is_metadata_root(folder: Path) -> bool:
    """A folder that holds connections/, profiles/ or flows/: a whole catalog of its own."""
    return folder.is_dir() and any((folder / name).is_dir() for name in ROLE_FOLDERS)


def shared_metadata_root(paths: Sequence[Path]) -> Path | None:
    """The one metadata folder all `paths` lie in (the nearest folder at or above each holding
    connections/, profiles/ or flows/), or None when they lie in none or in several."""
    found: set[Path] = set()
    for path in paths:
        start = path if path.is_dir() else path.parent
        root = next((p for p in (start, *start.resolve().parents) if is_metadata_root(p)), None)
        if root is None:
            return None
        found.add(root.resolve())
    return found.pop() if len(found) == 1 else None
