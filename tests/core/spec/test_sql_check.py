"""SQL checks on the parsed statement: what passes as one read-only query, and what does not."""

from __future__ import annotations

import pytest

from pipezone.core.spec.sql_check import MAX_NESTING, MAX_SQL_CHARS, expression_problem, select_problem


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT order_date, sum(total) AS revenue FROM silver.retail_orders GROUP BY 1", "spark"),
        ("WITH a AS (SELECT 1 AS x) SELECT x FROM a UNION ALL SELECT 2", "spark"),
        ("SELECT /*+ BROADCAST(b) */ a.id FROM silver.a a JOIN silver.b b ON a.id = b.id", "spark"),
        ("SELECT id FROM t QUALIFY row_number() OVER (PARTITION BY id ORDER BY ts DESC) = 1", "spark"),
        ("SELECT 1;", "spark"),
        ("SELECT 1; -- a trailing comment", "spark"),
        ("SELECT `a`, b FROM `t` WHERE c = 'it''s'", "mysql"),
        ("SELECT TOP 10 * FROM dbo.t", "sqlserver"),
        ("SELECT * FROM t WHERE ROWNUM < 10", "oracle"),
        ("SELECT * FROM orders WHERE status <> 'x'", "sqlite"),
        ("SELECT * FROM public.orders WHERE payload->>'k' = 'v'", "postgres"),
    ],
)
def test_reads_pass(sql: str, dialect: str) -> None:
    assert select_problem(sql, dialect) is None


@pytest.mark.parametrize(
    ("sql", "dialect", "problem"),
    [
        ("WITH x AS (SELECT 1) DELETE FROM t", "spark", "contains DELETE"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "spark", "contains INSERT"),
        ("WITH x AS (SELECT 1) UPDATE t SET a = 1", "mysql", "contains UPDATE"),
        ("WITH x AS (SELECT 1) MERGE INTO t USING x ON 1 = 1 WHEN MATCHED THEN DELETE", "spark", "contains MERGE"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "postgres", "contains DELETE"),
        ("SELECT 1 /* harmless */; DROP TABLE t", "spark", "found 2 statements"),
        ("SELECT 1 -- report\n; DELETE FROM t", "spark", "found 2 statements"),
        ("SELECT * INTO copy FROM t", "postgres", "contains SELECT ... INTO"),
        ("SELECT * FROM t FOR UPDATE", "mysql", "row lock"),
        ("DROP TABLE t", "spark", "contains DROP"),
        ("SHOW TABLES", "spark", "not a query"),
        ("SELECT * FROM t) q; DROP TABLE t; --", "sqlite", "cannot parse this SQL (sqlite dialect)"),
        ("SELECT 'unterminated", "spark", "an unterminated string"),
        ("", "spark", "empty SQL"),
        (";", "spark", "empty SQL"),
    ],
)
def test_anything_else_is_refused(sql: str, dialect: str, problem: str) -> None:
    assert problem in (select_problem(sql, dialect) or "")


def test_inputs_are_bounded_before_parsing() -> None:
    deep = "SELECT " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1)
    assert "more than 100 levels deep" in (select_problem(deep) or "")
    assert "over the limit" in (select_problem("SELECT " + "1 + " * MAX_SQL_CHARS + "1") or "")


@pytest.mark.parametrize(
    "expression",
    [
        "status = 'cancelled'",
        "cast(x AS decimal(12,2))",
        "transform(arr, x -> x + 1)",
        "a RLIKE '^x'",
        "x IN (SELECT id FROM t)",
        "CASE WHEN a THEN 1 ELSE 2 END",
        "current_timestamp() - INTERVAL 1 DAY",
    ],
)
def test_spark_expressions_pass(expression: str) -> None:
    assert expression_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("total >= 0) OR (1 = 1", "cannot parse this expression"),
        ("1 = 1 FROM orders", "one expression"),
        ("a, b", "one expression"),
        ("   ", "empty SQL expression"),
    ],
)
def test_expressions_that_break_out_are_refused(expression: str, problem: str) -> None:
    assert problem in (expression_problem(expression) or "")


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT * FROM text.`/etc/shadow`", "gold SQL reads 'text./etc/shadow'"),
        ("SELECT * FROM parquet.`s3a://other-bucket/x`", "gold SQL reads 'parquet.s3a://other-bucket/x'"),
        ("SELECT * FROM spark_catalog.default.t", "gold SQL reads 'spark_catalog.default.t'"),
        ("SELECT * FROM orders", "gold SQL reads 'orders'"),
        ("SELECT * FROM IDENTIFIER('silver.x')", "can't read from identifier()"),
        ("SELECT reflect('java.lang.System', 'exit', 0)", "must not call reflect()"),
    ],
)
def test_gold_sql_reads_the_lake_only(sql: str, problem: str) -> None:
    assert problem in (select_problem(sql, "spark", lake_only=True) or "")


@pytest.mark.parametrize(
    "sql",
    [
        "WITH a AS (SELECT order_id FROM silver.retail_orders) SELECT * FROM a JOIN gold.daily_revenue ON true",
        "SELECT * FROM silver.x LATERAL VIEW explode(arr) t AS v",
        "SELECT * FROM range(10)",
        "SELECT * FROM VALUES (1, 2) AS v(a, b)",
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    ],
)
def test_gold_sql_over_lake_tables_passes(sql: str) -> None:
    assert select_problem(sql, "spark", lake_only=True) is None


@pytest.mark.parametrize(
    ("sql", "dialect", "name"),
    [
        ("SELECT LOAD_FILE('/etc/passwd')", "mysql", "load_file"),
        ("SELECT SLEEP(3600)", "mysql", "sleep"),
        ("SELECT pg_read_file('/etc/passwd')", "postgres", "pg_read_file"),
        ("SELECT load_extension('evil')", "sqlite", "load_extension"),
    ],
)
def test_source_queries_call_no_server_side_effects(sql: str, dialect: str, name: str) -> None:
    assert f"must not call {name}()" in (select_problem(sql, dialect) or "")
