"""Literal secrets found by shape and by key name, and masked in any text."""

from __future__ import annotations

import pytest

from pipezone.core.spec.secret_scan import literal_secrets, scrub, secret_name


@pytest.mark.parametrize(
    "name",
    [
        "password", "sslpassword", "trustStorePassword", "pwd", "apiKey", "api_key", "passphrase",
        "sslPassphrase", "credential", "private_key", "client_secret", "accessToken",
        "spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.session.token",
        "fs.azure.account.key.acct.blob.core.windows.net",
    ],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize(
    "name", ["user", "host", "passwordCharacterEncoding", "sslkey", "tokenUrl", "access_key", "useSSL", "keyStoreType"]
)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not secret_name(name)


def test_connection_values_by_shape() -> None:
    data = {
        "host": "admin:pw123@db",
        "database": "shop?password=pw123",
        "options": {"url": "jdbc:mysql://u:pw123@h/db", "pwd": "pw123", "keyRef": "${env:KEY}", "useSSL": True},
        "description": "-----BEGIN PRIVATE KEY-----",
        "user": "${vault:secret/db}",
    }
    found = dict(literal_secrets(data, "connection"))
    assert set(found) == {
        ("host",),
        ("database",),
        ("options", "url"),
        ("options", "pwd"),
        ("description",),
        ("user",),
    }
    assert "needs '#KEY'" in found[("user",)]
    assert all("pw123" not in message for message in found.values())


def test_flows_are_scanned_for_unmistakable_shapes_only() -> None:
    flow = {"layers": {"silver": {"transforms": [{"derive": {"token_count": "password=other_col"}}]}}}
    assert literal_secrets(flow, "flow") == []
    flow = {"description": "see postgres://etl:pw123@warehouse/db"}
    assert literal_secrets(flow, "flow") == [
        (("description",), "holds a password in a URL (user:password@): flows hold no credentials")
    ]


def test_scrub_masks_every_shape() -> None:
    text = "x https://u:pw123@h/ y pwd=pw123&a=1 z ghp_" + "a" * 36 + " -Dtrust.password=pw123"
    clean = scrub(text)
    assert "pw123" not in clean and "ghp_" not in clean
    assert "https://u:***@h/" in clean and "a=1" in clean
