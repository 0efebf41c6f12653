"""What a keyed upsert does, as data: the ON condition and the WHEN clauses of the forward-only MERGE with
soft deletes, written once and run by two engines.

Spark runs them as `MERGE INTO` SQL (`delta_merge.merge`); delta-rs runs the same conditions through its
MERGE builder on a small batch held in Arrow (`arrow_merge.merge`). Both parse these strings (delta-rs
with DataFusion, which reads backtick-quoted names and `<=>` as Spark does), so the two paths cannot
drift apart in what "newer", "deleted" or "re-inserted" means.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipezone.core.lake.delta_tables import BATCH, DELETED, DELETED_AT, RUN_ID


def quoted(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def forward_only_condition(cursor: str | None) -> str:
    """Update a matched row only when the incoming one is newer: by cursor, then by batch on a tie."""
    newer_batch = f"s.{quoted(BATCH)} > t.{quoted(BATCH)}"
    if cursor is None:
        return newer_batch
    c = quoted(cursor)
    return (
        f"(t.{c} IS NULL AND s.{c} IS NOT NULL) OR s.{c} > t.{c} "
        f"OR ((s.{c} = t.{c} OR (s.{c} IS NULL AND t.{c} IS NULL)) AND {newer_batch})"
    )


def key_match(keys: list[str]) -> str:
    """Target row t and source row s hold the same key (null-safe, as the key join everywhere)."""
    return " AND ".join(f"t.{quoted(k)} <=> s.{quoted(k)}" for k in keys)


@dataclass(frozen=True)
class Clause:
    """One WHEN clause: for a `matched` target row an update, else an insert, when `condition` holds.
    `assign` names the target columns set (SQL over s and t); None sets every source column (`*`)."""

    matched: bool
    condition: str | None
    assign: dict[str, str] | None = None

    def sql(self) -> str:
        when = "WHEN MATCHED" if self.matched else "WHEN NOT MATCHED"
        if self.condition:
            when += f" AND ({self.condition})"
        if self.assign is None:
            return f"{when} THEN {'UPDATE SET *' if self.matched else 'INSERT *'}"
        return f"{when} THEN UPDATE SET " + ", ".join(f"{quoted(c)} = {v}" for c, v in self.assign.items())


def upsert_clauses(newer: str, tombstones: bool) -> list[Clause]:
    """The clauses of a forward-only upsert (`newer`: when a matched row takes the incoming values).

    With tombstones (`_pz_deleted`, one event per key at most), a tombstone flags the matched row as
    deleted and keeps its data; a later live row of that key (a re-insert) clears the flag; a tombstone
    of a key the table lacks inserts nothing."""
    if not tombstones:
        return [Clause(True, newer), Clause(False, None)]
    flagged = f"coalesce(t.{quoted(DELETED)}, false)"
    s_batch, t_batch, s_deleted = f"s.{quoted(BATCH)}", f"t.{quoted(BATCH)}", f"s.{quoted(DELETED)}"
    tombstone = {DELETED: "true", DELETED_AT: f"s.{quoted(DELETED_AT)}", BATCH: s_batch, RUN_ID: f"s.{quoted(RUN_ID)}"}
    return [
        Clause(True, f"{s_deleted} AND NOT {flagged} AND {s_batch} >= {t_batch}", tombstone),
        Clause(True, f"NOT {s_deleted} AND (({newer}) OR ({flagged} AND {s_batch} > {t_batch}))"),
        Clause(False, f"NOT {s_deleted}"),
    ]
