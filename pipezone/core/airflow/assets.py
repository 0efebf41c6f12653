"""The Airflow Assets of a flow: one per layer table it writes, and the ones its schedule waits on.

Naming (stable, profile-independent, computed from the flow specs alone, so parsing reads no profile,
no secret and no network):

- name `pipezone.<layer>.<table>`: `pipezone.raw.retail_demo.customers`, `pipezone.bronze.retail_orders`,
  `pipezone.silver.retail_orders`, `pipezone.gold.daily_revenue`;
- uri  `x-pipezone://<layer>/<table>`: the lake layout (`raw/<connection>/<table>`, `bronze/<flow>`,
  `silver/<flow>`, `gold/<table>`) under a logical root. The `x-` scheme is Airflow's convention for a
  custom scheme (no provider normalizer is looked up).

The physical location depends on the profile (a local folder embedded, MinIO buckets on the stack);
keeping it out of the asset identity means switching profiles never orphans the assets and their
history. The task's "Lake location" link shows the physical location at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipezone.core.lake.layout import LAYERS, LakeLayout
from pipezone.core.spec.flow import FlowSpec

URI_SCHEME = "x-pipezone"
EXPORT = "export"  # the pseudo-layer of exported tables: name pipezone.export.<connection>.<table>
LOGICAL_LAYOUT = LakeLayout({layer: f"{URI_SCHEME}://{layer}" for layer in LAYERS})


@dataclass(frozen=True, order=True)
class TableRef:
    """A layer table: `layer` and its name below the layer root (`retail_demo/customers` for raw)."""

    layer: str
    table: str

    @property
    def asset_name(self) -> str:
        return f"pipezone.{self.layer}.{self.table.replace('/', '.')}"

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.layer}/{self.table}"


def _raw_table(flow: FlowSpec) -> str:
    return LOGICAL_LAYOUT.raw(flow).removeprefix(f"{URI_SCHEME}://raw/")


def step_outputs(flow: FlowSpec, step: str) -> list[TableRef]:
    """Tables `step` of `flow` writes (quality writes none: its results go to the state store)."""
    if step == "extract":
        return [TableRef("raw", _raw_table(flow))]
    if step in ("bronze", "silver"):
        return [TableRef(step, flow.name)]
    if step == "gold":
        return [TableRef("gold", table.name) for table in flow.layers.gold]
    export = flow.export_of(step)  # `pipezone.export.<connection>.[<schema>.]<table>`: lineage to the database
    if export is not None:
        parts = [export.connection, *([export.schema_] if export.schema_ else []), export.destination_table(flow)]
        return [TableRef(EXPORT, "/".join(parts))]
    return []


def flow_outputs(flow: FlowSpec) -> list[TableRef]:
    """Every table the flow writes, in step order."""
    return [ref for step in flow.steps() for ref in step_outputs(flow, step)]


def final_outputs(flow: FlowSpec) -> list[TableRef]:
    """What a downstream flow waits on: the gold tables if any, else the last layer written (exports are
    the database's, not the lake's: a downstream flow reads the lake)."""
    outputs = [ref for ref in flow_outputs(flow) if ref.layer != EXPORT]
    if not outputs:
        return []
    last = outputs[-1].layer
    return [ref for ref in outputs if ref.layer == last]


def gold_references(flow: FlowSpec) -> list[TableRef]:
    """Silver and gold tables the flow's gold SQL reads (its own gold tables excluded)."""
    own = {table.name for table in flow.layers.gold}
    refs = {TableRef(layer, name) for table in flow.layers.gold for layer, name in table.references()}
    return sorted(ref for ref in refs if not (ref.layer == "gold" and ref.table in own))


def schedule_inputs(flow: FlowSpec, flows: dict[str, FlowSpec]) -> list[TableRef]:
    """The tables whose update triggers `flow`, or [] when it is not asset-scheduled.

    `schedule.after: [a, b]` waits on each upstream flow's tables that this flow's SQL reads, or, when
    it reads none of them, on the upstream's final outputs (its silver table by default when the
    upstream flow is unknown, e.g. its file is invalid: the DAG keeps its schedule meanwhile). A
    gold-only flow without a schedule waits on the tables its SQL reads.
    """
    reads = gold_references(flow)
    if flow.schedule is not None and flow.schedule.after:
        inputs: set[TableRef] = set()
        for name in flow.schedule.after:
            upstream = flows.get(name)
            owned = {ref for ref in reads if _owned_by(ref, name, upstream)}
            if owned:
                inputs |= owned
            elif upstream is not None:
                inputs |= set(final_outputs(upstream))
            else:
                inputs.add(TableRef("silver", name))
        return sorted(inputs)
    if flow.schedule is None and flow.source is None:
        return reads
    return []


def _owned_by(ref: TableRef, name: str, upstream: FlowSpec | None) -> bool:
    if ref.layer == "silver":
        return ref.table == name
    return upstream is not None and ref.table in {table.name for table in upstream.layers.gold}
