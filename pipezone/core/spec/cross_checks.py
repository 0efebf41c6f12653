"""Rules that span files: references resolve, roles fit, names are unique, dependencies form no cycle."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipezone.core.spec.connection import (
    DESTINATION_TYPES,
    ROLE_DESTINATION,
    ROLE_LAKE,
    ROLE_SOURCE,
    ROLE_STATE,
    connection_roles,
)
from pipezone.core.spec.problems import KeyPath, Problem
from pipezone.core.spec.secrets import SecretError, SecretRef, confined_file
from pipezone.core.spec.source import CDC_CONNECTION_TYPES, DOCUMENT_CONNECTION_TYPES, fields_problem
from pipezone.core.spec.sql_check import select_problem

if TYPE_CHECKING:
    from pipezone.core.spec.catalog import Catalog, Entry
    from pipezone.core.spec.flow import FlowSpec


def _known(name: str, names: list[str]) -> str:
    """'did you mean' when one name is close, else the list of known names."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.7)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known: " + (", ".join(sorted(names)) or "none defined")


def _source_connection(catalog: Catalog, entry: Entry[FlowSpec]) -> list[Problem]:
    source = entry.spec.source
    if source is None:
        return []
    path: KeyPath = ("source", "connection")
    conn = catalog.connections.get(source.connection)
    if conn is None and source.connection in catalog.broken_connections:
        broken = catalog.broken_connections[source.connection]
        return [entry.doc.problem(path, f"connection '{source.connection}' is invalid (see {broken})")]
    if conn is None:
        return [
            entry.doc.problem(
                path,
                f"unknown connection '{source.connection}' ({_known(source.connection, list(catalog.connections))})",
            )
        ]
    if ROLE_SOURCE not in connection_roles(conn.spec):
        return [
            entry.doc.problem(
                path, f"connection '{source.connection}' has type '{conn.spec.type}', which is not a source type"
            )
        ]
    if source.cdc is not None and conn.spec.type not in CDC_CONNECTION_TYPES:
        return [
            entry.doc.problem(
                ("source", "cdc"),
                f"cdc reads the replication log of {', '.join(CDC_CONNECTION_TYPES)} databases; connection "
                f"'{source.connection}' has type '{conn.spec.type}'",
            )
        ]
    misfit = fields_problem(source, conn.spec.type)
    return [entry.doc.problem(misfit[0], misfit[1])] if misfit else []


def _export_connections(catalog: Catalog, entry: Entry[FlowSpec]) -> list[Problem]:
    """Each export's connection exists and is a database exports can write to."""
    problems: list[Problem] = []
    for index, export in enumerate(entry.spec.exports):
        path: KeyPath = ("exports", index, "connection")
        name = export.connection
        conn = catalog.connections.get(name)
        if conn is None and name in catalog.broken_connections:
            problems.append(
                entry.doc.problem(path, f"connection '{name}' is invalid (see {catalog.broken_connections[name]})")
            )
        elif conn is None:
            problems.append(
                entry.doc.problem(path, f"unknown connection '{name}' ({_known(name, list(catalog.connections))})")
            )
        elif ROLE_DESTINATION not in connection_roles(conn.spec):
            kinds = ", ".join(DESTINATION_TYPES[:-1]) + f" or {DESTINATION_TYPES[-1]}"
            problems.append(
                entry.doc.problem(
                    path, f"connection '{name}' has type '{conn.spec.type}'; exports go to {kinds} connections"
                )
            )
    return problems


def _gold_tables(catalog: Catalog) -> dict[str, str]:
    """Gold table name -> owning flow."""
    return {table.name: name for name, e in catalog.flows.items() for table in e.spec.layers.gold}


