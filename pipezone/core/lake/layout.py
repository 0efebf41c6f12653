"""Where each layer's tables live: `raw/<connection>/<table>/`, `bronze/<flow>/`, `silver/<flow>/`, `gold/<name>/`;
beside them `quarantine/<flow>/` (rows a quality check held back from silver) and `quality/<flow>/` (the
flow's Great Expectations Data Docs).

One folder (local) or one bucket (S3/MinIO, through s3a) per area, so the MinIO console shows the
medallion as four buckets and permissions can differ per layer.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

from pipezone.core.spec.connection import ConnectionSpec, LocalLakeConnection, S3LakeConnection
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.settings import Settings

LAYERS = ("raw", "bronze", "silver", "gold")
AREAS = (*LAYERS, "quarantine", "quality")


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

    def quarantine(self, flow_name: str) -> str:
        return f"{self.roots['quarantine']}/{flow_name}"

    def quality(self, flow_name: str) -> str:
        """The folder of the flow's Data Docs site (index.html at its top)."""
        return f"{self.roots['quality']}/{flow_name}"

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
        return LakeLayout({area: f"{base}/{area}" for area in AREAS})
    if isinstance(conn, S3LakeConnection):
        return LakeLayout({area: f"s3a://{conn.buckets.get(area, area)}" for area in AREAS})
    raise ValueError(f"connection '{conn.name}' (type {conn.type}) is not a lake")


def browse_url(uri: str, console_url: str | None) -> str:
    """A URL a browser can open for a lake URI: `s3a://bucket/prefix` in the console, else the URI itself."""
    if not uri.startswith(("s3a://", "s3://")):
        return uri
    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    if console_url:  # MinIO console: the object prefix is base64-encoded in the path
        encoded = base64.b64encode(prefix.encode()).decode() if prefix else ""
        return f"{console_url.rstrip('/')}/browser/{bucket}/{encoded}".rstrip("/")
    return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={quote(prefix)}"
