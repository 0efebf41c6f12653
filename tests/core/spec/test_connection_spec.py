from __future__ import annotations

import pytest

from pipezone.core.spec.connection import ROLE_DESTINATION, ROLE_LAKE, ROLE_SOURCE, ROLE_STATE, connection_roles
from pipezone.core.spec.loader import validate_connection
from pipezone.core.spec.yaml_source import parse_yaml


def load(text: str):
    spec, problems = validate_connection(parse_yaml(text, "c.yaml"))
    return spec, [str(p) for p in problems]


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("name: a\ntype: sqlite\npath: x.db\n", {ROLE_SOURCE, ROLE_STATE, ROLE_DESTINATION}),
        ("name: a\ntype: mariadb\nhost: h\ndatabase: d\n", {ROLE_SOURCE, ROLE_STATE, ROLE_DESTINATION}),
        ("name: a\ntype: mysql\nhost: h\ndatabase: d\n", {ROLE_SOURCE, ROLE_STATE, ROLE_DESTINATION}),
        ("name: a\ntype: postgres\nhost: h\ndatabase: d\n", {ROLE_SOURCE, ROLE_DESTINATION}),
        ("name: a\ntype: sqlserver\nhost: h\ndatabase: d\n", {ROLE_SOURCE}),
        ("name: a\ntype: oracle\nhost: h\ndatabase: ORCLPDB1\n", {ROLE_SOURCE}),
        ("name: a\ntype: local\npath: lake\n", {ROLE_LAKE}),
        ("name: a\ntype: minio\naccess_key: ${env:K}\nsecret_key: ${vault:secret/minio#key}\n", {ROLE_LAKE}),
    ],
)
def test_types_and_roles(text: str, roles: set[str]) -> None:
    spec, problems = load(text)
    assert problems == []
    assert connection_roles(spec) == roles


def test_default_ports() -> None:
    spec, _ = load("name: a\ntype: postgres\nhost: h\ndatabase: d\n")
    assert spec.effective_port == 5432


def test_secret_refs_listed_for_resolution() -> None:
    spec, _ = load(
        "name: a\ntype: mysql\nhost: h\ndatabase: d\nuser: ${env:U}\npassword: ${file:pw.txt}\n"
        "options: {sslKeyPassword: '${vault:secret/db#ssl}', useSSL: true}\n"
    )
    assert spec.secret_refs() == {
        "password": "${file:pw.txt}",
        "user": "${env:U}",
        "options.sslKeyPassword": "${vault:secret/db#ssl}",
    }


def test_literal_secret_message_never_echoes_the_value() -> None:
    _, problems = load("name: a\ntype: mysql\nhost: h\ndatabase: d\npassword: s3cr3t-value\n")
    assert len(problems) == 1
    assert "s3cr3t-value" not in problems[0]
    assert problems[0].startswith("c.yaml:5:11: password: secrets must be references")


def test_fields_of_other_types_are_unknown_keys() -> None:
    _, problems = load("name: a\ntype: sqlite\npath: x.db\nhost: h\n")
    assert problems == ["c.yaml:4:1: host: unknown key 'host'"]
