"""Validate a Spark DataFrame against expectations with Great Expectations, and read back what it found.

One ephemeral GX context per Validator (nothing written to disk but the Data Docs site it is given),
GX's Spark datasource with `persist=False` (GX would otherwise cache the frame and never release it:
the caller decides what is cached), one suite per validated table. Results are read in two steps to keep
the passes few: the whole suite with `BASIC` (counts only; GX batches the aggregates of all expectations),
then, for the expectations that failed, a sample of the unexpected rows' primary keys (`SUMMARY` with
`unexpected_index_column_names`: a filtered `limit` per failed expectation, nothing when all pass).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipezone.core.quality.expectations import Expectation
from pipezone.core.state.quality_results import UnexpectedRows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KEY_SAMPLE = 10  # unexpected rows' keys kept per failed expectation
SITE = "pipezone"
NAME = "pipezone_check"  # meta key: the check's name in PipeZone's results
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What GX found for one expectation."""

    expectation: Expectation
    success: bool
    observed: Any
    expected: Any
    unexpected: UnexpectedRows = field(default_factory=UnexpectedRows)
    rows: int | None = None  # the rows judged (GX's element count; a row_count check's observed value)

    @property
    def name(self) -> str:
        return self.expectation.name


def import_ahead() -> None:
    """Start importing Great Expectations on a background thread, once per process. A run that will
    validate later (`pipezone run --in-process` with a quality step ahead) overlaps the import's 3.5 s of
    CPU with the steps before it, which mostly wait on Spark; the Validator's own import then finds it
    done, or waits for it (Python's import lock)."""
    global _ahead
    if _ahead is None and "great_expectations" not in sys.modules:
        _ahead = threading.Thread(target=_import_gx, name="pipezone-gx-import", daemon=True)
        _ahead.start()


def import_done() -> None:
    """Wait for `import_ahead`'s import, so no import is cut off halfway when the process exits."""
    if _ahead is not None:
        _ahead.join()


def _import_gx() -> None:
    try:
        import great_expectations  # noqa: F401
    except Exception:  # noqa: BLE001 - the Validator imports it again, on its own thread, and fails there
        log.debug("importing Great Expectations ahead failed", exc_info=True)


_ahead: threading.Thread | None = None


