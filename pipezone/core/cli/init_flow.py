"""`pipezone init-flow`: starter flow YAML for one table, or one per table of a whole schema (`--all`).

The tables, keys and cursors come from `sources/jdbc/discovery.py` (SQLite, MySQL/MariaDB, PostgreSQL)
and, for MongoDB, from a sample of each collection's documents (`sources/mongodb_catalog.py`),
so both forms follow the same rules and every choice carries its reason: in the summary printed at the
end and as comments in the file, because a starter flow is meant to be reviewed, not trusted.

Files are created, never replaced (`--all` never overwrites; one TABLE only with `--force`): an analyst
who edited a generated flow and runs discovery again must not lose the edit. Flow names are the table
names made valid (lower-case, anything else `_`); two tables that land on the same name are told apart
with `_2`, `_3`... in a fixed order, computed over the whole schema so a name does not depend on globs.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipezone.core.cli.common import EXIT_OK, EXIT_PROBLEMS, CliError
from pipezone.core.cli.show import render_table
from pipezone.core.cli.validate import validate
from pipezone.core.sources.contract import SourceError
from pipezone.core.sources.jdbc.dialect import JdbcDialect
from pipezone.core.sources.jdbc.discovery import (
    DiscoveredTable,
    SchemaDiscovery,
    TableNotFound,
    discover,
    discover_table,
    discoverable,
)
from pipezone.core.sources.mongodb_catalog import discover_collection, discover_collections
from pipezone.core.sources.registry import source_adapter
from pipezone.core.spec.catalog import Catalog, display_path, load_catalog
from pipezone.core.spec.connection import ROLE_SOURCE, ConnectionSpec, MongoConnection, connection_roles
from pipezone.core.spec.secrets import REDACTOR, resolver_for
from pipezone.core.spec.settings import Settings
from pipezone.core.spec.value_types import IDENTIFIER_PATTERN, NAME_PATTERN

NAME_MAX = 63  # the flow spec's name rule: ^[a-z][a-z0-9_]{0,62}$
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,39}")
_YAML_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n"})  # plain scalars YAML retypes
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
LOOKBACK = {"time": "5m", "integer": "0  # a numeric cursor: how many values behind the watermark to re-read"}
HEADER = ["TABLE", "FLOW FILE", "PRIMARY KEY", "CURSOR", "WHY"]
NO_KEY_COMMENT = (
    "# No primary key and no unique index over NOT NULL columns: silver appends every read (a full read",
    "# appends the whole table again each run). Set primary_key and write_mode: merge if rows have a key.",
)


@dataclass(frozen=True)
class FlowDraft:
    """What one generated file says."""

    name: str
    connection: str
    table: str
    schema: str | None  # written as source.schema; None: the connection's default
    found: DiscoveredTable | None
    relation: str | None = None  # the quoted SQL name when a flow cannot name the table (source.query form)
    command: str = ""
    note: str = ""


def sanitize(table: str) -> str:
    """A flow name for `table`: lower-case, each run of other characters one `_`, starting with a letter."""
    text = re.sub(r"[^a-z0-9]+", "_", table.lower()).strip("_")
    if not text[:1].isalpha():
        text = f"t_{text}".rstrip("_")
    return text[:NAME_MAX]


def assign_names(tables: Sequence[str], prefix: str = "") -> dict[str, tuple[str, str]]:
    """Table -> (flow name, note on a collision). A table already named like its flow keeps the name; the
    others follow in table-name order, a taken name getting `_2`, `_3`...: deterministic, and reported."""
    order = sorted(tables, key=lambda t: (prefix + sanitize(t) != prefix + t, t))
    owner: dict[str, str] = {}
    names: dict[str, tuple[str, str]] = {}
    for table in order:
        base = (prefix + sanitize(table))[:NAME_MAX]
        name, n = base, 2
        while name in owner:
            suffix = f"_{n}"
            name, n = base[: NAME_MAX - len(suffix)] + suffix, n + 1
        note = "" if name == base else f"flow name {name}: {base} is taken by table {one_line(owner[base])}"
        owner[name] = table
        names[table] = (name, note)
    return names


def select(
    tables: Sequence[DiscoveredTable], include: Sequence[str], exclude: Sequence[str]
) -> tuple[list[DiscoveredTable], list[str]]:
    """Tables matching any --include (all when none) and no --exclude, case-insensitive; and the globs that
    matched no table at all (likely typos)."""

    def hits(glob: str) -> set[str]:
        return {t.name for t in tables if fnmatch.fnmatchcase(t.name.lower(), glob.lower())}

    matched = {glob: hits(glob) for glob in [*include, *exclude]}
    kept = set().union(*(matched[g] for g in include)) if include else {t.name for t in tables}
    dropped = set().union(*(matched[g] for g in exclude)) if exclude else set()
    chosen = [t for t in tables if t.name in kept and t.name not in dropped]
    return chosen, [glob for glob, names in matched.items() if not names]


def one_line(text: str) -> str:
    """Catalog text (names, types) safe inside a comment or a table cell: one line, no control characters."""
    return _CONTROL.sub("?", " ".join(text.split()))


def _scalar(value: str) -> str:
    """A name as a YAML scalar: plain when YAML keeps it a string, else double-quoted (JSON is YAML)."""
    return value if _IDENTIFIER.fullmatch(value) and value.lower() not in _YAML_WORDS else json.dumps(value)


def _wrapped(label: str, items: Sequence[str], width: int = 110) -> list[str]:
    lines, current = [], label
    for item in items:
        piece = one_line(item)
        if current != label and len(current) + len(piece) + 2 > width:
            lines.append(current.rstrip(", ") + ",")
            current = "#   "
        current += piece + ", "
    return [*lines, current.rstrip(", ")]


def render_flow(draft: FlowDraft) -> str:
    """The starter YAML: valid as written (`pipezone validate` accepts it), comments saying what was chosen
    and why, and what to review."""
    found = draft.found
    lines = [
        "# yaml-language-server: $schema=../schemas/flow.schema.json",
        f"# Generated by `{one_line(draft.command)}`; review, then `pipezone validate`.",
    ]
    if draft.note:
        lines.append(f"# NOTE: {one_line(draft.note)}")
    if found is not None:
        lines += [f"# Key: {one_line(found.key_reason)}", f"# Cursor: {one_line(found.cursor_reason)}"]
        if found.partitions:
            lines += _wrapped("# Partitions, read through this table: ", found.partitions)
        if not found.primary_key:
            lines += NO_KEY_COMMENT
        lines += _wrapped("# Columns: ", [f"{c.name} {c.native_type}" for c in found.columns])
    description = f"{draft.table} from {draft.connection}"
    lines += [f"name: {_scalar(draft.name)}", f"description: {json.dumps(description)}", "owner: data-eng"]
    lines += ["tags: []", "source:", f"  connection: {_scalar(draft.connection)}"]
    if draft.relation is not None:
        lines.append(f"  query: {json.dumps(f'SELECT * FROM {draft.relation}')}  # the name is not an identifier")
    else:
        lines += [f"  schema: {_scalar(draft.schema)}"] if draft.schema else []
        lines.append(f"  table: {_scalar(draft.table)}")
    key = found.primary_key if found else ()
    lines.append(f"  primary_key: [{', '.join(map(_scalar, key))}]" if key else "  primary_key: []  # none found")
    if found is not None and found.cursor and found.cursor_kind:
        lookback = LOOKBACK[found.cursor_kind]
        lines += ["  incremental:", f"    cursor: {_scalar(found.cursor)}", f"    lookback: {lookback}"]
    else:
        lines.append("  # incremental: {cursor: updated_at, lookback: 5m}  # without it each run reads everything")
    lines += ["layers:", "  silver:", f"    write_mode: {'merge' if key else 'append'}", "    transforms: []"]
    return "\n".join([*lines, 'schedule: "@daily"', ""])


# ---------------------------------------------------------------------------------------------- the command


def cmd_init_flow(args: argparse.Namespace, settings: Settings) -> int:
    """One table or a whole schema; an unreachable server, bad credentials or a missing schema are one line
    naming the connection and exit 1."""
    _check_arguments(args)
    catalog = load_catalog(settings.metadata_dir, file_roots=settings.file_roots)
    spec = _source_connection(catalog, args.connection)
    try:
        if args.all_tables:
            return _init_all(args, settings, catalog, spec)
        return _init_one(args, settings, spec)
    except SourceError as err:
        print(f"pipezone: error: {REDACTOR.redact(str(err))}", file=sys.stderr)
        return EXIT_PROBLEMS


def _check_arguments(args: argparse.Namespace) -> None:
    if args.prefix and not _PREFIX.fullmatch(args.prefix):
        raise CliError(f"--prefix {args.prefix!r} must start with a-z and hold only a-z, 0-9 and _ (at most 40)")
    if args.all_tables:
        used = [flag for flag, value in (("--name", args.name), ("--force", args.force)) if value]
        if used:
            raise CliError(f"{', '.join(used)}: only with one TABLE (--all never overwrites and names flows itself)")
    else:
        used = [flag for flag, value in (("--include", args.include), ("--exclude", args.exclude)) if value]
        used += ["--views"] if args.views else []
        if used:
            raise CliError(f"{', '.join(used)}: only with --all, not with one TABLE")
    if args.name is not None and not _NAME.fullmatch(args.name):
        raise CliError(f"--name {args.name!r} is not a flow name: a-z first, then a-z, 0-9 or _, at most 63")


def _source_connection(catalog: Catalog, name: str) -> ConnectionSpec:
    if name not in catalog.connections:
        known = ", ".join(sorted(catalog.connections)) or "none"
        raise CliError(f"unknown connection '{name}' (known: {known})")
    spec = catalog.connection(name)
    if ROLE_SOURCE not in connection_roles(spec):
        raise CliError(f"connection '{name}' has type '{spec.type}', which is not a source type")
    return spec


def _out_dir(args: argparse.Namespace, settings: Settings) -> Path:
    folder = (args.out or settings.flows_dir).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise CliError(f"--out {folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _command(args: argparse.Namespace) -> str:
    parts = ["pipezone init-flow", args.connection, "--all" if args.all_tables else args.table]
    parts += [f"--schema {args.schema}"] if args.schema else []
    parts += [f"--include {g}" for g in args.include or ()] + [f"--exclude {g}" for g in args.exclude or ()]
    parts += ["--views"] if args.views else []
    parts += [f"--prefix {args.prefix}"] if args.prefix else []
    return " ".join(parts)


def _draft(
    spec: ConnectionSpec,
    schema: str | None,
    table: str,
    name: str,
    found: DiscoveredTable | None,
    command: str,
    note: str = "",
) -> FlowDraft:
    """A draft naming the table directly, or by a quoted query where the spec cannot name it."""
    relation = None
    if not _IDENTIFIER.fullmatch(table) or (schema is not None and not _IDENTIFIER.fullmatch(schema)):
        dialect = source_adapter(spec)
        if isinstance(dialect, JdbcDialect):
            relation = ".".join(dialect.quote(part) for part in ([schema] if schema else []) + [table])
    return FlowDraft(name, spec.name, table, schema, found, relation, command, note)


def _written_schema(args: argparse.Namespace, spec: ConnectionSpec, schema: str | None) -> str | None:
    """The schema the file names: the one asked for, and always on PostgreSQL, where an unqualified name
    follows the role's search_path (`"$user", public`), which can point elsewhere."""
    return args.schema or (schema if source_adapter(spec).name == "postgres" else None)


