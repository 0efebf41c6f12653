"""Connection specs (`metadata/connections/*.yaml`): where sources, the lake and the state store live.

Credentials are only ever references (`${env:..}`, `${file:..}`, `${vault:..}`): a literal password in
YAML is a validation error, so secrets never land in git. The `type` key picks the model from
`CONNECTION_TYPES`; adding a database means one model (or one more type on an existing one) here.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from pipezone.core.spec_types import Identifier, Name, SecretRef, SpecModel

ROLE_SOURCE = "source"
ROLE_LAKE = "lake"
ROLE_STATE = "state_store"

_SECRETISH_OPTION = re.compile(r"pass|secret|token|credential|private", re.IGNORECASE)
_SECRET_REF = re.compile(r"^\$\{(env|file|vault):[^}]+\}$")


class ConnectionSpec(SpecModel):
    """Fields every connection has."""

    roles: ClassVar[frozenset[str]] = frozenset()

    name: Name = Field(description="Unique connection name that flows refer to.")
    type: str
    description: str = ""

    def secret_refs(self) -> dict[str, str]:
        """Field name -> secret reference, for resolution and redaction."""
        return {}


OptionValue = str | int | float | bool


class JdbcConnection(ConnectionSpec):
    """A database server read over JDBC (and, for mysql/mariadb, usable as the state store)."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_SOURCE})
    default_ports: ClassVar[dict[str, int]] = {
        "mysql": 3306,
        "mariadb": 3306,
        "postgres": 5432,
        "sqlserver": 1433,
        "oracle": 1521,
    }

    type: Literal["mysql", "mariadb", "postgres", "sqlserver", "oracle"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="Defaults to the type's usual port.")
    database: str = Field(min_length=1, description="Database (Oracle: service name).")
    user: str | None = Field(default=None, description="User name, literal or a secret reference.")
    password: SecretRef | None = None
    options: dict[str, OptionValue] = Field(
        default_factory=dict, description="Driver URL/connection options, e.g. {useSSL: false}."
    )

    @field_validator("options")
    @classmethod
    def _no_literal_secret_options(cls, options: dict[str, OptionValue]) -> dict[str, OptionValue]:
        for key, value in options.items():
            if _SECRETISH_OPTION.search(key) and not (isinstance(value, str) and _SECRET_REF.match(value)):
                raise ValueError(
                    f"option '{key}' looks like a secret: use ${{env:NAME}}, ${{file:PATH}} or "
                    "${vault:PATH#KEY}, never a literal value"
                )
        return options

    @property
    def effective_port(self) -> int:
        return self.port or self.default_ports[self.type]

    @property
    def roles_for_type(self) -> frozenset[str]:
        return self.roles | ({ROLE_STATE} if self.type in ("mysql", "mariadb") else frozenset())

    def secret_refs(self) -> dict[str, str]:
        refs = {"password": self.password} if self.password else {}
        if self.user and _SECRET_REF.match(self.user):
            refs["user"] = self.user
        refs.update({f"options.{k}": v for k, v in self.options.items() if isinstance(v, str) and _SECRET_REF.match(v)})
        return refs


class SqliteConnection(ConnectionSpec):
    """An SQLite file: the embedded demo source and the default state store."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_SOURCE, ROLE_STATE})

    type: Literal["sqlite"]
    path: str = Field(min_length=1, description="Database file; relative paths start at the project root.")


class LocalLakeConnection(ConnectionSpec):
    """The lake on a local folder: one sub-folder per layer."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_LAKE})

    type: Literal["local"]
    path: str = Field(min_length=1, description="Lake root; relative paths start at the project root.")


class S3LakeConnection(ConnectionSpec):
    """The lake on S3 or MinIO: one bucket per layer, read and written through s3a."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_LAKE})

    type: Literal["s3", "minio"]
    endpoint: str | None = Field(default=None, description="e.g. http://127.0.0.1:9000 (MinIO).")
    region: str = "us-east-1"
    access_key: str = Field(description="Access key id, literal or a secret reference.")
    secret_key: SecretRef
    path_style: bool = True
    buckets: dict[Literal["raw", "bronze", "silver", "gold"], Identifier | str] = Field(
        default_factory=lambda: {layer: layer for layer in ("raw", "bronze", "silver", "gold")},
        description="Bucket per layer.",
    )

    @property
    def effective_endpoint(self) -> str:
        """The endpoint s3a talks to: the configured one (MinIO), else the region's AWS endpoint."""
        return self.endpoint or f"https://s3.{self.region}.amazonaws.com"

    def secret_refs(self) -> dict[str, str]:
        refs = {"secret_key": self.secret_key}
        if _SECRET_REF.match(self.access_key):
            refs["access_key"] = self.access_key
        return refs


CONNECTION_TYPES: dict[str, type[ConnectionSpec]] = {
    **{t: JdbcConnection for t in JdbcConnection.default_ports},
    "sqlite": SqliteConnection,
    "local": LocalLakeConnection,
    "s3": S3LakeConnection,
    "minio": S3LakeConnection,
}

AnyConnection = JdbcConnection | SqliteConnection | LocalLakeConnection | S3LakeConnection


def connection_roles(spec: ConnectionSpec) -> frozenset[str]:
    """What a connection can serve as: source, lake, state store."""
    return spec.roles_for_type if isinstance(spec, JdbcConnection) else spec.roles


def connection_model(data: Any) -> type[ConnectionSpec] | None:
    """The model for a raw mapping's `type`, or None when the type is missing or unknown."""
    kind = data.get("type") if isinstance(data, dict) else None
    return CONNECTION_TYPES.get(kind) if isinstance(kind, str) else None