class Validator:
    """Validations of one step, and the Data Docs site they are rendered to (a local folder)."""

    def __init__(self, docs_dir: Path | None = None) -> None:
        for name in ("great_expectations", "great_expectations._docs_decorators"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # imported here, not at the top: a step that validates nothing never pays GX's 3.5 s import
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars in task logs
        self.source = self.context.data_sources.add_spark(name="lake", persist=False)
        self.docs_dir = docs_dir
        self.validated = 0
        if docs_dir is not None:
            site = {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            }
            self.context.add_data_docs_site(site_name=SITE, site_config=site)

    def validate(
        self, df: DataFrame, table: str, expectations: list[Expectation], keys: list[str], run_name: str
    ) -> list[Outcome]:
        """Validate `df` (the table `table`, whose primary key is `keys`) against `expectations`."""
        judged = [e for e in expectations if e.gx is not None]
        for column, sql in (e.helper for e in judged if e.helper):
            df = df.selectExpr("*", f"{sql} AS `{column}`")
        by_name: dict[str, Any] = {}
        samples: dict[str, list[dict[str, Any]]] = {}
        if judged:
            self.validated += 1
            name = table if self.validated == 1 else f"{table} ({self.validated})"  # unique in the context
            asset = self.source.add_dataframe_asset(name=name)
            batch = asset.add_batch_definition_whole_dataframe("whole table")
            suite = self.context.suites.add(self.gx.ExpectationSuite(name=name))
            for expectation in judged:  # results name their expectation by its meta
                expectation.gx.meta = {**(expectation.gx.meta or {}), NAME: expectation.key}
                suite.add_expectation(expectation.gx)
            definition = self.context.validation_definitions.add(
                self.gx.ValidationDefinition(name=f"{name} {run_name}", data=batch, suite=suite)
            )
            result = definition.run(
                batch_parameters={"dataframe": df},
                result_format="BASIC",
                run_id=self.gx.RunIdentifier(run_name=run_name),
            )
            by_name = _by_key(judged, result.results)
            samples = _key_samples(batch, df, judged, by_name, keys)
        outcomes = []
        for expectation in expectations:
            if expectation.gx is None:
                outcomes.append(Outcome(expectation, False, expectation.problem, _expected(expectation, None)))
                continue
            outcomes.append(_outcome(expectation, by_name[expectation.key], samples.get(expectation.key)))
        return outcomes

    def build_docs(self) -> Path | None:
        """Render the site (index and one page per validation of this Validator); its index page."""
        if self.docs_dir is None:
            return None
        self.context.build_data_docs(site_names=[SITE])
        return self.docs_dir / "index.html"


def _signature(config: Any) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return json.dumps([config.type, kwargs], sort_keys=True, default=str)


def _by_key(judged: list[Expectation], results: list[Any]) -> dict[str, Any]:
    """Each expectation's result. A suite keeps one of two equal expectations (two checks judging the
    same column the same way): the other gets the result of its equal."""
    by_meta = {r.expectation_config.meta.get(NAME): r for r in results}
    by_signature = {_signature(r.expectation_config): r for r in results}
    return {e.key: by_meta.get(e.key) or by_signature[_signature(e.gx.configuration)] for e in judged}


def _key_samples(
    batch: Any, df: DataFrame, judged: list[Expectation], by_name: dict[str, Any], keys: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Keys of a few unexpected rows, for each failed expectation that counts unexpected rows."""
    if not keys:
        return {}
    samples = {}
    result_format = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": keys,
        "partial_unexpected_count": KEY_SAMPLE,
    }
    loaded = None
    for expectation in judged:
        found = by_name[expectation.key]
        if found.success or "unexpected_count" not in (found.result or {}):
            continue
        loaded = loaded or batch.get_batch(batch_parameters={"dataframe": df})
        sampled = loaded.validate(expectation.gx, result_format=result_format).result
        rows = sampled.get("partial_unexpected_index_list") or []
        samples[expectation.key] = [{k: row.get(k) for k in keys} for row in rows[:KEY_SAMPLE]]
    return samples


def _outcome(expectation: Expectation, found: Any, keys: list[dict[str, Any]] | None) -> Outcome:
    result = found.result or {}
    error = (found.exception_info or {}).get("exception_message") if not found.success else None
    if error and (found.exception_info or {}).get("raised_exception"):
        return Outcome(expectation, False, f"error: {error.splitlines()[0][:300]}", _expected(expectation, found))
    count = result.get("unexpected_count")
    percent = result.get("unexpected_percent_total", result.get("unexpected_percent"))
    if count is not None:
        observed: Any = f"{count} of {result.get('element_count')} rows unexpected"
    elif expectation.check.check == "sql":
        observed = f"{result.get('observed_value')} rows returned by the query"
    else:
        observed = expectation.describe(result.get("observed_value"))
    unexpected = UnexpectedRows(
        count=count if count is not None else _sql_rows(expectation, result),
        percent=None if percent is None else round(float(percent), 6),
        keys=keys,
    )
    rows = result.get("element_count")
    if rows is None and expectation.check.check == "row_count":
        rows = result.get("observed_value")
    expected = _expected(expectation, found)
    return Outcome(
        expectation, bool(found.success), observed, expected, unexpected, rows if isinstance(rows, int) else None
    )


def _sql_rows(expectation: Expectation, result: dict[str, Any]) -> int | None:
    """A `sql` check's unexpected rows are the rows its query returned (GX's observed value)."""
    observed = result.get("observed_value")
    return observed if expectation.check.check == "sql" and isinstance(observed, int) else None


def _expected(expectation: Expectation, found: Any) -> Any:
    """What the expectation expects, as the results table shows it (its arguments but the column)."""
    if expectation.helper is not None:
        return "true for every row"
    if expectation.check.check == "sql":
        return "no rows"
    config = found.expectation_config.kwargs if found is not None else {}
    hidden = ("column", "column_list", "batch_id")
    shown = {k: v for k, v in config.items() if k not in hidden and v is not None}
    return shown or "every row"
