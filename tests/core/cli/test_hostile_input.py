"""The hostile-input corpus (tests/fixtures/hostile): every file, placed beside the demo's valid metadata
together with a second, unrelated bad file, gives exactly its expected `FILE:LINE:COL: key.path: message`
lines and nothing else; `validate` exits 1 and reports the unrelated file too; `list` and `show` still work
for the valid flows; no output repeats a planted secret (every one contains PZPLANTED); no file takes
2 s. A DagBag over the whole corpus keeps every demo DAG, with one placeholder per bad file and no import
error (test_hostile_dagbag). Cases the corpus can't hold as committed files (a file name with a newline,
a project below a folder named `connections`) are built here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipezone.core.cli.main import main
from pipezone.core.cli.run import _flows_to_run
from pipezone.core.spec.secrets import SecretError, SecretRef, SecretResolver
from pipezone.core.spec.settings import load_settings
from pipezone.core.steps.runtime import RunError, load_runtime

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "hostile"
PLANTED = "PZPLANTED"
DEMO_FLOWS = [
    "retail_customers",
    "retail_daily_revenue",
    "retail_order_items",
    "retail_orders",
    "retail_products",
    "retail_reviews",
]
UNRELATED = "metadata/flows/zz_unrelated.yaml"
UNRELATED_TEXT = "name: zz_unrelated\nsource:\n  connection: retail_demo\n  table: orders\nretries: lots\n"
UNRELATED_LINE = f"{UNRELATED}:5:10: retries: Input should be a valid integer, unable to parse string as an integer"
LONG_NAME = "c3_" + "long_file_name_" * 16

# Each corpus file (relative to tests/fixtures/hostile, placed at the same path under metadata/) and the
# lines `pipezone validate` gives for it, without the `metadata/<file>:` prefix.
EXPECTED = {
    "connections/c10_file_absolute.yaml": [
        "5:11: password: ${file:/etc/passwd}: outside the project and the secret folders (/run/secrets; set PIPEZONE_SECRET_DIRS to add one)"
    ],
    "connections/c10_file_dev_zero.yaml": [
        "5:11: password: ${file:/dev/zero}: outside the project and the secret folders (/run/secrets; set PIPEZONE_SECRET_DIRS to add one)"
    ],
    "connections/c10_file_traversal.yaml": [
        "5:11: password: ${file:../../../../../../etc/shadow}: outside the project and the secret folders (/run/secrets; set PIPEZONE_SECRET_DIRS to add one)"
    ],
    "connections/c5_flow_in_connections.yaml": ["1:1: type: missing required key 'type'"],
    "connections/c6_endpoint_userinfo.yaml": [
        "3:11: endpoint: not an http(s) URL of a host (and no user:password@ in it)"
    ],
    "connections/c6_env_bad_name.yaml": [
        "5:11: password: an env reference names one variable: letters, digits and _, e.g. ${env:PIPEZONE_DB_PASSWORD}"
    ],
    "connections/c6_literal_secret_key.yaml": [
        "5:13: secret_key: secrets must be references: ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never literal values"
    ],
    "connections/c6_option_api_key.yaml": [
        "8:12: options.api_key: option 'api_key' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_option_apikey.yaml": [
        "8:11: options.apiKey: option 'apiKey' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_option_credential.yaml": [
        "8:15: options.credential: option 'credential' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_option_numeric_password.yaml": [
        "8:23: options.trustStorePassword: option 'trustStorePassword' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_option_passphrase.yaml": [
        "8:18: options.sslPassphrase: option 'sslPassphrase' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_option_private_key.yaml": [
        "8:16: options.private_key: option 'private_key' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_option_pwd.yaml": [
        "8:8: options.pwd: option 'pwd' looks like a secret: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_password_in_database.yaml": [
        "4:11: database: holds a literal 'password=' value: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_password_in_host.yaml": [
        "3:7: host: not a host name or IP address (credentials go in user and password, as references)"
    ],
    "connections/c6_private_key_in_description.yaml": [
        "7:14: description: holds what looks like a private key or an access token: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_query_param_option.yaml": [
        "8:25: options.connectionAttributes: holds a literal 'pwd=' value: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_secret_as_key.yaml": [
        "8:36: options.https://reader:***@db: an option name uses letters, digits, _, '.' and '-'"
    ],
    "connections/c6_token_in_description.yaml": [
        "7:14: description: holds what looks like a private key or an access token: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_unknown_scheme.yaml": [
        "5:11: password: unknown secret reference scheme: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}"
    ],
    "connections/c6_url_option.yaml": [
        "8:8: options.url: holds a password in a URL (user:password@): use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "connections/c6_user_vault_without_key.yaml": [
        "5:7: user: a user is a plain name (no ':', '@', '/' or spaces) or a secret reference"
    ],
    "connections/c6_user_with_password.yaml": [
        "5:7: user: a user is a plain name (no ':', '@', '/' or spaces) or a secret reference"
    ],
    "connections/c6_vault_without_key.yaml": [
        "5:11: password: a vault reference needs '#KEY' after the path, e.g. ${vault:secret/pipezone/db#password}"
    ],
    "flows/c1_accepted_value_inf.yaml": ["9:19: quality[0].values[1]: infinite and NaN numbers are not allowed"],
    "flows/c1_binary_tag.yaml": [
        "6:14: description: unsupported YAML tag '!!binary': PipeZone reads plain YAML (strings, numbers, booleans, null, dates, mappings and lists)"
    ],
    "flows/c1_bool_word.yaml": ["8:14: layers.raw.enabled: not a valid boolean: use true or false"],
    "flows/c1_cron_never_fires.yaml": ["6:11: schedule: cron '0 0 30 2 *' never fires"],
    "flows/c1_cron_too_long.yaml": ["6:11: schedule: String should have at most 120 characters"],
    "flows/c1_custom_tag.yaml": [
        "6:8: owner: unsupported YAML tag '!custom': PipeZone reads plain YAML (strings, numbers, booleans, null, dates, mappings and lists)"
    ],
    "flows/c1_custom_tag_mapping.yaml": [
        "2:9: source: unsupported YAML tag '!include': PipeZone reads plain YAML (strings, numbers, booleans, null, dates, mappings and lists)"
    ],
    "flows/c1_decimal_precision.yaml": [
        "9:30: layers.silver.transforms[0].cast.total_amount: decimal(p,s) needs 1 <= p <= 38 and s <= p (found 'decimal(50,2)')"
    ],
    "flows/c1_fetch_size_huge.yaml": ["7:17: source.read.fetch_size: Input should be less than or equal to 1000000"],
    "flows/c1_float_word.yaml": ["12:14: quality[0].values[0]: not a valid number"],
    "flows/c1_impossible_date.yaml": [
        "8:20: source.incremental.initial_value: not a valid date: day is out of range for month"
    ],
    "flows/c1_impossible_time.yaml": [
        "8:20: source.incremental.initial_value: not a valid date: hour must be in 0..23"
    ],
    "flows/c1_initial_value_bad_iso.yaml": [
        "8:20: source.incremental.initial_value: not a valid date/time: month must be in 1..12"
    ],
    "flows/c1_initial_value_huge_number.yaml": [
        "8:20: source.incremental.initial_value: initial_value is too long for a cursor value"
    ],
    "flows/c1_int_5000_digits.yaml": ["7:17: source.read.fetch_size: not a valid integer: too many digits"],
    "flows/c1_int_word.yaml": ["6:10: retries: not a valid integer"],
    "flows/c1_lookback_overflow.yaml": [
        "8:15: source.incremental.lookback: duration '999999999999w' is over the limit of 3650d"
    ],
    "flows/c1_merge_key.yaml": [
        "6:3: source: YAML merge keys ('<<') are not supported: write the keys out (anchors and aliases are fine)"
    ],
    "flows/c1_merge_key_list.yaml": [
        "5:3: source: YAML merge keys ('<<') are not supported: write the keys out (anchors and aliases are fine)"
    ],
    "flows/c1_name_is_a_date.yaml": ["1:7: name: Input should be a valid string"],
    "flows/c1_omap_tag.yaml": [
        "6:7: tags: unsupported YAML tag '!!omap': PipeZone reads plain YAML (strings, numbers, booleans, null, dates, mappings and lists)"
    ],
    "flows/c1_python_tag.yaml": [
        "6:14: description: unsupported YAML tag '!!python/object/apply:os.system': PipeZone reads plain YAML (strings, numbers, booleans, null, dates, mappings and lists)"
    ],
    "flows/c1_retries_infinite_float.yaml": ["6:10: retries: infinite and NaN numbers are not allowed"],
    "flows/c1_retry_delay_nan.yaml": ["6:14: retry_delay: infinite and NaN numbers are not allowed"],
    "flows/c1_row_count_overflow.yaml": [
        "8:10: quality[0].max: Input should be less than or equal to 9223372036854775807"
    ],
    "flows/c1_set_tag.yaml": [
        "6:7: tags: unsupported YAML tag '!!set': PipeZone reads plain YAML (strings, numbers, booleans, null, dates, mappings and lists)"
    ],
    "flows/c1_timeout_inf.yaml": ["6:10: timeout: infinite and NaN numbers are not allowed"],
    "flows/c1_timeout_overflow.yaml": ["6:10: timeout: duration '9999999999d' is over the limit of 7d"],
    "flows/c1_timeout_zero.yaml": ["6:10: timeout: duration must be at least 1s"],
    "flows/c1_timestamp_word.yaml": [
        "8:20: source.incremental.initial_value: not a valid date: expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"
    ],
    "flows/c2_alias_bomb.yaml": ["6:23: e[5]: more than 50,000 values (aliases expanded): refusing to read further"],
    "flows/c2_bidi_in_sql.yaml": ["5:12: layers.gold[0].sql: control character U+202E is not allowed in text"],
    "flows/c2_bidi_key.yaml": ["6:1: (document): control character U+202E is not allowed in text"],
    "flows/c2_big_file.yaml": ["1:1: (document): file is 300,108 bytes, over the limit of 262,144 for a metadata file"],
    "flows/c2_complex_key.yaml": ["6:3: yaml: a mapping key must be a plain value, not a collection"],
    "flows/c2_deep_10k.yaml": [
        "6:70: tags[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][…: nested more than 64 levels deep"
    ],
    "flows/c2_deep_200k.yaml": [
        "6:70: tags[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][…: nested more than 64 levels deep"
    ],
    "flows/c2_deep_block.yaml": [
        "70:129: layers.k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15.k16.k17.k18.k19.k20.k21.k22.k23.k24.k25.k26.k27.k28.k29.k3…: nested more than 64 levels deep"
    ],
    "flows/c2_deep_dashes.yaml": [
        "7:129: tags[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][…: nested more than 64 levels deep"
    ],
    "flows/c2_deep_sql.yaml": ["5:12: layers.gold[0].sql: SQL nests parentheses more than 100 levels deep"],
    "flows/c2_empty.yaml": ["1:1: (document): file is empty: expected a YAML mapping"],
    "flows/c2_escape_in_value.yaml": ["6:14: description: control character U+001B is not allowed in text"],
    "flows/c2_huge_sql.yaml": ["5:12: layers.gold[0].sql: String should have at most 32768 characters"],
    "flows/c2_key_too_long.yaml": [
        "6:2001: yaml: malformed YAML: could not find expected ':' (while scanning a simple key)"
    ],
    "flows/c2_latin1.yaml": ["6:12: (document): not UTF-8 text: save the file as UTF-8"],
    "flows/c2_newline_in_key.yaml": [
        "6:1: tags\\nmetadata/flows/retail_orders.yaml:1:1: name: fake: unknown key 'tags\\nmetadata/flows/retail_orders.yaml:1:1: name: fake'"
    ],
    "flows/c2_nul_byte.yaml": ["6:12: yaml: malformed YAML: control character U+0000 is not allowed"],
    "flows/c2_only_comments.yaml": ["1:1: (document): file is empty: expected a YAML mapping"],
    "flows/c2_recursive_alias.yaml": ["6:14: tags[1]: recursive alias '*t' (refers to itself)"],
    "flows/c2_recursive_mapping_alias.yaml": ["5:10: source.inner: recursive alias '*s' (refers to itself)"],
    "flows/c2_tab_indent.yaml": ["3:1: yaml: tab character: YAML indentation must use spaces"],
    "flows/c2_terminal_escape_key.yaml": ["6:1: (document): control character U+001B is not allowed in text"],
    "flows/c2_too_many_values.yaml": [
        "6:99980: tags[49986]: more than 50,000 values (aliases expanded): refusing to read further"
    ],
    "flows/c2_too_much_sql.yaml": [
        "1:1: (document): this flow holds 301 SQL statements and expressions (2,790 characters); the limit per flow is 300 and 65,536 characters"
    ],
    "flows/c2_top_level_list.yaml": ["1:1: (document): expected a YAML mapping at the top level"],
    "flows/c2_top_level_scalar.yaml": ["1:1: (document): expected a YAML mapping at the top level"],
    "flows/c2_two_documents.yaml": ["7:1: (document): expected one YAML document, found several"],
    "flows/c2_unclosed_quote.yaml": [
        "7:1: yaml: malformed YAML: found unexpected end of stream (while scanning a quoted scalar)"
    ],
    "flows/c2_unknown_alias.yaml": ["6:7: tags: unknown alias '*nope'"],
    "flows/c2_utf16.yaml": ["1:1: (document): not UTF-8 text: save the file as UTF-8"],
    "flows/c3 weird näme (copy).yaml": [
        "6:10: retries: Input should be a valid integer, unable to parse string as an integer"
    ],
    "flows/c3_identifier_newline.yaml": [
        "4:10: source.table: unsafe SQL identifier 'orders\\n': use letters, digits and _, not starting with a digit (max 128)"
    ],
    "flows/c3_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_long_file_name_.yaml": [
        "6:1: tabel: unknown key 'tabel' (did you mean 'table'?)"
    ],
    "flows/c3_name_64_chars.yaml": [
        "1:7: name: invalid name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…': use lowercase letters, digits and _, starting with a letter (max 63)"
    ],
    "flows/c3_owner_newline.yaml": ["6:8: owner: an owner is one line of 1-100 characters"],
    "flows/c3_owner_too_long.yaml": ["6:8: owner: an owner is one line of 1-100 characters"],
    "flows/c3_tag_too_long.yaml": ["6:8: tags[0]: tag has 150 characters, over Airflow's limit of 100"],
    "flows/c3_too_many_tags.yaml": ["6:7: tags: List should have at most 50 items after validation, not 60"],
    "flows/c3_trailing_newline_name.yaml": [
        "1:7: name: invalid name 'c3_trailing_newline_name\\n': use lowercase letters, digits and _, starting with a letter (max 63)"
    ],
    "flows/c3_unicode_name.yaml": [
        "1:7: name: invalid name 'ordérs': use lowercase letters, digits and _, starting with a letter (max 63)"
    ],
    "flows/c5_connection_in_flows.yaml": [
        "2:1: type: unknown key 'type'",
        "3:1: host: unknown key 'host'",
        "4:1: database: unknown key 'database'",
    ],
    "flows/c6_token_in_query_comment.yaml": [
        "5:10: source.query: holds what looks like a private key or an access token: flows hold no credentials"
    ],
    "flows/c6_url_password_in_description.yaml": [
        "6:14: description: holds a password in a URL (user:password@): flows hold no credentials"
    ],
    "flows/c7_attach_database.yaml": ["5:10: source.query: SQL must be a single SELECT (or WITH ... SELECT) statement"],
    "flows/c7_break_out_of_subquery.yaml": [
        "5:10: source.query: cannot parse this SQL (sqlite dialect): Invalid expression / Unexpected token near ')'"
    ],
    "flows/c7_cache_table.yaml": ["5:12: layers.gold[0].sql: SQL must be a read-only SELECT, but it contains CACHE"],
    "flows/c7_derive_two_columns.yaml": [
        "9:21: layers.silver.transforms[0].derive.x: a SQL expression must be one expression (no FROM, WHERE, commas or clauses)"
    ],
    "flows/c7_drop_alone.yaml": ["5:12: layers.gold[0].sql: SQL must be a read-only SELECT, but it contains DROP"],
    "flows/c7_drop_behind_comment.yaml": [
        "5:12: layers.gold[0].sql: SQL must be one SELECT statement, found 2 statements"
    ],
    "flows/c7_expression_breakout.yaml": [
        "8:17: quality[0].expression: cannot parse this expression (Spark SQL): Invalid expression / Unexpected token near ')'"
    ],
    "flows/c7_filter_with_from.yaml": [
        "9:17: layers.silver.transforms[0].filter: a SQL expression must be one expression (no FROM, WHERE, commas or clauses)"
    ],
    "flows/c7_for_update.yaml": [
        "5:10: source.query: SQL must be a read-only SELECT, but it contains a row lock (FOR UPDATE / FOR SHARE)"
    ],
    "flows/c7_gold_calls_java.yaml": [
        "5:12: layers.gold[0].sql: SQL must not call reflect(): it reads files, runs code or stalls the server"
    ],
    "flows/c7_gold_dynamic_identifier.yaml": [
        "5:12: layers.gold[0].sql: gold SQL can't read from identifier(): read silver.<flow> and gold.<table>"
    ],
    "flows/c7_gold_reads_a_catalog_table.yaml": [
        "5:12: layers.gold[0].sql: gold SQL reads 'spark_catalog.default.secrets': read silver.<flow> and gold.<table> (and its own WITH names) only"
    ],
    "flows/c7_gold_reads_a_file.yaml": [
        "5:12: layers.gold[0].sql: gold SQL reads 'text./etc/shadow': read silver.<flow> and gold.<table> (and its own WITH names) only"
    ],
    "flows/c7_modifying_cte.yaml": ["5:10: source.query: SQL must be a read-only SELECT, but it contains DELETE"],
    "flows/c7_query_reads_server_file.yaml": [
        "5:10: source.query: SQL must not call load_file(): it reads files, runs code or stalls the server"
    ],
    "flows/c7_second_statement_after_line_comment.yaml": [
        "5:12: layers.gold[0].sql: SQL must be one SELECT statement, found 2 statements"
    ],
    "flows/c7_select_into.yaml": [
        "5:10: source.query: SQL must be a read-only SELECT, but it contains SELECT ... INTO"
    ],
    "flows/c7_with_delete.yaml": ["5:12: layers.gold[0].sql: SQL must be a read-only SELECT, but it contains DELETE"],
    "flows/c7_with_insert.yaml": ["5:12: layers.gold[0].sql: SQL must be a read-only SELECT, but it contains INSERT"],
    "flows/c7_with_merge.yaml": ["5:12: layers.gold[0].sql: SQL must be a read-only SELECT, but it contains MERGE"],
    "flows/c7_with_update.yaml": ["5:10: source.query: SQL must be a read-only SELECT, but it contains UPDATE"],
    "flows/c8_after_itself.yaml": [
        "7:26: schedule.after[1]: a flow can't run after itself ('c8_after_itself' would wait on its own output)"
    ],
    "flows/c8_after_twice.yaml": ["7:10: schedule.after: 'retail_orders' is listed twice"],
    "flows/c8_gold_check_unknown_table.yaml": [
        "9:12: quality[0].table: no gold table 'c8_other' in this flow (its gold tables: c8_t)"
    ],
    "flows/c8_gold_check_without_table.yaml": ["7:5: quality[0].table: a check on layer gold names its gold table"],
    "flows/c8_gold_reads_itself.yaml": ["5:12: layers.gold[0].sql: gold table 'c8_gold_reads_itself_t' reads itself"],
    "flows/c8_primary_key_twice.yaml": ["5:16: source.primary_key: 'order_id' is listed twice"],
    "flows/c8_row_count_min_over_max.yaml": ["8:10: quality[0].min: min 10 is greater than max 5"],
    "profiles/c6_console_javascript_url.yaml": [
        "4:19: lake_console_url: not an http(s) URL of a host (and no user:password@ in it)"
    ],
    "profiles/c6_driver_memory_huge.yaml": ["5:18: spark.driver_memory: a memory size such as 2g or 512m"],
    "profiles/c6_master_injection.yaml": [
        "5:11: spark.master: not a Spark master: local, local[N], local[*], spark://host:port, yarn or k8s://URL"
    ],
    "profiles/c6_spark_conf_password_in_value.yaml": [
        "6:36: spark.conf.spark.driver.extraJavaOptions: holds a literal 'javax.net.ssl.trustStorePassword=' value: use ${env:NAME}, ${file:PATH} or ${vault:PATH#KEY}, never a literal value"
    ],
    "profiles/c6_spark_conf_secret_key.yaml": [
        "6:37: spark.conf.spark.hadoop.fs.s3a.secret.key: 'spark.hadoop.fs.s3a.secret.key' looks like a secret, and spark.conf is passed on command lines and shown in the Spark UI: set credentials on the lake connection, as references"
    ],
    "profiles/c6_spark_conf_token.yaml": [
        "6:40: spark.conf.spark.hadoop.fs.s3a.session.token: 'spark.hadoop.fs.s3a.session.token' looks like a secret, and spark.conf is passed on command lines and shown in the Spark UI: set credentials on the lake connection, as references"
    ],
    "profiles/c6_ui_url_userinfo.yaml": [
        "5:11: spark.ui_url: not an http(s) URL of a host (and no user:password@ in it)"
    ],
}


def _project(tmp_path: Path, *extra: tuple[str, bytes]) -> Path:
    """The demo's metadata plus `extra` files (path under the project, bytes) in a project of its own."""
    home = tmp_path / "project"
    shutil.copytree(REPO / "metadata", home / "metadata", ignore=shutil.ignore_patterns("schemas"))
    for rel, data in extra:
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(data)
    return home


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_corpus_is_complete() -> None:
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md"}
    assert files == set(EXPECTED)
    assert len(files) >= 60
    assert all(EXPECTED.values()), "every hostile file has at least one expected line"
    planted = [rel for rel in files if PLANTED.encode() in (CORPUS / rel).read_bytes()]
    assert len(planted) >= 15  # the secret checks below are not vacuous


