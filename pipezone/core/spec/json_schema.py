"""JSON Schemas generated from the spec models, committed under metadata/schemas/ for editors.

VS Code's YAML extension reads them through `.vscode/settings.json` and the
`# yaml-language-server: $schema=...` comment at the top of each file, so analysts see unknown keys
and wrong types while typing. A test fails when the committed files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from pipezone.core.spec.connection import AnyConnection
from pipezone.core.spec.flow import FlowSpec
from pipezone.core.spec.profile import ProfileSpec

SCHEMA_FILES = {"flow": "flow.schema.json", "connection": "connection.schema.json", "profile": "profile.schema.json"}


def flow_schema() -> dict[str, Any]:
    schema = FlowSpec.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "PipeZone flow", **schema}


def connection_schema() -> dict[str, Any]:
    adapter = TypeAdapter(Annotated[AnyConnection, Field(discriminator="type")])
    schema = adapter.json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "PipeZone connection", **schema}


def profile_schema() -> dict[str, Any]:
    schema = ProfileSpec.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "PipeZone profile", **schema}


def render_schemas() -> dict[str, str]:
    """File name -> exact text (stable key order, trailing newline) for writing or comparing."""
    schemas = {"flow": flow_schema(), "connection": connection_schema(), "profile": profile_schema()}
    return {SCHEMA_FILES[k]: json.dumps(v, indent=2, sort_keys=True) + "\n" for k, v in schemas.items()}


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(folder: Path) -> list[str]:
    """Names of committed schema files that differ from what the models generate now."""
    stale = []
    for name, text in render_schemas().items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
