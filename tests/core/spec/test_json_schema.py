from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipezone.core.spec.json_schema import render_schemas, stale_schemas

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "metadata" / "schemas"


def test_committed_schemas_match_the_models() -> None:
    assert stale_schemas(SCHEMAS) == [], "run `make schema` and commit metadata/schemas"


def test_stale_schema_is_detected(tmp_path: Path) -> None:
    for name, text in render_schemas().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "flow.schema.json").write_text("{}\n")
    assert stale_schemas(tmp_path) == ["flow.schema.json"]


@pytest.mark.parametrize(
    ("folder", "schema"), [("flows", "flow"), ("connections", "connection"), ("profiles", "profile")]
)
def test_schemas_accept_the_repo_metadata(folder: str, schema: str) -> None:
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{schema}.schema.json").read_text()))
    files = sorted((REPO / "metadata" / folder).glob("*.yaml"))
    assert files
    for path in files:
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path


def test_schema_rejects_a_typo() -> None:
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "flow.schema.json").read_text()))
    errors = list(validator.iter_errors({"name": "a", "source": {"connection": "c", "tabel": "t"}}))
    assert any("tabel" in e.message for e in errors)


def test_every_yaml_file_points_editors_at_its_schema() -> None:
    for folder, schema in (("flows", "flow"), ("connections", "connection"), ("profiles", "profile")):
        for path in (REPO / "metadata" / folder).glob("*.yaml"):
            first = path.read_text().splitlines()[0]
            assert first == f"# yaml-language-server: $schema=../schemas/{schema}.schema.json", path
    settings = json.loads((REPO / ".vscode" / "settings.json").read_text())
    assert set(settings["yaml.schemas"]) == {
        "./metadata/schemas/flow.schema.json",
        "./metadata/schemas/connection.schema.json",
        "./metadata/schemas/profile.schema.json",
    }
