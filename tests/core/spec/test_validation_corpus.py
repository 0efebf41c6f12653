"""The bad-metadata corpus: every file yields exactly the expected `FILE:LINE:COL: key.path: message` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipezone.core.cli.main import main

REPO = Path(__file__).resolve().parents[3]
REPO_METADATA = REPO / "metadata"
METADATA = "tests/fixtures/metadata"

EXPECTED = [
    "tests/fixtures/bad/connections/bad_port.yaml:4:7: port: Input should be less than or equal to 65535",
    "tests/fixtures/bad/connections/literal_password.yaml:6:11: password: secrets must be references: ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never literal values",
    "tests/fixtures/bad/connections/minio_literal.yaml:5:13: secret_key: secrets must be references: ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never literal values",
    "tests/fixtures/bad/connections/missing_host.yaml:1:1: host: missing required key 'host'",
    "tests/fixtures/bad/connections/rest_api_key_without_key.yaml:4:1: auth.key: auth type api_key needs 'key'",
    "tests/fixtures/bad/connections/rest_literal_header.yaml:6:14: headers.X-Api-Key: 'X-Api-Key' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value",
    "tests/fixtures/bad/connections/rest_literal_token.yaml:6:10: auth.token: secrets must be references: ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never literal values",
    "tests/fixtures/bad/connections/secret_option.yaml:6:16: options.sslpassword: option 'sslpassword' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value",
    "tests/fixtures/bad/connections/unknown_type.yaml:2:7: type: unknown connection type 'cassandra': expected one of local, mariadb, minio, mongodb, mysql, oracle, postgres, rest, s3, sqlite, sqlserver",
    "tests/fixtures/bad/flows/bad_duration.yaml:6:10: timeout: invalid duration '2 hours': use e.g. 30s, 5m, 2h, 1d or seconds",
    "tests/fixtures/bad/flows/cdc_on_sqlite.yaml:7:5: source.cdc: cdc reads the replication log of mysql, mariadb, postgres databases; connection 'shop' has type 'sqlite'",
    "tests/fixtures/bad/flows/cdc_with_incremental.yaml:7:5: source.incremental: cdc and incremental can't be combined: the log already has every change and every delete",
    "tests/fixtures/bad/flows/cdc_without_key.yaml:2:1: source.primary_key: cdc needs source.primary_key (changes apply by key)",
    "tests/fixtures/bad/flows/duplicate_flow_name.yaml:1:7: name: duplicate flow name 'orders' (also defined at tests/fixtures/metadata/flows/orders.yaml:1)",
    "tests/fixtures/bad/flows/duplicate_key.yaml:5:3: source.table: duplicate key 'table' (first defined on line 4)",
    "tests/fixtures/bad/flows/export_duplicate_name.yaml:9:5: exports[1].name: exports[0] and exports[1] are both named 'warehouse_orders': give one a distinct name",
    "tests/fixtures/bad/flows/export_missing_gold.yaml:7:11: exports[0].from: no gold table 'revenu' in this flow (its gold tables: revenue)",
    "tests/fixtures/bad/flows/export_to_lake.yaml:7:17: exports[0].connection: connection 'lake' has type 'local'; exports go to postgres, mysql, mariadb or sqlite connections",
    "tests/fixtures/bad/flows/export_unknown_connection.yaml:7:17: exports[0].connection: unknown connection 'warehous' (did you mean 'warehouse'?)",
    "tests/fixtures/bad/flows/export_upsert_without_key.yaml:10:11: exports[0].mode: mode upsert matches rows by key: set source.primary_key",
    "tests/fixtures/bad/flows/invalid_cron.yaml:6:9: schedule.cron: invalid cron '0 25 * * *': expected 5 fields like '0 */6 * * *'",
    "tests/fixtures/bad/flows/invalid_name.yaml:1:7: name: invalid name 'Bad-Name': use lowercase letters, digits and _, starting with a letter (max 63)",
    "tests/fixtures/bad/flows/lake_as_source.yaml:3:15: source.connection: connection 'lake' has type 'local', which is not a source type",
    "tests/fixtures/bad/flows/malformed_yaml.yaml:4:9: yaml: malformed YAML: mapping values are not allowed in this context",
    "tests/fixtures/bad/flows/merge_without_key.yaml:2:1: source.primary_key: write_mode merge/scd2 needs source.primary_key (or use append/overwrite)",
    "tests/fixtures/bad/flows/missing_required.yaml:2:1: source.connection: missing required key 'connection'",
    "tests/fixtures/bad/flows/mongo_filter_runs_code.yaml:8:7: source.documents.filter: filter operator '$where' runs JavaScript on the server: use query operators",
    "tests/fixtures/bad/flows/mongo_projection_drops_key.yaml:7:17: source.documents.projection: the projection must keep '_id' (key or cursor)",
    "tests/fixtures/bad/flows/mongo_with_query.yaml:4:10: source.query: a mongodb source names its collection in 'table' (no query or endpoint)",
    "tests/fixtures/bad/flows/not_a_mapping.yaml:1:1: (document): expected a YAML mapping at the top level",
    "tests/fixtures/bad/flows/quality_action_on_bronze.yaml:9:12: quality[0].layer: a check with an action judges the rows silver writes: its layer is silver",
    "tests/fixtures/bad/flows/quality_action_on_table_check.yaml:9:13: quality[0].action: unique judges the whole table, not single rows: it takes severity (error or warn), not action (action is for not_null, accepted_values and expression)",
    "tests/fixtures/bad/flows/quality_action_with_severity.yaml:11:15: quality[0].severity: 'severity' is for table-level checks; a check with an action stops the run with action: fail",
    "tests/fixtures/bad/flows/quality_action_without_source.yaml:9:13: quality[0].action: an action acts on the rows silver writes: this flow has no source, so no silver",
    "tests/fixtures/bad/flows/quality_sql_without_table.yaml:8:12: quality[0].query: the query names the checked table as {table}",
    "tests/fixtures/bad/flows/quality_sql_write.yaml:8:12: quality[0].query: SQL must be a read-only SELECT, but it contains DELETE",
    "tests/fixtures/bad/flows/quality_unknown_action.yaml:9:13: quality[0].action: Input should be 'warn', 'drop', 'quarantine' or 'fail'",
    "tests/fixtures/bad/flows/rest_missing_records.yaml:5:3: source.endpoint.records: missing required key 'records'",
    "tests/fixtures/bad/flows/rest_unknown_pagination.yaml:9:14: source.endpoint.pagination.style: unknown style 'pages': expected one of 'none', 'page_number', 'offset', 'cursor', 'next_url', 'link_header'",
    "tests/fixtures/bad/flows/rest_with_table.yaml:4:10: source.table: a rest connection is read through an endpoint: set source.endpoint, not table/query",
    "tests/fixtures/bad/flows/tab_indent.yaml:3:1: yaml: tab character: YAML indentation must use spaces",
    "tests/fixtures/bad/flows/table_and_query.yaml:3:3: source: set exactly one of 'table', 'query' or 'endpoint'",
    "tests/fixtures/bad/flows/unknown_check.yaml:6:12: quality[0].check: unknown check 'not_empty': expected one of 'not_null', 'unique', 'accepted_values', 'row_count', 'expression', 'freshness', 'sql'",
    "tests/fixtures/bad/flows/unknown_connection.yaml:3:15: source.connection: unknown connection 'shopp' (did you mean 'shop'?)",
    "tests/fixtures/bad/flows/unknown_key.yaml:4:3: source.tabel: unknown key 'tabel' (did you mean 'table'?)",
    "tests/fixtures/bad/flows/unknown_silver.yaml:5:12: layers.gold[0].sql: unknown table silver.ordrs: no flow named 'ordrs' writes a silver table",
    "tests/fixtures/bad/flows/unknown_transform.yaml:9:9: layers.silver.transforms[1].uppercase: unknown key 'uppercase'",
    "tests/fixtures/bad/flows/unsafe_identifier.yaml:4:10: source.table: unsafe SQL identifier 'orders; DROP TABLE users': use letters, digits and _, not starting with a digit (max 128)",
    "tests/fixtures/bad/flows/wrong_list_type.yaml:5:16: source.primary_key: Input should be a valid list",
    "tests/fixtures/bad/flows/wrong_type.yaml:5:10: retries: Input should be a valid integer, unable to parse string as an integer",
]


def _validate(capsys: pytest.CaptureFixture[str], *paths: str) -> tuple[int, list[str], str]:
    code = main(["--metadata", METADATA, "validate", *paths])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda line: Path(line.split(":")[0]).stem)
def test_bad_file_reports_exact_line(capsys: pytest.CaptureFixture[str], expected: str) -> None:
    code, out, err = _validate(capsys, expected.split(":")[0])
    assert code == 1
    assert out == [expected]
    assert "Traceback" not in err


def test_corpus_covers_every_bad_file() -> None:
    files = {str(p.relative_to(REPO)) for p in (REPO / "tests/fixtures/bad").rglob("*.yaml")}
    covered = {line.split(":")[0] for line in EXPECTED} | {
        "tests/fixtures/bad/flows/cycle_a.yaml",
        "tests/fixtures/bad/flows/cycle_b.yaml",
        "tests/fixtures/bad/profiles/bad_profile.yaml",
    }
    assert files == covered
    assert len(files) >= 15


PROFILE_EXPECTED = [
    "tests/fixtures/bad/profiles/bad_profile.yaml:2:7: lake: connection 'shop' has type 'sqlite', which cannot serve as the lake",
    "tests/fixtures/bad/profiles/bad_profile.yaml:3:14: state_store: connection 'lake' has type 'local', which cannot serve as the state store",
]


def test_profile_connections_must_fit_their_roles(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _validate(capsys, "tests/fixtures/bad/profiles/bad_profile.yaml")
    assert code == 1
    assert out == PROFILE_EXPECTED


def test_cycle_reported_in_every_file_of_the_cycle(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _validate(capsys, "tests/fixtures/bad/flows/cycle_a.yaml", "tests/fixtures/bad/flows/cycle_b.yaml")
    assert code == 1
    assert out == [
        "tests/fixtures/bad/flows/cycle_a.yaml:3:1: schedule: dependency cycle: cycle_a -> cycle_b -> cycle_a",
        "tests/fixtures/bad/flows/cycle_b.yaml:3:1: schedule: dependency cycle: cycle_a -> cycle_b -> cycle_a",
    ]


def test_all_problems_reported_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    folders = ("tests/fixtures/bad/connections", "tests/fixtures/bad/flows", "tests/fixtures/bad/profiles")
    code, out, err = _validate(capsys, *folders)
    assert code == 1
    assert sorted(out) == sorted(
        EXPECTED
        + PROFILE_EXPECTED
        + [
            "tests/fixtures/bad/flows/cycle_a.yaml:3:1: schedule: dependency cycle: cycle_a -> cycle_b -> cycle_a",
            "tests/fixtures/bad/flows/cycle_b.yaml:3:1: schedule: dependency cycle: cycle_a -> cycle_b -> cycle_a",
        ]
    )
    assert f"{len(out)} problem(s)" in err


def test_repo_metadata_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    counts = {kind: len(list((REPO_METADATA / kind).glob("*.yaml"))) for kind in ("flows", "connections", "profiles")}
    expected = f"ok: {counts['flows']} flows, {counts['connections']} connections, {counts['profiles']} profiles valid"
    assert counts["flows"] >= 5 and counts["profiles"] >= 3  # default, services, docker
    assert expected in capsys.readouterr().err
