"""Exports of a flow (`exports:`): its silver table or one of its gold tables, copied to a database table.

Each export is a step of its own, `export_<name>`, run after the flow's quality checks (a failed check
stops every export) and before verify. What an export can be checked against without other files is
checked here: the export alone by its model, the export within its flow by `check_exports` (FlowSpec calls
it); that the connection exists and can take the rows is a cross-file check (cross_checks.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.value_types import Columns, Identifier, Name, SpecModel, patterned

if TYPE_CHECKING:
    from pipezone.core.spec.flow import FlowSpec

MAX_EXPORTS = 50
METADATA_PREFIX = "_pz_"  # PipeZone's own columns (lake/schema_drift.py): never exported
FROM_PATTERN = r"^(?:silver|gold\.[a-z][a-z0-9_]{0,62})$"
ExportFrom = patterned(FROM_PATTERN, "from is 'silver' (this flow's silver table) or 'gold.<table>' (a gold table)")
_PZ_MESSAGE = "'{column}' is one of PipeZone's own _pz_* columns, which exports leave out"
ExportMode = Literal["replace", "append", "upsert"]


def _error(kind: str, message: str, at: str | tuple[str, ...], **values: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {**values, "at": at})


class ExportSpec(SpecModel):
    """Copy one of this flow's lake tables (its silver table or one of its gold tables) to a database table."""

    from_: ExportFrom | None = Field(  # type: ignore[valid-type]
        default=None,
        alias="from",
        description="silver (this flow's silver table) or gold.<table> (one of this flow's gold tables). "
        "Default: silver when the flow has a source, else its only gold table.",
    )
    connection: Name = Field(
        description="A destination connection in metadata/connections: postgres, mysql, mariadb or sqlite."
    )
    schema_: Identifier | None = Field(
        default=None,
        alias="schema",
        description="Destination schema (PostgreSQL) / database (MySQL, MariaDB); default: the connection's.",
    )
    table: Identifier | None = Field(
        default=None,
        description="Destination table; default: the lake table's name (the flow's name for silver, the gold "
        "table's name for gold).",
    )
    mode: ExportMode = Field(
        default="replace",
        description="replace: the table's rows become the lake table's, swapped in at once; append: add the rows; "
        "upsert: insert or update by key (silver: source.primary_key; gold: the table's primary_key), deleting "
        "rows deleted in the lake.",
    )
    columns: Columns | None = Field(
        default=None, description="Only these lake columns (default: all but PipeZone's _pz_* columns)."
    )
    rename: dict[Identifier, Identifier] = Field(
        default_factory=dict, max_length=1000, description="Lake column -> destination column."
    )
    name: Identifier | None = Field(
        default=None,
        description="Unique in the flow; default: <connection>_<table> (the destination table). The task is "
        "export_<name>.",
    )

    @model_validator(mode="after")
    def _columns_fit(self) -> ExportSpec:
        if self.columns == []:
            raise _error("no_columns", "columns is empty: omit it to export every column", "columns")
        for index, column in enumerate(self.columns or []):
            if column.startswith(METADATA_PREFIX):
                raise _error("pz_column", _PZ_MESSAGE, f"columns.{index}", column=column)
        for old in self.rename:
            if old.startswith(METADATA_PREFIX):
                raise _error("pz_column", _PZ_MESSAGE, ("rename", old, "[key]"), column=old)
            if self.columns is not None and old not in self.columns:
                raise _error(
                    "rename_unselected",
                    "rename '{old}': not among columns ({columns})",
                    ("rename", old, "[key]"),
                    old=old,
                    columns=", ".join(self.columns),
                )
        self._check_collisions()
        return self

    def _check_collisions(self) -> None:
        """Destination column names are compared without case: MySQL's and Spark's are case-insensitive."""
        taken: dict[str, str] = {}  # destination name, folded -> the lake column written there
        kept = [c for c in self.columns or [] if c not in self.rename]
        for column in kept:
            taken[column.casefold()] = column
        for old, new in self.rename.items():
            other = taken.get(new.casefold())
            if other is not None and other in self.rename:
                raise _error(
                    "rename_collision",
                    "'{other}' and '{old}' are both renamed to '{new}'",
                    ("rename", old),
                    other=other,
                    old=old,
                    new=new,
                )
            if other is not None:
                raise _error(
                    "rename_collision",
                    "rename '{old}' to '{new}' collides with the exported column '{other}'",
                    ("rename", old),
                    other=other,
                    old=old,
                    new=new,
                )
            taken[new.casefold()] = old

    def source_table(self, flow: FlowSpec) -> tuple[str, str]:
        """The lake table exported, as (layer, name): ("silver", the flow's name) or ("gold", a gold table).
        Without `from`: silver when the flow has a source, else its first (for a valid flow: only) gold table."""
        if self.from_ is None and flow.source is None and flow.layers.gold:
            return "gold", flow.layers.gold[0].name
        if self.from_ is None or self.from_ == "silver":
            return "silver", flow.name
        return "gold", self.from_.removeprefix("gold.")

    def destination_table(self, flow: FlowSpec) -> str:
        """The destination table's name: `table`, else the lake table's name."""
        return self.table or self.source_table(flow)[1]

    def export_name(self, flow: FlowSpec) -> str:
        """`name`, else `<connection>_<destination table>`."""
        return self.name or f"{self.connection}_{self.destination_table(flow)}"

    def step(self, flow: FlowSpec) -> str:
        """The step (and Airflow task id) of this export."""
        return f"export_{self.export_name(flow)}"

    def export_id(self, flow: FlowSpec) -> str:
        """A stable id of what goes where (`flow:layer.table->connection.schema.table`): the state-store key."""
        layer, table = self.source_table(flow)
        return f"{flow.name}:{layer}.{table}->{self.connection}.{self.schema_ or ''}.{self.destination_table(flow)}"

    def renamed(self, column: str) -> str:
        """The destination name of lake column `column`."""
        return self.rename.get(column, column)

    def lake_key(self, flow: FlowSpec) -> list[str]:
        """The exported table's key in the lake: source.primary_key for silver, the gold table's primary_key."""
        layer, table = self.source_table(flow)
        if layer == "silver":
            return list(flow.source.primary_key) if flow.source is not None else []
        gold = next((t for t in flow.layers.gold if t.name == table), None)
        return list(gold.primary_key) if gold is not None else []

    def key_columns(self, flow: FlowSpec) -> list[str]:
        """The key at the destination: the lake key, renamed through `rename`."""
        return [self.renamed(column) for column in self.lake_key(flow)]


