"""The ingest benchmark's PostgreSQL table: the MariaDB table's columns in PostgreSQL types, generated inside
the server (generate_series), kept between runs and rebuilt only when its row count is wrong."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from harness import DATABASE, BenchServer, start_service

TABLE_DDL = """
CREATE TABLE {table} (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  sku VARCHAR(32) NOT NULL,
  quantity SMALLINT NOT NULL,
  unit_price NUMERIC(10,2) NOT NULL,
  discount DOUBLE PRECISION NULL,
  status VARCHAR(16) NOT NULL,
  note VARCHAR(200) NULL,
  is_gift SMALLINT NOT NULL,
  order_date DATE NOT NULL,
  created_at TIMESTAMP(6) NOT NULL,
  updated_at TIMESTAMP(6) NOT NULL
)"""

TABLE_ROWS = """
INSERT INTO {table}
SELECT s, s % 50000, 'SKU-' || LPAD((s % 9973)::text, 6, '0'), 1 + s % 9, (s % 100000) / 100.0,
       CASE WHEN s % 7 = 0 THEN NULL ELSE (s % 30) / 100.0 END,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + s % 4],
       CASE WHEN s % 3 = 0 THEN NULL ELSE 'note for order ' || s || ' lorem ipsum dolor sit amet' END, s % 2,
       DATE '2024-01-01' + (s % 700)::int, TIMESTAMP '2024-01-01 00:00:00' + s * INTERVAL '1 second',
       TIMESTAMP '2024-06-01 00:00:00' + s * INTERVAL '1 second'
FROM generate_series(1, {rows}) AS s"""


def start_postgres() -> None:
    start_service("postgres")


@dataclass(frozen=True)
class Postgres(BenchServer):
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("PIPEZONE_POSTGRES_PORT") or 5433)
    user: str = "pipezone"
    password: str = field(default=os.environ.get("PIPEZONE_POSTGRES_PASSWORD") or "pipezone-dev", repr=False)

    def connect(self, database: str = DATABASE) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database, autocommit=True
        )

    def execute(self, *statements: str, database: str = DATABASE) -> list[tuple[Any, ...]]:
        with self.connect(database) as conn:
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                cursor = conn.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows

    def ensure_database(self) -> None:
        if not self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database="pipezone"):
            self.execute(f"CREATE DATABASE {DATABASE}", database="pipezone")

    def has_table(self, table: str) -> bool:
        return bool(self.execute(f"SELECT to_regclass('{table}') IS NOT NULL")[0][0])

    def generate(self, table: str, rows: int) -> list[str]:
        return [
            f"DROP TABLE IF EXISTS {table}",
            TABLE_DDL.format(table=table),
            TABLE_ROWS.format(table=table, rows=rows),
            f"CREATE INDEX {table}_updated_at ON {table} (updated_at)",
            f"VACUUM ANALYZE {table}",
        ]

    def table_mb(self, table: str) -> float:
        """The heap's size (pg_relation_size), PostgreSQL's counterpart of InnoDB's data_length."""
        return float(self.execute(f"SELECT pg_relation_size('{table}') / 1e6")[0][0])

    def version(self) -> str:
        return self.execute("SHOW server_version")[0][0]
