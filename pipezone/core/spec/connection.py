"""Connection specs (`metadata/connections/*.yaml`): where sources, the lake, the state store and exports live.

Credentials are only ever references (`${env:..}`, `${file:..}`, `${vault:..}`): a literal password in
YAML is a validation error, so secrets never land in git. The `type` key picks the model from
`CONNECTION_TYPES`; adding a database means one model (or one more type on an existing one) here.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.secret_scan import USE_REFERENCE, secret_name
from pipezone.core.spec.value_types import (
    Name,
    SecretRef,
    SpecModel,
    bounded_duration,
    is_secret_reference,
    patterned,
)

ROLE_SOURCE = "source"
ROLE_LAKE = "lake"
ROLE_STATE = "state_store"
ROLE_DESTINATION = "destination"
DESTINATION_TYPES = ("postgres", "mysql", "mariadb", "sqlite")  # what exports write to (destinations/registry.py)

HOST_PATTERN = r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9_])?|\[?[0-9A-Fa-f:.]{2,45}\]?)$"
DATABASE_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"  # adapters encode or refuse the rest; the scan finds `?password=`
OPTION_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$"
HTTP_URL_PATTERN = r"^https?://[A-Za-z0-9.\-]+(?::\d{1,5})?(?:/[^\s@]*)?$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
_HOST = re.compile(HOST_PATTERN)
_DATABASE = re.compile(DATABASE_PATTERN)
_OPTION_KEY = re.compile(OPTION_KEY_PATTERN)
_LITERAL_USER = re.compile(r"^[^\s:@/\\]{1,128}$")
Bucket = patterned(BUCKET_PATTERN, "an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'")
HttpUrl = patterned(HTTP_URL_PATTERN, "not an http(s) URL of a host (and no user:password@ in it)")


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):  # never quote it: a host is where a pasted `user:password@` ends up
        raise PydanticCustomError(
            "invalid_host", "not a host name or IP address (credentials go in user and password, as references)"
        )
    return value


def _database(value: str) -> str:
    if not _DATABASE.fullmatch(value):  # '?', '&', '/' would add options to the JDBC URL
        raise PydanticCustomError("invalid_database", "a database name is 1-128 characters with no control characters")
    return value


def _user(value: str | None) -> str | None:
    if value is None or is_secret_reference(value) or _LITERAL_USER.fullmatch(value):
        return value
    raise PydanticCustomError(
        "invalid_user", "a user is a plain name (no ':', '@', '/' or spaces) or a secret reference"
    )


def _options(options: dict[str, OptionValue]) -> dict[str, OptionValue]:
    """Driver options: plain names, and a secret-looking option only as a reference."""
    for key, value in options.items():
        if not _OPTION_KEY.fullmatch(key):
            raise PydanticCustomError(
                "option_key", "an option name uses letters, digits, _, '.' and '-'", {"at": (key,)}
            )
        if secret_name(key) and not isinstance(value, bool) and not is_secret_reference(value):
            raise PydanticCustomError(
                "literal_secret",
                "option '{key}' looks like a secret: {use}",
                {"key": key, "use": USE_REFERENCE, "at": (key,)},
            )
    return options


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


class ServerConnection(ConnectionSpec):
    """What every database server's connection has: where it is, who logs in (by reference), driver options."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_SOURCE})

    host: str = Field(min_length=1, max_length=255, json_schema_extra={"pattern": HOST_PATTERN})
    database: str = Field(min_length=1, json_schema_extra={"pattern": DATABASE_PATTERN})
    user: str | None = Field(default=None, description="User name, literal or a secret reference.")
    password: SecretRef | None = None
    options: dict[str, OptionValue] = Field(
        default_factory=dict, description="Driver URL/connection options, e.g. {useSSL: false}.", max_length=200
    )

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        return _host(value)

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        return _database(value)

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        return _user(value)

    @field_validator("options")
    @classmethod
    def _no_literal_secret_options(cls, options: dict[str, OptionValue]) -> dict[str, OptionValue]:
        return _options(options)

    def secret_refs(self) -> dict[str, str]:
        refs = {"password": self.password} if self.password else {}
        if self.user and is_secret_reference(self.user):
            refs["user"] = self.user
        refs.update({f"options.{k}": v for k, v in self.options.items() if is_secret_reference(v)})
        return refs


class JdbcConnection(ServerConnection):
    """A database server read over JDBC (mysql/mariadb: also the state store; postgres, mysql, mariadb: also
    an export destination)."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_SOURCE})
    default_ports: ClassVar[dict[str, int]] = {
        "mysql": 3306,
        "mariadb": 3306,
        "postgres": 5432,
        "sqlserver": 1433,
        "oracle": 1521,
    }

    type: Literal["mysql", "mariadb", "postgres", "sqlserver", "oracle"]
    port: int | None = Field(default=None, ge=1, le=65535, description="Defaults to the type's usual port.")
    database: str = Field(
        min_length=1, description="Database (Oracle: service name).", json_schema_extra={"pattern": DATABASE_PATTERN}
    )

    @property
    def effective_port(self) -> int:
        return self.port or self.default_ports[self.type]

    @property
    def roles_for_type(self) -> frozenset[str]:
        state = {ROLE_STATE} if self.type in ("mysql", "mariadb") else set()
        destination = {ROLE_DESTINATION} if self.type in DESTINATION_TYPES else set()
        return self.roles | state | destination


class SqliteConnection(ConnectionSpec):
    """An SQLite file: the embedded demo source, the default state store, an export destination."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_SOURCE, ROLE_STATE, ROLE_DESTINATION})

    type: Literal["sqlite"]
    path: str = Field(min_length=1, description="Database file; relative paths start at the project root.")