def _init_one(args: argparse.Namespace, settings: Settings, spec: ConnectionSpec) -> int:
    table: str = args.table
    name = args.name or (args.prefix or "") + sanitize(table)
    target = _out_dir(args, settings) / f"{name}.yaml"
    if target.exists() and not args.force:
        raise CliError(f"{target} exists: pass --force to overwrite")
    found, note = None, ""
    if isinstance(spec, MongoConnection) or discoverable(spec):
        try:
            found = _discover_one(spec, settings, table, args.schema)
        except TableNotFound as err:
            note = f"could not introspect {table}: {err.cause}"
    else:
        note = f"introspection is not available for {spec.type}: fill in primary_key and cursor"
    schema = _written_schema(args, spec, found.schema if found else None)
    draft = _draft(spec, schema, found.name if found else table, name, found, _command(args), note)
    target.write_text(render_flow(draft), encoding="utf-8")
    print(f"wrote {display_path(target)}" + (f" ({one_line(note)})" if note else ""))
    if found is not None:
        print(render_table([HEADER, _row(found, display_path(target), found.reason)]))
    return validate([target], settings)


def _discover_one(spec: ConnectionSpec, settings: Settings, table: str, schema: str | None) -> DiscoveredTable:
    """One table from the database's catalog, or one collection from a sample of its documents."""
    if isinstance(spec, MongoConnection):
        return discover_collection(spec, resolver_for(settings), table, schema)
    return discover_table(spec, resolver_for(settings), settings.project_root, table, schema)


