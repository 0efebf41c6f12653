"""Fixtures of the step tests that several modules share."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(params=["mariadb", "postgres"])
def cdc_source(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str, Any]]:
    """A scratch database on the server, and a connection to it."""
    server = request.getfixturevalue(request.param)
    database = f"pz_cdc_{uuid.uuid4().hex[:10]}"
    server.create_database(database)
    conn = server.connect(database)
    try:
        yield server, database, conn
    finally:
        conn.close()
        server.drop_database(database)