def check_exports(flow: FlowSpec) -> None:
    """The rules of `flow.exports` that need the flow: `from` names a table of this flow, an upsert has a
    key to match on, export names (and so task ids) are unique."""
    seen: dict[str, int] = {}
    for index, export in enumerate(flow.exports):
        at = f"exports.{index}"
        _check_from(flow, export, at)
        if export.mode == "upsert":
            _check_upsert(flow, export, at)
        name = export.export_name(flow)
        first = seen.setdefault(name.casefold(), index)
        if first != index:
            raise _error(
                "duplicate_export",
                "exports[{first}] and exports[{index}] are both named '{name}': give one a distinct name",
                f"{at}.name",
                first=first,
                index=index,
                name=name,
            )


def _check_from(flow: FlowSpec, export: ExportSpec, at: str) -> None:
    gold = [table.name for table in flow.layers.gold]
    known = ", ".join(gold) or "none"
    if export.from_ is None and flow.source is None and len(gold) > 1:
        raise _error(
            "export_from",
            "this flow has several gold tables ({known}): set from: gold.<table>",
            f"{at}.from",
            known=known,
        )
    layer, table = export.source_table(flow)
    if layer == "gold" and table not in gold:
        raise _error(
            "export_from",
            "no gold table '{table}' in this flow (its gold tables: {known})",
            f"{at}.from",
            table=table,
            known=known,
        )
    if layer == "silver" and flow.source is None:
        raise _error(
            "export_from",
            "this flow has no source, so no silver table: export one of its gold tables ({known})",
            f"{at}.from",
            known=known,
        )
    if layer == "silver" and not flow.layers.silver.enabled:
        raise _error("export_from", "silver is disabled in this flow (layers.silver.enabled)", f"{at}.from")


def _check_upsert(flow: FlowSpec, export: ExportSpec, at: str) -> None:
    layer, table = export.source_table(flow)
    key = export.lake_key(flow)
    if not key and layer == "silver":
        raise _error("export_key", "mode upsert matches rows by key: set source.primary_key", f"{at}.mode")
    if not key:
        index = next(i for i, t in enumerate(flow.layers.gold) if t.name == table)
        raise _error(
            "export_key",
            "mode upsert matches rows by key: set primary_key on gold table '{table}' (layers.gold[{index}])",
            f"{at}.mode",
            table=table,
            index=index,
        )
    if layer == "silver" and flow.layers.silver.write_mode == "append":
        raise _error(
            "export_append",
            "silver write_mode append keeps every version of a row, which can't be upserted by key: use mode append",
            f"{at}.mode",
        )
    missing = [column for column in key if export.columns is not None and column not in export.columns]
    if missing:
        raise _error(
            "export_key_columns",
            "mode upsert matches rows by key: columns must include {missing}",
            f"{at}.columns",
            missing=", ".join(missing),
        )
