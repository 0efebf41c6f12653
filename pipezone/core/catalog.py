"""The project's metadata: every connection and flow file, loaded, validated and cross-checked.

Loading never stops at the first bad file: each file is validated on its own, every problem is
collected, and the valid specs stay usable (the DAG factory builds DAGs for them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pipezone.core.connection_spec import ConnectionSpec
from pipezone.core.cross_checks import cross_check
from pipezone.core.flow_spec import FlowSpec
from pipezone.core.problems import Problem, SpecError
from pipezone.core.profile_spec import ProfileSpec
from pipezone.core.spec_loader import validate_connection, validate_document
from pipezone.core.yaml_source import YamlDocument, load_yaml

S = TypeVar("S")
YAML_SUFFIXES = (".yaml", ".yml")


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

    def flow(self, name: str) -> FlowSpec:
        return self.flows[name].spec

    def connection(self, name: str) -> ConnectionSpec:
        return self.connections[name].spec

    def profile(self, name: str) -> ProfileSpec:
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise SpecError(
                [Problem("metadata/profiles", 1, 1, "profile", f"unknown profile '{name}' (known: {known})")]
            )
        return self.profiles[name].spec


def display_path(path: Path, cwd: Path | None = None) -> str:
    """Paths relative to the working directory when below it: shorter, and clickable in terminals.
    `path` should be absolute and `cwd` resolved (resolving per file costs ~0.2 ms: 1,000 flows parse)."""
    try:
        absolute = path if path.is_absolute() else path.resolve()
        return str(absolute.relative_to(cwd or Path.cwd().resolve()))
    except ValueError:
        return str(path)


def yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())


def file_kind(path: Path, doc: YamlDocument) -> str:
    """connections/, flows/ and profiles/ folders decide; elsewhere guess from the keys."""
    parts = path.parts if path.is_absolute() else path.resolve().parts
    for folder, kind in (("connections", "connection"), ("profiles", "profile"), ("flows", "flow")):
        if folder in parts:
            return kind
    if "type" in doc.data and "source" not in doc.data and "layers" not in doc.data:
        return "connection"
    return "profile" if "state_store" in doc.data else "flow"


def _load_file(catalog: Catalog, path: Path, duplicates: dict[str, list[Entry]], cwd: Path) -> None:
    shown = display_path(path, cwd)
    try:
        doc = load_yaml(path, shown)
    except SpecError as err:
        catalog.problems += err.problems
        catalog.invalid_files.add(shown)
        return
    kind = file_kind(path, doc)
    if kind == "connection":
        spec, problems = validate_connection(doc)
        target: dict = catalog.connections
    elif kind == "profile":
        spec, problems = validate_document(doc, ProfileSpec)
        target = catalog.profiles
    else:
        spec, problems = validate_document(doc, FlowSpec)
        target = catalog.flows
    catalog.problems += problems
    if spec is None:
        catalog.invalid_files.add(shown)
        if target is catalog.connections and isinstance(doc.data.get("name"), str):
            catalog.broken_connections[doc.data["name"]] = shown
        return
    entry = Entry(spec=spec, doc=doc, path=path)
    if spec.name in target:
        duplicates.setdefault(f"{id(target)}:{spec.name}", [target[spec.name]]).append(entry)
    else:
        target[spec.name] = entry


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


def load_catalog(metadata_dir: Path, extra: Iterable[Path] = ()) -> Catalog:
    """Load metadata/connections and metadata/flows (plus `extra` files), then run the cross-file checks."""
    catalog = Catalog()
    duplicates: dict[str, list[Entry]] = {}
    seen: set[Path] = set()
    folders = ("connections", "profiles", "flows")
    metadata_dir = metadata_dir.resolve()  # files found below a resolved folder need no resolving of their own
    files = [f for folder in folders for f in yaml_files(metadata_dir / folder)] + [p.resolve() for p in extra]
    cwd = Path.cwd().resolve()
    for path in files:
        if path in seen:
            continue
        seen.add(path)
        _load_file(catalog, path, duplicates, cwd)
    catalog.problems += _duplicate_problems(duplicates)
    catalog.problems += cross_check(catalog)
    catalog.problems = sorted(set(catalog.problems))
    return catalog


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders as the YAML files below them."""
    out: list[Path] = []
    for path in paths:
        out += yaml_files(path) if path.is_dir() else [path]
    return out
