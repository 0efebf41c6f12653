"""The pandas baseline: `pandas.read_sql` in chunks over a streaming (server-side) cursor, each chunk
appended to one Parquet file with pyarrow. What a hand-rolled Python ingest job does.

    python bench/pandas_baseline.py --table orders_1000000 --out /tmp/x.parquet [--chunk-rows 100000]

Prints one JSON line: rows written.
"""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    args = parser.parse_args()
    url = URL.create(
        "mysql+pymysql",
        username=os.environ.get("BENCH_USER", "pipezone"),
        password=os.environ["MYSQL_PWD"],
        host=os.environ.get("BENCH_HOST", "127.0.0.1"),
        port=int(os.environ.get("BENCH_PORT", "3307")),
        database=os.environ.get("BENCH_DATABASE", "pz_bench"),
    )
    engine = create_engine(url, execution_options={"stream_results": True})  # pymysql SSCursor: no buffering
    rows = 0
    writer = None
    with engine.connect() as conn:
        for chunk in pd.read_sql(text(f"SELECT * FROM {args.table}"), conn, chunksize=args.chunk_rows):
            table = pa.Table.from_pandas(chunk, preserve_index=False, schema=writer.schema if writer else None)
            writer = writer or pq.ParquetWriter(args.out, table.schema)
            writer.write_table(table)
            rows += len(chunk)
    if writer:
        writer.close()
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
