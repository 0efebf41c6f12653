"""A Delta table's transaction log read natively (delta-rs): existence and commit history.

Every step asks the log a few questions before it touches data (which batches exist, which did this
layer consume, was this run id already committed). Through Spark each question is a snapshot load, a
few seconds apiece in a fresh spark-submit JVM; here it is milliseconds. When delta-rs cannot answer
(a table feature it does not know, a store it cannot reach) the caller asks Spark instead, so nothing
depends on delta-rs keeping up with Delta's protocol.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipezone.core.spark.session import S3Settings

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import SparkSession

# object_store's defaults retry for minutes; a stopped MinIO must fail a step as fast as s3a does.
_S3_CLIENT = {"connect_timeout": "5s", "timeout": "60s", "max_retries": "2", "retry_timeout": "15s"}


# Delta's primitive type names where Spark's simpleString differs (the rest are spelled alike).
_SPARK_NAMES = {"long": "bigint", "integer": "int", "short": "smallint", "byte": "tinyint"}


class LogUnavailable(Exception):
    """delta-rs could not read this table's log: use Spark."""


def table_uri(path: str) -> str:
    """delta-rs names S3 tables s3://, Spark s3a://; local tables are file:// URIs for both."""
    return "s3://" + path.removeprefix("s3a://") if path.startswith("s3a://") else path


def storage_options(s3: S3Settings | None) -> dict[str, str]:
    """delta-rs options for an S3 lake; conditional puts make its commits atomic on MinIO and S3."""
    if s3 is None:
        return {}
    return {
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": s3.region,
        "AWS_ALLOW_HTTP": "false" if s3.ssl else "true",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false" if s3.path_style else "true",
        "AWS_CONDITIONAL_PUT": "etag",
        **_S3_CLIENT,
    }


def _session_options(spark: SparkSession, path: str) -> dict[str, str]:
    """The S3 endpoint and keys the Spark session itself reads `path` with (its Hadoop s3a settings)."""
    if not path.startswith("s3a://"):
        return {}
    if is_connect(spark):  # no JVM here: the server's `spark.hadoop.*` settings, as its session reports them

        def get(key: str) -> str | None:
            return spark.conf.get(f"spark.hadoop.{key}", None)
    else:
        get = spark.sparkContext._jsc.hadoopConfiguration().get  # noqa: SLF001 - the effective s3a settings
    endpoint = get("fs.s3a.endpoint") or ""
    s3 = S3Settings(
        endpoint=endpoint,
        access_key=get("fs.s3a.access.key") or "",
        secret_key=get("fs.s3a.secret.key") or "",
        region=get("fs.s3a.endpoint.region") or "us-east-1",
        path_style=(get("fs.s3a.path.style.access") or "true") == "true",
        ssl=endpoint.startswith("https"),
    )
    return storage_options(s3)


def is_connect(spark: SparkSession) -> bool:
    """Whether `spark` is a Spark Connect client session (no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def exists(spark: SparkSession, path: str) -> bool:
    from deltalake import DeltaTable

    try:
        return DeltaTable.is_deltatable(table_uri(path), storage_options=_session_options(spark, path))
    except Exception as err:  # noqa: BLE001 - any delta-rs failure means "ask Spark"
        raise LogUnavailable(str(err)) from err


def history(spark: SparkSession, path: str, limit: int | None) -> list[dict[str, Any]]:
    """Commits newest first ([] for no table), as Spark's history names them (`version`, `timestamp` aware UTC,
    `operationMetrics`, `userMetadata`)."""
    return history_with(path, limit, _session_options(spark, path))


def history_with(path: str, limit: int | None, options: dict[str, str]) -> list[dict[str, Any]]:
    """`history` with the store's options given (`storage_options`): no Spark session needed."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_uri(path), storage_options=options)
        commits = table.history(limit)
    except TableNotFoundError:
        return []  # no table: no commits (one load of the log answers both questions)
    except Exception as err:  # noqa: BLE001 - any delta-rs failure means "ask Spark"
        raise LogUnavailable(str(err)) from err
    return [
        {**commit, "timestamp": datetime.fromtimestamp(commit["timestamp"] / 1000, UTC)}
        for commit in commits
        if "version" in commit and "timestamp" in commit
    ]


# A MERGE whose metrics show these all 0 changed no row: an empty batch's commit, kept so the log records
# which batch the table consumed (exactly-once), not a new content.
MERGE_CHANGES = (
    "numTargetFilesAdded",
    "numTargetFilesRemoved",
    "numTargetDeletionVectorsAdded",
    "numTargetDeletionVectorsRemoved",
    "numTargetDeletionVectorsUpdated",
)


def changes_rows(commit: dict[str, Any]) -> bool:
    """Whether a commit may have changed the table's rows (anything but a MERGE that provably wrote nothing)."""
    metrics = commit.get("operationMetrics") or {}
    if commit.get("operation") != "MERGE" or not all(key in metrics for key in MERGE_CHANGES):
        return True
    return any(str(metrics[key]) != "0" for key in MERGE_CHANGES)


def content_version(history: list[dict[str, Any]]) -> int | None:
    """The version of the newest commit in `history` (newest first) that may have changed the rows: what a
    reader of the table's content (the quality step) judged. Past the history given, the oldest version in
    it stands in (newer than the truth at worst: the content then counts as changed)."""
    for commit in history:
        if changes_rows(commit):
            return int(commit["version"])
    return int(history[-1]["version"]) if history else None


def file_count(spark: SparkSession, path: str, version: int) -> int:
    """How many data files the table had at `version` (its snapshot's add actions)."""
    from deltalake import DeltaTable

    try:
        table = DeltaTable(table_uri(path), version=version, storage_options=_session_options(spark, path))
        return len(table.file_uris())
    except Exception as err:  # noqa: BLE001 - any delta-rs failure means "ask Spark"
        raise LogUnavailable(str(err)) from err


def add_actions(spark: SparkSession, path: str) -> list[dict[str, Any]]:
    """The current snapshot's data files: `path`, `num_records` and per column `min`, `max` and
    `null_count` (dicts by column name; a column without statistics is absent), [] for no table."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_uri(path), storage_options=_session_options(spark, path))
        actions = pa.table(table.get_add_actions(flatten=False))
    except TableNotFoundError:
        return []
    except Exception as err:  # noqa: BLE001 - any delta-rs failure means "no answer from the log"
        raise LogUnavailable(str(err)) from err
    wanted = [c for c in ("path", "num_records", "min", "max", "null_count") if c in actions.column_names]
    return actions.select(wanted).to_pylist()


def spark_fields(table: DeltaTable) -> list[tuple[str, str]] | None:
    """A delta-rs table's columns with their Spark type names (what a Spark schema's simpleString says), or
    None when one is nested (an array, a map, a struct: not compared here)."""
    named = []
    for field in table.schema().fields:
        kind = getattr(field.type, "type", None)  # a primitive's name; nested types have none
        if not isinstance(kind, str):
            return None
        named.append((field.name, _SPARK_NAMES.get(kind, kind)))
    return named
