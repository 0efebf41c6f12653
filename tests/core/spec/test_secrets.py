from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipezone.core.spec.secrets import (
    REDACTOR,
    RedactingFilter,
    Secret,
    SecretError,
    SecretRef,
    SecretResolver,
    hvac_reader,
)


def test_parse_references() -> None:
    assert SecretRef.parse("${env:DB_PASS}") == SecretRef("env", "DB_PASS")
    assert SecretRef.parse("${vault:secret/app/db#password}") == SecretRef("vault", "secret/app/db", "password")
    with pytest.raises(SecretError, match="needs '#KEY'"):
        SecretRef.parse("${vault:secret/app/db}")
    with pytest.raises(SecretError, match="secrets must be references"):
        SecretRef.parse("hunter2")


def test_env_and_file_resolution_hide_values(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("file-secret-1\n")
    resolver = SecretResolver({"DB_PASS": "env-secret-1"}, tmp_path)
    env = resolver.resolve("${env:DB_PASS}")
    file = resolver.resolve("${file:pw.txt}")
    assert (env.reveal(), file.reveal()) == ("env-secret-1", "file-secret-1")
    for secret in (env, file):
        assert secret.reveal() not in repr(secret)
        assert str(secret) == "***"
        assert secret.reveal() not in f"{secret} {secret!r} {[secret]}"


def test_resolution_errors_name_the_reference(tmp_path: Path) -> None:
    resolver = SecretResolver({}, tmp_path)
    with pytest.raises(SecretError, match=r"\$\{env:MISSING\}: environment variable MISSING is not set"):
        resolver.resolve("${env:MISSING}")
    with pytest.raises(SecretError, match=r"cannot read .*nope.txt"):
        resolver.resolve("${file:nope.txt}")
    with pytest.raises(SecretError, match="Vault is not configured"):
        resolver.resolve("${vault:secret/db#password}")


def test_vault_reference_splits_mount_and_path(tmp_path: Path) -> None:
    calls: list[tuple[str, str]] = []

    def reader(mount: str, path: str) -> dict[str, str]:
        calls.append((mount, path))
        return {"password": "vault-secret-1"}

    resolver = SecretResolver({}, tmp_path, reader)
    assert resolver.resolve("${vault:secret/data/pipezone/db#password}").reveal() == "vault-secret-1"
    assert resolver.resolve("${vault:kv/pipezone/db#password}").reveal() == "vault-secret-1"
    assert calls == [("secret", "pipezone/db"), ("kv", "pipezone/db")]
    with pytest.raises(SecretError, match="key 'user' not found at secret/pipezone/db"):
        resolver.resolve("${vault:secret/pipezone/db#user}")


def test_unreachable_vault_is_one_line(tmp_path: Path) -> None:
    resolver = SecretResolver({}, tmp_path, hvac_reader("http://127.0.0.1:1", "token", timeout=2))
    with pytest.raises(SecretError) as err:
        resolver.resolve("${vault:secret/db#password}")
    assert str(err.value).startswith("cannot reach Vault at http://127.0.0.1:1")
    assert "\n" not in str(err.value)


def test_resolved_values_are_masked_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    SecretResolver({"TOKEN": "log-secret-123"}, tmp_path).resolve("${env:TOKEN}")
    logger = logging.getLogger("pipezone.test")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("connecting with %s", "log-secret-123")
    assert "log-secret-123" not in caplog.text
    assert "connecting with ***" in caplog.text
    assert REDACTOR.redact("x log-secret-123 y") == "x *** y"


def test_secret_equality_does_not_leak() -> None:
    ref = SecretRef("env", "A")
    assert Secret("v1", ref) == Secret("v1", ref)
    assert Secret("v1", ref) != Secret("v2", ref)


def test_identifiers_resolved_unmasked_stay_readable(tmp_path: Path) -> None:
    """A user name kept in Vault (here: the env) is not masked in text; the password next to it is."""
    resolver = SecretResolver({"ID_USER_3c1": "svc-loader-3c1", "ID_PASS_3c1": "pw-8d2e-3c1"}, tmp_path)
    assert resolver.resolve("${env:ID_USER_3c1}", mask=False).reveal() == "svc-loader-3c1"
    resolver.resolve("${env:ID_PASS_3c1}")
    assert REDACTOR.redact("svc-loader-3c1 / pw-8d2e-3c1") == "svc-loader-3c1 / ***"
    resolver.resolve("${env:ID_USER_3c1}")  # resolved again as a secret: masked from now on
    assert REDACTOR.redact("svc-loader-3c1") == "***"
