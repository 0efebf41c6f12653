"""Where each layer's tables live: `raw/<connection>/<table>/`, `bronze/<flow>/`, `silver/<flow>/`, `gold/<name>/`.

One folder (local) or one bucket (S3/MinIO, through s3a) per layer, so the MinIO console shows the
medallion as four buckets and permissions can differ per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipezone.core.spec.connection import ConnectionSpec, LocalLakeConnection, S3LakeConnection
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.settings import Settings

LAYERS = ("raw", "bronze", "silver", "gold")


@dataclass(frozen=True)
class LakeLayout:
    """Base URI per layer, e.g. {'raw': 'file:///srv/lake/raw', 'bronze': 's3a://bronze', ...}."""

    roots: dict[str, str]

    def raw(self, flow: FlowSpec) -> str:
        """Raw is keyed by where the data came from; a query source is keyed by the flow."""
        source = flow.source
        if source is None:
            raise ValueError(f"flow '{flow.name}' has no source, so no raw table")
        table = source.table or flow.name
        if source.schema_ and source.table:
            table = f"{source.schema_}.{table}"
        return f"{self.roots['raw']}/{source.connection}/{table}"

    def bronze(self, flow_name: str) -> str:
        return f"{self.roots['bronze']}/{flow_name}"

    def silver(self, flow_name: str) -> str:
        return f"{self.roots['silver']}/{flow_name}"

    def gold(self, table_name: str) -> str:
        return f"{self.roots['gold']}/{table_name}"

    def table(self, layer: str, name: str, flow: FlowSpec | None = None) -> str:
        if layer == "raw":
            if flow is None:
                raise ValueError("the raw path needs the flow")
            return self.raw(flow)
        return {"bronze": self.bronze, "silver": self.silver, "gold": self.gold}[layer](name)


def lake_layout(conn: ConnectionSpec, settings: Settings) -> LakeLayout:
    """Build the layout for a lake connection (local folder or S3/MinIO buckets)."""
    if isinstance(conn, LocalLakeConnection):
        base = settings.resolve_path(conn.path).resolve().as_uri()
        return LakeLayout({layer: f"{base}/{layer}" for layer in LAYERS})
    if isinstance(conn, S3LakeConnection):
        return LakeLayout({layer: f"s3a://{conn.buckets.get(layer, layer)}" for layer in LAYERS})
    raise ValueError(f"connection '{conn.name}' (type {conn.type}) is not a lake")