@pytest.mark.parametrize("rel", sorted(EXPECTED), ids=lambda rel: Path(rel).stem[:40])
def test_hostile_file_beside_valid_metadata(
    rel: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _project(tmp_path, (f"metadata/{rel}", (CORPUS / rel).read_bytes()), (UNRELATED, UNRELATED_TEXT.encode()))
    monkeypatch.chdir(home)
    monkeypatch.delenv("PIPEZONE_HOME", raising=False)
    monkeypatch.delenv("PIPEZONE_METADATA", raising=False)
    started = time.perf_counter()
    code, out, err = _run(capsys, "validate")
    elapsed = time.perf_counter() - started
    assert code == 1, err
    assert out.splitlines() == sorted([f"metadata/{rel}:{line}" for line in EXPECTED[rel]] + [UNRELATED_LINE])
    assert "Traceback" not in err and elapsed < 2.0
    code, listing, err = _run(capsys, "list")
    assert code == 1 and all(flow in listing for flow in DEMO_FLOWS), err
    code, shown, err = _run(capsys, "show", "retail_orders")
    assert code == 0 and "retail_orders" in shown, err
    assert PLANTED not in out + listing + shown + err


def test_a_metadata_folder_below_a_folder_named_connections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """File roles come from the path below the metadata root, not from any folder above it."""
    home = _project(tmp_path / "connections" / "flows")
    monkeypatch.chdir(home)
    code, _, err = _run(capsys, "validate")
    assert code == 0, err
    counts = [len(list((home / "metadata" / kind).glob("*.yaml"))) for kind in ("flows", "connections", "profiles")]
    assert "{} flows, {} connections, {} profiles valid".format(*counts) in err  # every file of the copy


def test_a_metadata_folder_on_the_command_line_is_the_whole_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pipezone validate OTHER/metadata` inside a project: OTHER's problems only, not duplicates of ./metadata."""
    other = _project(tmp_path / "other", (UNRELATED, UNRELATED_TEXT.encode()))
    monkeypatch.chdir(REPO)
    expected = [UNRELATED_LINE.replace(UNRELATED, str(other / UNRELATED))]
    for target in (other / "metadata", other / "metadata" / "flows", other / UNRELATED):
        code, out, _ = _run(capsys, "validate", str(target))
        assert (code, out.splitlines()) == (1, expected), target
    code, out, err = _run(capsys, "validate", str(other / "metadata" / "flows" / "retail_orders.yaml"))
    assert (code, out) == (0, "") and "ok: 1 file(s) valid" in err  # not a duplicate of ./metadata's flow


def test_missing_paths_are_problems_not_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    code, out, _ = _run(capsys, "validate", "no/such/file.yaml")
    assert code == 1 and out == "no/such/file.yaml:1:1: (file): no such file or folder\n"
    code, out, _ = _run(capsys, "--metadata", str(tmp_path / "nowhere"), "validate")
    assert code == 1 and out.endswith("(folder): metadata folder does not exist\n")


def test_file_names_that_would_break_lines_or_airflow_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newline in a file name is printed escaped: it cannot fake a second problem line."""
    name = "bad\nmetadata/flows/retail_orders.yaml:1:1: name: fake.yaml"
    home = _project(tmp_path, (f"metadata/flows/{name}", b"name: [\n"))
    monkeypatch.chdir(home)
    code, out, _ = _run(capsys, "validate")
    assert code == 1
    assert out.splitlines() == [
        "metadata/flows/bad\\nmetadata/flows/retail_orders.yaml:1:1: name: fake.yaml:2:1: yaml: malformed YAML: "
        "did not find expected node content (while parsing a flow node)"
    ]


def test_fifo_and_dangling_link_are_reported_never_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _project(tmp_path)
    os.mkfifo(home / "metadata" / "flows" / "pipe.yaml")  # opening it would block forever
    (home / "metadata" / "flows" / "gone.yaml").symlink_to(tmp_path / "missing.yaml")
    (home / "metadata" / "flows" / "shadow.yaml").symlink_to("/etc/shadow")
    monkeypatch.chdir(home)
    code, out, _ = _run(capsys, "validate")
    assert code == 1
    assert out.splitlines() == [
        "metadata/flows/gone.yaml:1:1: (document): a symlink to a file outside the metadata folder",
        "metadata/flows/pipe.yaml:1:1: (document): not a regular file",
        "metadata/flows/shadow.yaml:1:1: (document): a symlink to a file outside the metadata folder",
    ]


def test_file_references_are_confined_and_capped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text("s3cret\n")
    (tmp_path / "secrets" / "big").write_bytes(b"x" * (64 * 1024 + 1))
    os.mkfifo(tmp_path / "secrets" / "fifo")
    (tmp_path / "secrets" / "escape").symlink_to("/etc/hostname")
    resolver = SecretResolver({}, tmp_path, file_roots=[tmp_path])
    assert resolver.resolve("${file:secrets/db}").reveal() == "s3cret"
    for ref, reason in [
        ("${file:/dev/zero}", "outside the project and the secret folders"),
        ("${file:../../../../etc/shadow}", "outside the project and the secret folders"),
        ("${file:secrets/escape}", "outside the project and the secret folders"),
        ("${file:secrets/big}", "over the limit of 65,536"),
        ("${file:secrets/fifo}", "not a regular file"),
    ]:
        with pytest.raises(SecretError, match=reason):
            resolver.resolve(SecretRef.parse(ref))


DAGBAG = """
import json, logging, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowFailException
bag = DagBag(sys.argv[1])
logs = []
class Keep(logging.Handler):
    def emit(self, record):
        logs.append(record.getMessage())
logging.getLogger().addHandler(Keep())
for dag_id in sorted(bag.dags):
    if dag_id.startswith("pipezone_invalid_"):
        task = bag.dags[dag_id].get_task("report_problems")
        try:  # the task logs each problem line (to this process's output)
            task.execute({})
        except AirflowFailException as err:
            logs.append(str(err))
docs = {d: (bag.dags[d].doc_md or "") + "".join(t.doc_md or "" for t in bag.dags[d].tasks) for d in bag.dags}
print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dags), "docs": docs, "logs": logs}))
"""


def test_hostile_dagbag(tmp_path: Path) -> None:
    """Every hostile file at once: each demo DAG kept, one placeholder per bad file, no import error, and
    no planted secret in the DAG docs or the placeholder tasks' logs."""
    extra = [(f"metadata/{rel}", (CORPUS / rel).read_bytes()) for rel in sorted(EXPECTED)]
    home = _project(tmp_path, *extra, (UNRELATED, UNRELATED_TEXT.encode()))
    env = {
        **os.environ,
        "PIPEZONE_HOME": str(home),
        "PIPEZONE_SPARK_LAUNCHER": "no-such-launcher",  # a bad setting fails tasks when they run, hides nothing
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", DAGBAG, str(REPO / "dags")], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    flows = [d for d in result["dags"] if not d.startswith("pipezone_invalid_")]
    placeholders = [d for d in result["dags"] if d.startswith("pipezone_invalid_")]
    assert flows == [f"pipezone_{flow}" for flow in DEMO_FLOWS]
    assert len(placeholders) == len(EXPECTED) + 1  # one per hostile file, and the unrelated one
    assert max(len(d) for d in placeholders) <= 250
    assert len(result["logs"]) > len(EXPECTED)
    assert PLANTED not in json.dumps(result["docs"]) + "\n".join(result["logs"]) + proc.stdout + proc.stderr
    assert elapsed < 30  # Airflow's dagbag_import_timeout


def test_run_all_skips_an_invalid_flow_and_runs_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow whose file has problems of its own (here a DELETE in its source query, found by the cross-file
    check) never runs; `run --all` names it and carries on with the valid flows."""
    rel = "flows/c7_modifying_cte.yaml"
    home = _project(tmp_path, (f"metadata/{rel}", (CORPUS / rel).read_bytes()))
    runtime = load_runtime(load_settings(environ={"PIPEZONE_HOME": str(home)}))
    flows, skipped = _flows_to_run(runtime, argparse.Namespace(all=True, flows=[]))
    assert flows == DEMO_FLOWS and skipped == ["c7_modifying_cte"]
    assert "skipping invalid flow c7_modifying_cte: " in capsys.readouterr().err
    with pytest.raises(RunError, match="flow 'c7_modifying_cte' is invalid: .*contains DELETE"):
        runtime.flow("c7_modifying_cte")