def _references(catalog: Catalog, entry: Entry[FlowSpec], gold: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    flow = entry.spec
    for index, upstream in enumerate((flow.schedule.after or []) if flow.schedule else []):
        if upstream not in catalog.flows:
            problems.append(
                entry.doc.problem(
                    ("schedule", "after", index), f"unknown flow '{upstream}' ({_known(upstream, list(catalog.flows))})"
                )
            )
    for index, table in enumerate(flow.layers.gold):
        path: KeyPath = ("layers", "gold", index, "sql")
        owner = gold.get(table.name)
        if owner is not None and owner != flow.name:
            problems.append(
                entry.doc.problem(
                    ("layers", "gold", index, "name"), f"gold table '{table.name}' is also written by flow '{owner}'"
                )
            )
        if ("gold", table.name) in table.references():
            problems.append(entry.doc.problem(path, f"gold table '{table.name}' reads itself"))
        for layer, name in sorted(table.references()):
            if layer == "silver":
                upstream = catalog.flows.get(name)
                if upstream is None or not upstream.spec.layers.silver.enabled or upstream.spec.source is None:
                    problems.append(
                        entry.doc.problem(
                            path, f"unknown table silver.{name}: no flow named '{name}' writes a silver table"
                        )
                    )
            elif name not in gold:
                problems.append(entry.doc.problem(path, f"unknown table gold.{name}: no flow defines it"))
    return problems


def _dependency_graph(catalog: Catalog, gold: dict[str, str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, entry in catalog.flows.items():
        deps = {d for d in entry.spec.upstream_flows() if d in catalog.flows}
        for table in entry.spec.layers.gold:
            deps |= {gold[t] for layer, t in table.references() if layer == "gold" and t in gold}
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each elementary cycle found by depth-first search, as [a, b, ..., a]. Iterative: a chain of
    thousands of flows must not hit Python's recursion limit."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if start in state:
            continue
        state[start] = 1
        stack: list[str] = [start]
        pending = [iter(sorted(graph.get(start, ())))]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                pending.pop()
                state[stack.pop()] = 2
            elif state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                state[nxt] = 1
                stack.append(nxt)
                pending.append(iter(sorted(graph.get(nxt, ()))))
    return cycles


def _cycle_problems(catalog: Catalog, graph: dict[str, set[str]]) -> list[Problem]:
    problems = []
    for cycle in find_cycles(graph):
        text = " -> ".join(cycle)
        for name in set(cycle):
            entry = catalog.flows[name]
            path: KeyPath = ("schedule",) if entry.spec.schedule else ("layers", "gold")
            problems.append(entry.doc.problem(path, f"dependency cycle: {text}", key=True))
    return problems


def _profile_problems(catalog: Catalog) -> list[Problem]:
    """A profile's lake and state store exist and can serve in those roles."""
    problems: list[Problem] = []
    for entry in catalog.profiles.values():
        for key, role, label in (("lake", ROLE_LAKE, "lake"), ("state_store", ROLE_STATE, "state store")):
            name = getattr(entry.spec, key)
            conn = catalog.connections.get(name)
            if conn is None:
                problems.append(
                    entry.doc.problem(
                        (key,), f"unknown connection '{name}' ({_known(name, list(catalog.connections))})"
                    )
                )
            elif role not in connection_roles(conn.spec):
                problems.append(
                    entry.doc.problem(
                        (key,), f"connection '{name}' has type '{conn.spec.type}', which cannot serve as the {label}"
                    )
                )
    return problems


def _source_query(catalog: Catalog, entry: Entry[FlowSpec]) -> list[Problem]:
    """A source query is one read-only statement in its database's own SQL (generic SQL when the
    connection is unknown: the DELETE is still found)."""
    source = entry.spec.source
    if source is None or source.query is None:
        return []
    conn = catalog.connections.get(source.connection)
    if conn is not None and conn.spec.type in DOCUMENT_CONNECTION_TYPES:
        return []  # a query on a document source is reported as a misfit field (`fields_problem`)
    dialect = conn.spec.type if conn is not None else ""
    problem = select_problem(source.query, dialect)
    return [entry.doc.problem(("source", "query"), problem)] if problem else []


def _file_references(catalog: Catalog, roots: Sequence[Path]) -> list[Problem]:
    """`${file:...}` references of connections point inside the project or a secret folder (not read here)."""
    problems: list[Problem] = []
    for entry in catalog.connections.values():
        for key, reference in entry.spec.secret_refs().items():
            ref = SecretRef.parse(reference)
            if ref.scheme != "file":
                continue
            try:
                confined_file(ref, roots[0], roots)
            except SecretError as err:
                path: KeyPath = tuple(int(p) if p.isdigit() else p for p in key.split("."))
                problems.append(entry.doc.problem(path, str(err)))
    return problems


def cross_check(catalog: Catalog, file_roots: Sequence[Path] | None = None) -> list[Problem]:
    """All cross-file problems of a loaded catalog. `file_roots`: the project root first, then the secret
    folders `${file:}` may read (None: file references are not checked)."""
    gold = _gold_tables(catalog)
    problems: list[Problem] = _profile_problems(catalog)
    if file_roots:
        problems += _file_references(catalog, file_roots)
    for entry in catalog.flows.values():
        problems += _source_connection(catalog, entry)
        problems += _source_query(catalog, entry)
        problems += _export_connections(catalog, entry)
        problems += _references(catalog, entry, gold)
    problems += _cycle_problems(catalog, _dependency_graph(catalog, gold))
    return problems