class MongoConnection(ServerConnection):
    """A MongoDB server (or one speaking its wire protocol, such as FerretDB): collections as sources."""

    type: Literal["mongodb"]
    port: int = Field(default=27017, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=63, json_schema_extra={"pattern": DATABASE_PATTERN})
    auth_source: str | None = Field(default=None, max_length=63, description="Database of the user (default admin).")
    options: dict[str, OptionValue] = Field(
        default_factory=dict,
        max_length=100,
        description="MongoClient options, e.g. {tls: true, replicaSet: rs0, readPreference: secondaryPreferred}.",
    )


class RestAuth(SpecModel):
    """How requests prove who they are; every credential is a secret reference."""

    type: Literal["none", "bearer", "basic", "api_key"] = "none"
    token: SecretRef | None = Field(default=None, description="bearer: the token.")
    user: str | None = Field(default=None, description="basic: the user name, literal or a secret reference.")
    password: SecretRef | None = Field(default=None, description="basic: the password.")
    header: patterned(r"^[A-Za-z0-9\-]{1,64}$", "an HTTP header name") = Field(  # type: ignore[valid-type]
        default="X-API-Key", description="api_key: the header that carries the key."
    )
    key: SecretRef | None = Field(default=None, description="api_key: the key.")

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        return _user(value)

    @model_validator(mode="after")
    def _needs(self) -> RestAuth:
        needed = {"none": (), "bearer": ("token",), "basic": ("user", "password"), "api_key": ("key",)}[self.type]
        for name in needed:
            if getattr(self, name) is None:
                raise PydanticCustomError(
                    "auth_missing", "auth type {kind} needs '{name}'", {"kind": self.type, "name": name, "at": name}
                )
        return self


class RestConnection(ConnectionSpec):
    """An HTTP JSON API: endpoints (named by flows) under one base URL, with one way to authenticate."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_SOURCE})

    type: Literal["rest"]
    base_url: HttpUrl = Field(description="e.g. https://api.example.com/v2 (no credentials in it).")  # type: ignore[valid-type]
    auth: RestAuth = Field(default_factory=RestAuth)
    headers: dict[
        patterned(r"^[A-Za-z0-9\-]{1,64}$", "an HTTP header name"),  # type: ignore[valid-type]
        str,
    ] = Field(default_factory=dict, max_length=50, description="Sent with every request (no credentials here).")
    timeout: bounded_duration(timedelta(minutes=10), timedelta(seconds=1)) = Field(  # type: ignore[valid-type]
        default=timedelta(seconds=30), description="Per request: connect, read and write each."
    )
    verify_tls: bool = True

    def secret_refs(self) -> dict[str, str]:
        fields = ("token", "user", "password", "key")
        refs = {f"auth.{n}": getattr(self.auth, n) for n in fields if is_secret_reference(getattr(self.auth, n))}
        refs.update({f"headers.{k}": v for k, v in self.headers.items() if is_secret_reference(v)})
        return refs


class LocalLakeConnection(ConnectionSpec):
    """The lake on a local folder: one sub-folder per layer."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_LAKE})

    type: Literal["local"]
    path: str = Field(min_length=1, description="Lake root; relative paths start at the project root.")


class S3LakeConnection(ConnectionSpec):
    """The lake on S3 or MinIO: one bucket per layer, read and written through s3a."""

    roles: ClassVar[frozenset[str]] = frozenset({ROLE_LAKE})

    type: Literal["s3", "minio"]
    endpoint: HttpUrl | None = Field(default=None, description="e.g. http://127.0.0.1:9000 (MinIO).")  # type: ignore[valid-type]
    region: patterned(r"^[a-z0-9-]{1,32}$", "a region name such as us-east-1") = "us-east-1"  # type: ignore[valid-type]
    access_key: str = Field(description="Access key id, literal or a secret reference.", min_length=1, max_length=256)
    secret_key: SecretRef
    path_style: bool = True
    buckets: dict[Literal["raw", "bronze", "silver", "gold", "quarantine", "quality"], Bucket] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description="Bucket per layer (default: the layer's name), and for quarantined rows and quality Data Docs.",
    )

    @property
    def effective_endpoint(self) -> str:
        """The endpoint s3a talks to: the configured one (MinIO), else the region's AWS endpoint."""
        return self.endpoint or f"https://s3.{self.region}.amazonaws.com"

    def secret_refs(self) -> dict[str, str]:
        refs = {"secret_key": self.secret_key}
        if is_secret_reference(self.access_key):
            refs["access_key"] = self.access_key
        return refs


CONNECTION_TYPES: dict[str, type[ConnectionSpec]] = {
    **{t: JdbcConnection for t in JdbcConnection.default_ports},
    "sqlite": SqliteConnection,
    "local": LocalLakeConnection,
    "s3": S3LakeConnection,
    "minio": S3LakeConnection,
    "mongodb": MongoConnection,
    "rest": RestConnection,
}

AnyConnection = (
    JdbcConnection | SqliteConnection | MongoConnection | RestConnection | LocalLakeConnection | S3LakeConnection
)


def connection_roles(spec: ConnectionSpec) -> frozenset[str]:
    """What a connection can serve as: source, lake, state store, export destination."""
    return spec.roles_for_type if isinstance(spec, JdbcConnection) else spec.roles


def connection_model(data: Any) -> type[ConnectionSpec] | None:
    """The model for a raw mapping's `type`, or None when the type is missing or unknown."""
    kind = data.get("type") if isinstance(data, dict) else None
    return CONNECTION_TYPES.get(kind) if isinstance(kind, str) else None
