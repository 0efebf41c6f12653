"""Where a flow's Great Expectations Data Docs are built and published: the lake's `quality/<flow>/` area.

GX renders a site into a local folder. On a local lake that folder is the area itself; on S3/MinIO the
site is rendered into a temporary folder and uploaded (boto3) under `s3a://<quality bucket>/<flow>/`, with
content types set so the MinIO console and a browser show the pages rather than download them. Earlier
runs' validation pages stay where they were (each under its own run name and time); the index lists the
validations of the run that rendered it.
"""

from __future__ import annotations

import mimetypes
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import boto3
from botocore.config import Config

from pipezone.core.lake.layout import LakeLayout, browse_url
from pipezone.core.spark.session import S3Settings
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.quality import row_level

INDEX = "index.html"


def local_folder(uri: str) -> Path | None:
    """The folder of a `file://` URI (None for an object-store URI)."""
    if not uri.startswith("file:"):
        return None
    return Path(unquote(urlparse(uri).path))


@contextmanager
def site_folder(uri: str, s3: S3Settings | None) -> Iterator[Path]:
    """A folder to render the site into; on exit it is published at `uri` (uploaded for s3a URIs)."""
    local = local_folder(uri)
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
        yield local
        return
    staging = Path(tempfile.mkdtemp(prefix="pipezone-docs-"))
    try:
        yield staging
        upload(staging, uri, s3)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def upload(folder: Path, uri: str, s3: S3Settings | None) -> int:
    """Every file under `folder` to the `s3a://bucket/prefix` URI; the number of files."""
    if s3 is None:
        raise ValueError(f"Data Docs for {uri}: the lake has no S3 settings")
    bucket, _, prefix = uri.split("://", 1)[1].partition("/")
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        config=Config(s3={"addressing_style": "path" if s3.path_style else "virtual"}),
    )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}".lstrip("/")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": kind})
    return len(files)


def site_uri(lake: LakeLayout, flow: FlowSpec, step: str) -> str | None:
    """Where `step` renders the flow's Data Docs: `quality/<flow>/quality` (the quality step's table
    checks), `quality/<flow>/silver` (silver's row checks): one site each, so neither overwrites the other's
    index. None for a step that renders none."""
    rows = any(row_level(check) for check in flow.quality)
    tables = any(not row_level(check) for check in flow.quality)
    if (step == "quality" and tables) or (step == "silver" and rows):
        return f"{lake.quality(flow.name)}/{step}"
    return None


def site_link(site: str | None, console_url: str | None) -> str:
    """A URL a browser opens: the index page on a local lake, the site's folder in the console on S3."""
    if site is None:
        return ""
    return index_uri(site) if site.startswith("file:") else browse_url(site, console_url)


def index_uri(uri: str) -> str:
    """The site's front page."""
    return f"{uri.rstrip('/')}/{INDEX}"
