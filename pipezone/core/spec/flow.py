"""Flow specs (`metadata/flows/*.yaml`): one source table carried through raw -> bronze -> silver -> gold.

A flow without a `source` is a gold-only flow: Spark SQL over other flows' silver (or gold) tables,
referenced as `silver.<flow>` / `gold.<table>`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.airflow_names import flow_dag_id, key_problem
from pipezone.core.spec.export import MAX_EXPORTS, ExportSpec, check_exports
from pipezone.core.spec.quality import QualityCheck, checks_fit_the_flow, row_level
from pipezone.core.spec.schedule import ScheduleSpec, schedule_shorthands
from pipezone.core.spec.source import SourceSpec
from pipezone.core.spec.sql_references import table_references
from pipezone.core.spec.value_types import (
    DURATION_PATTERN,
    Columns,
    Duration,
    Identifier,
    Name,
    SelectStatement,
    SparkType,
    SpecModel,
    SqlExpression,
    Tag,
    bounded_duration,
    patterned,
)

WriteMode = Literal["append", "overwrite", "merge", "scd2"]
VERIFY_SHORTHANDS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


def _verify_shorthand(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isalpha() and value.strip() not in VERIFY_SHORTHANDS:
        raise PydanticCustomError(
            "verify_every",
            "unknown verify interval '{value}': use hourly, daily, weekly or a duration such as 12h",
            {"value": value[:40]},
        )
    return VERIFY_SHORTHANDS.get(value.strip(), value) if isinstance(value, str) else value


VerifyEvery = Annotated[
    Duration,
    BeforeValidator(_verify_shorthand),
    WithJsonSchema(
        {
            "oneOf": [
                {"enum": sorted(VERIFY_SHORTHANDS)},
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "hourly, daily, weekly, or a duration such as 12h (0s: every run).",
        }
    ),
]
LAYERS = ("raw", "bronze", "silver", "gold")
MAX_SQL_SNIPPETS = 300  # per flow: gold SQL, source query, filters, derived columns, expression checks
MAX_SQL_TOTAL_CHARS = 65_536


class DeduplicateSpec(SpecModel):
    keys: Columns = Field(min_length=1)
    order_by: Identifier | None = Field(default=None, description="Keep the row with the highest value.")


_TRANSFORMS = ("rename", "cast", "filter", "derive", "drop", "trim", "lower", "deduplicate")


class Transform(SpecModel):
    """One declarative step; each list item sets exactly one of the keys."""

    rename: dict[Identifier, Identifier] | None = Field(default=None, description="old -> new column name.")
    cast: dict[Identifier, SparkType] | None = Field(default=None, description="column -> Spark SQL type.")
    filter: SqlExpression | None = Field(default=None, description="Keep rows where this is true.")
    derive: dict[Identifier, SqlExpression] | None = Field(default=None, description="new column -> expression.")
    drop: Columns | None = None
    trim: Columns | None = Field(default=None, description="Strip surrounding whitespace.")
    lower: Columns | None = Field(default=None, description="Lower-case these columns.")
    deduplicate: DeduplicateSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Transform:
        given = [name for name in _TRANSFORMS if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "one_transform",
                "each transform sets exactly one of: {names} (found {found})",
                {"names": ", ".join(_TRANSFORMS), "found": ", ".join(given) or "none"},
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in _TRANSFORMS if getattr(self, name) is not None)


class RawLayer(SpecModel):
    """Immutable extracts, one partition per ingest date."""

    enabled: bool = True


class BronzeLayer(SpecModel):
    """Typed, snake_cased, deduplicated within the batch."""

    enabled: bool = True
    write_mode: WriteMode = "append"
    partition_by: Columns = Field(default_factory=list)


class SilverLayer(SpecModel):
    """Cleaned and conformed; merged by primary key by default."""

    enabled: bool = True
    write_mode: WriteMode = "merge"
    partition_by: Columns = Field(default_factory=list)
    transforms: list[Transform] = Field(default_factory=list)


class GoldTable(SpecModel):
    """A Spark SQL model over silver (or other gold) tables."""

    name: Name
    sql: SelectStatement = Field(description="SELECT over silver.<flow> / gold.<table>.")
    write_mode: Literal["overwrite", "merge"] = "overwrite"
    primary_key: Columns = Field(default_factory=list, description="Required for merge.")
    partition_by: Columns = Field(default_factory=list)

    @model_validator(mode="after")
    def _merge_needs_key(self) -> GoldTable:
        if self.write_mode == "merge" and not self.primary_key:
            raise PydanticCustomError("merge_key", "write_mode merge needs a primary_key")
        return self

    def references(self) -> set[tuple[str, str]]:
        """(layer, name) pairs this SQL reads."""
        return table_references(self.sql)


class Layers(SpecModel):
    raw: RawLayer = Field(default_factory=RawLayer)
    bronze: BronzeLayer = Field(default_factory=BronzeLayer)
    silver: SilverLayer = Field(default_factory=SilverLayer)
    gold: list[GoldTable] = Field(default_factory=list)


def _sql_snippets(data: Any) -> tuple[int, int]:
    """How many SQL texts a raw flow mapping holds (gold SQL, a source query, filters, derived columns,
    expression checks), and their total length, read from the plain data."""
    texts: list[Any] = []
    if not isinstance(data, dict):
        return 0, 0
    source, layers = data.get("source"), data.get("layers")
    if isinstance(source, dict):
        texts.append(source.get("query"))
    if isinstance(layers, dict):
        gold, silver = layers.get("gold"), layers.get("silver")
        texts += [t.get("sql") for t in gold if isinstance(t, dict)] if isinstance(gold, list) else []
        transforms = silver.get("transforms") if isinstance(silver, dict) else None
        for step in transforms if isinstance(transforms, list) else []:
            if isinstance(step, dict):
                texts.append(step.get("filter"))
                derive = step.get("derive")
                texts += list(derive.values()) if isinstance(derive, dict) else []
    quality = data.get("quality")
    checks = [c for c in quality if isinstance(c, dict)] if isinstance(quality, list) else []
    texts += [c.get(key) for c in checks for key in ("expression", "query")]
    strings = [t for t in texts if isinstance(t, str)]
    return len(strings), sum(len(t) for t in strings)


class FlowSpec(SpecModel):
    """A flow: what to read, how each layer is written, checks, and when it runs."""

    name: Name = Field(description="Unique flow name; DAG id pipezone_<name>.")
    description: str = ""
    owner: patterned(r"[^\r\n]{1,100}", "an owner is one line of 1-100 characters") = "pipezone"  # type: ignore[valid-type]
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    source: SourceSpec | None = Field(default=None, description="Omit for a gold-only flow.")
    layers: Layers = Field(default_factory=Layers)
    quality: list[QualityCheck] = Field(default_factory=list)
    schedule: ScheduleSpec | None = Field(
        default=None,
        description="Omit to run only when triggered. Shorthands: a cron or @preset string, or a list of flows.",
        json_schema_extra=schedule_shorthands,
    )
    verify: VerifyEvery | None = Field(
        default=None,
        description="Reconcile silver with the source (`pipezone verify`) as the DAG's last task, at most this "
        "often: hourly, daily, weekly or a duration (0s: every run). The task fails on any difference.",
    )
    exports: list[ExportSpec] = Field(
        default_factory=list,
        max_length=MAX_EXPORTS,
        description="Copy silver or a gold table to databases, each as task export_<name> after quality.",
    )
    schema_drift: Literal["evolve", "freeze"] = Field(
        default="evolve", description="evolve: add new source columns; freeze: fail on any change."
    )
    retries: int = Field(default=2, ge=0, le=20)
    retry_delay: bounded_duration(timedelta(days=1)) = Field(default=timedelta(minutes=5))  # type: ignore[valid-type]
    timeout: bounded_duration(timedelta(days=7), timedelta(seconds=1)) = Field(  # type: ignore[valid-type]
        default=timedelta(hours=2), description="Per task execution timeout."
    )

    @model_validator(mode="before")
    @classmethod
    def _sql_budget(cls, data: Any) -> Any:
        """Refuse a flow with more SQL than a flow needs before any of it is parsed: parsing is the one
        validation cost that grows with the text, and one file must never take seconds to check."""
        count, chars = _sql_snippets(data)
        if count > MAX_SQL_SNIPPETS or chars > MAX_SQL_TOTAL_CHARS:
            raise PydanticCustomError(
                "too_much_sql",
                "this flow holds {count} SQL statements and expressions ({chars} characters); "
                "the limit per flow is {max_count} and {max_chars} characters",
                {
                    "count": count,
                    "chars": f"{chars:,}",
                    "max_count": MAX_SQL_SNIPPETS,
                    "max_chars": f"{MAX_SQL_TOTAL_CHARS:,}",
                },
            )
        return data

    @model_validator(mode="after")
    def _airflow_ids(self) -> FlowSpec:
        problem = key_problem(flow_dag_id(self.name))
        if problem:
            raise PydanticCustomError("dag_id", problem, {"at": "name"})
        return self

    @model_validator(mode="after")
    def _not_after_itself(self) -> FlowSpec:
        for index, upstream in enumerate((self.schedule.after or []) if self.schedule else []):
            if upstream == self.name:
                raise PydanticCustomError(
                    "after_self",
                    "a flow can't run after itself ('{name}' would wait on its own output)",
                    {"name": self.name, "at": f"schedule.after.{index}"},
                )
        return self

    @model_validator(mode="after")
    def _checks_fit_the_flow(self) -> FlowSpec:
        checks_fit_the_flow(self.quality, {table.name for table in self.layers.gold}, self.source is not None)
        return self

    @model_validator(mode="after")
    def _coherent(self) -> FlowSpec:
        if self.source is None:
            explicit = [name for name in ("raw", "bronze", "silver") if name in self.layers.model_fields_set]
            if not self.layers.gold:
                raise PydanticCustomError("no_work", "a flow needs a 'source' or at least one layers.gold table")
            if explicit:
                raise PydanticCustomError(
                    "no_source", "layers {layers} need a 'source'", {"layers": ", ".join(explicit)}
                )
        elif self.verify is not None and not self.source.primary_key:
            raise PydanticCustomError(
                "verify_key", "verify compares by primary key: set source.primary_key", {"at": "verify"}
            )
        elif self.verify is not None and self.layers.silver.write_mode == "append":
            raise PydanticCustomError(
                "verify_append",
                "verify compares silver's current rows with the source's; silver write_mode append keeps every "
                "version (use merge or scd2)",
                {"at": "verify"},
            )
        elif not self.source.primary_key and self.uses_key_modes():
            raise PydanticCustomError(
                "merge_key",
                "write_mode merge/scd2 needs source.primary_key (or use append/overwrite)",
                {"at": "source.primary_key"},
            )
        return self

    @model_validator(mode="after")
    def _exports_fit(self) -> FlowSpec:
        check_exports(self)
        return self

    def uses_key_modes(self) -> bool:
        layers = [self.layers.bronze, self.layers.silver]
        return any(layer.enabled and layer.write_mode in ("merge", "scd2") for layer in layers)

    def export_of(self, step: str) -> ExportSpec | None:
        """The export a step `export_<name>` runs (None for any other step)."""
        return next((e for e in self.exports if e.step(self) == step), None)

    def steps(self) -> list[str]:
        """The steps this flow runs, in order."""
        steps: list[str] = []
        if self.source is not None:
            steps.append("extract")
            steps += [name for name in ("bronze", "silver") if getattr(self.layers, name).enabled]
        if self.layers.gold:
            steps.append("gold")
        if any(not row_level(check) for check in self.quality):  # row checks run inside silver
            steps.append("quality")
        steps += [export.step(self) for export in self.exports]
        if self.verify is not None and self.source is not None:
            steps.append("verify")
        return steps

    def upstream_flows(self) -> set[str]:
        """Flows this one depends on: its `after` list and the silver tables its gold SQL reads."""
        upstream = set(self.schedule.after or []) if self.schedule else set()
        for table in self.layers.gold:
            upstream |= {name for layer, name in table.references() if layer == "silver"}
        upstream.discard(self.name)
        return upstream