def _row(table: DiscoveredTable, file: str, why: str) -> list[str]:
    key = ", ".join(table.primary_key) or "-"
    return [one_line(table.name), file, one_line(key), one_line(table.cursor or "- (full read)"), one_line(why)]


def _init_all(args: argparse.Namespace, settings: Settings, catalog: Catalog, spec: ConnectionSpec) -> int:
    if isinstance(spec, MongoConnection):
        found = discover_collections(spec, resolver_for(settings), args.schema)
    else:
        found = discover(spec, resolver_for(settings), settings.project_root, args.schema, include_views=args.views)
    names = assign_names([t.name for t in found.tables], args.prefix or "")
    chosen, unmatched = select(found.tables, args.include or (), args.exclude or ())
    for glob in unmatched:
        print(f"warning: {glob!r} matches no table of schema '{found.schema}'", file=sys.stderr)
    if not chosen:
        what = f"none of its {len(found.tables)} table(s) is selected" if found.tables else "it has no tables"
        raise CliError(f"nothing to write for connection '{spec.name}', schema '{found.schema}': {what}")
    out = _out_dir(args, settings)
    existing = {name: entry.path.resolve() for name, entry in catalog.flows.items()}
    schema, command = _written_schema(args, spec, found.schema), _command(args)
    rows, written, skipped = [HEADER], [], 0
    for table in chosen:
        name, note = names[table.name]
        target = out / f"{name}.yaml"
        why = "; ".join(filter(None, [table.reason, note]))
        draft = _draft(spec, schema, table.name, name, table, command, note)
        if name in existing and existing[name] != target:
            why, skipped = f"skipped: flow {name} is defined in {display_path(existing[name])}; {why}", skipped + 1
        elif not _create(target, render_flow(draft)):
            why, skipped = f"skipped: file exists, never overwritten; {why}", skipped + 1
        else:
            written.append(target)
        rows.append(_row(table, display_path(target), why))
    print(render_table(rows))
    print(_footer(found, len(written), skipped, len(found.tables) - len(chosen), display_path(out)))
    return validate(written, settings) if written else EXIT_OK


def _create(target: Path, text: str) -> bool:
    """Write a new file; False when one is there already (exclusive create: even a file that appears
    between the check and the write is never replaced)."""
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        return False
    return True


def _footer(found: SchemaDiscovery, written: int, skipped: int, filtered: int, out: str) -> str:
    parts = [f"wrote {written} flow file(s) to {out}"]
    parts += [f"skipped {skipped}"] if skipped else []
    parts += [f"{filtered} table(s) left out by --include/--exclude"] if filtered else []
    if found.partitions_left_out:
        parts.append(f"{len(found.partitions_left_out)} partition(s) read through their parent table")
    if found.views_left_out:
        parts.append(f"{len(found.views_left_out)} view(s) not listed (--views lists them)")
    return "; ".join(parts)
