"""Registries: the public facts of each connection and flow, and the hash of the spec they came from.

They let operators and the CLI see what is deployed without reading YAML; a row changes only when its
facts do, so `updated_at` means "last changed". Credentials never reach these tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select

from pipezone.core.state.base import StoreBase
from pipezone.core.state.schema import connections_registry, flows_registry


@dataclass(frozen=True)
class ConnectionRecord:
    """A registered connection: what and where, never credentials."""

    name: str
    type: str
    host: str | None
    description: str | None
    spec_hash: str
    updated_at: datetime


@dataclass(frozen=True)
class FlowRecord:
    """A registered flow and the hash of the spec it was registered from."""

    name: str
    connection: str
    spec_hash: str
    schedule: str | None
    layers: tuple[str, ...]
    owner: str | None
    updated_at: datetime


class RegistryStore(StoreBase):
    """Register connections and flows, and list them."""

    def register_connection(
        self,
        name: str,
        type: str,
        spec_hash: str,
        *,
        host: str | None = None,
        description: str | None = None,
    ) -> bool:
        """Upsert a connection's public facts; returns True when something changed. Never pass secrets."""
        if host and "@" in host:
            raise ValueError(f"connection {name!r}: host must not carry credentials")
        values = {"type": type, "host": host, "description": description, "spec_hash": spec_hash}
        return self._register(connections_registry, name, values)

    def register_flow(
        self,
        name: str,
        connection: str,
        spec_hash: str,
        *,
        schedule: str | None = None,
        layers: Sequence[str] = (),
        owner: str | None = None,
    ) -> bool:
        """Upsert a flow's registry row; returns True when something changed."""
        if any("," in layer for layer in layers):
            raise ValueError(f"flow {name!r}: layer names cannot contain commas")
        values = {
            "connection": connection,
            "spec_hash": spec_hash,
            "schedule": schedule,
            "layers": ",".join(layers),
            "owner": owner,
        }
        return self._register(flows_registry, name, values)

    def connections(self) -> list[ConnectionRecord]:
        """Registered connections by name."""
        with self._transaction() as conn:
            rows = conn.execute(select(connections_registry).order_by(connections_registry.c.name))
            return [ConnectionRecord(**row._asdict()) for row in rows]

    def flows(self) -> list[FlowRecord]:
        """Registered flows by name."""
        with self._transaction() as conn:
            rows = conn.execute(select(flows_registry).order_by(flows_registry.c.name))
            return [_flow_record(row) for row in rows]

    def _register(self, table: Table, name: str, values: dict[str, Any]) -> bool:
        """Write only on change, so `updated_at` means 'last changed', not 'last seen'."""
        with self._transaction() as conn:
            row = conn.execute(select(table).where(table.c.name == name)).first()
            if row is not None and all(getattr(row, k) == v for k, v in values.items()):
                return False
        self._upsert(table, {"name": name}, {**values, "updated_at": self._now()})
        return True


def _flow_record(row: Any) -> FlowRecord:
    fields = row._asdict()
    fields["layers"] = tuple(x for x in fields["layers"].split(",") if x)
    return FlowRecord(**fields)
