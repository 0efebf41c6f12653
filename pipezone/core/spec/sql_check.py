"""Is this SQL one read-only query? Checked on the parsed statement (sqlglot), never on its first keyword.

A gold `sql` and a source `query` are run as given (the source's inside a derived table), so
`WITH x AS (...) DELETE ...`, a second statement behind a comment, PostgreSQL's data-modifying CTEs
(`WITH d AS (DELETE ... RETURNING *) SELECT ...`), `SELECT ... INTO` (creates a table) and
`SELECT ... FOR UPDATE` (locks the source's rows) must all fail validation. The statement is parsed in
the dialect it runs in (Spark SQL for gold and expressions, the source database's own for a query),
and every node of the tree is checked, not just the root.

Inputs are bounded before parsing: sqlglot's recursive-descent parser would hit Python's recursion
limit on a few thousand nested parentheses, and its time grows with the text.
"""

from __future__ import annotations

import functools
import logging

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError

MAX_SQL_CHARS = 32_768
MAX_NESTING = 100

# sqlglot logs a warning for each statement it keeps as an opaque Command; we report those ourselves.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

DIALECTS = {
    "spark": "spark",
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgres": "postgres",
    "sqlite": "sqlite",
    "sqlserver": "tsql",
    "oracle": "oracle",
}

# What a read must never contain, anywhere in its tree, with the words the message uses.
_WRITES: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Insert, "INSERT"),
    (exp.Update, "UPDATE"),
    (exp.Delete, "DELETE"),
    (exp.Merge, "MERGE"),
    (exp.Drop, "DROP"),
    (exp.Create, "CREATE"),
    (exp.Alter, "ALTER"),
    (exp.TruncateTable, "TRUNCATE"),
    (exp.Into, "SELECT ... INTO"),
    (exp.Lock, "a row lock (FOR UPDATE / FOR SHARE)"),
    (exp.Copy, "COPY"),
    (exp.Grant, "GRANT"),
    (exp.Set, "SET"),
    (exp.Use, "USE"),
    (exp.Pragma, "PRAGMA"),
    (exp.Transaction, "a transaction statement"),
    (exp.Commit, "COMMIT"),
    (exp.Rollback, "ROLLBACK"),
    (exp.Execute, "EXECUTE"),
    (exp.Kill, "KILL"),
    (exp.Analyze, "ANALYZE"),
    (exp.Cache, "CACHE"),
    (exp.Uncache, "UNCACHE"),
    (exp.Refresh, "REFRESH"),
    (exp.Command, "a statement that is not a query"),
)


# Functions that read files, run code or stall the server, whatever the user's rights allow: never in a
# flow's SQL. Spark's reflect/java_method call any static Java method in the driver.
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "reflect", "java_method", "try_reflect",  # Spark
        "load_file", "sleep", "benchmark", "sys_exec", "sys_eval",  # MySQL / MariaDB
        "pg_sleep", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "set_config", "dblink",
        "dblink_exec", "pg_stat_file", "lo_import", "lo_export",  # PostgreSQL
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",  # SQLite
        "openrowset", "opendatasource", "openquery",  # SQL Server
    }
)  # fmt: skip
_FORBIDDEN_PREFIXES = ("pg_read_", "pg_ls_", "xp_", "dbms_", "utl_")
# Table-valued functions a gold query may read from (they make rows, they read nothing).
_GENERATORS = frozenset(
    {"range", "explode", "explode_outer", "inline", "inline_outer", "posexplode", "posexplode_outer", "stack"}
)
LAKE_LAYERS = ("silver", "gold")


def _bounded(sql: str) -> str | None:
    if len(sql) > MAX_SQL_CHARS:
        return f"SQL is {len(sql):,} characters, over the limit of {MAX_SQL_CHARS:,}"
    depth = deepest = 0
    for char in sql:  # a cheap upper bound: parentheses inside literals count too
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_NESTING:
        return f"SQL nests parentheses more than {MAX_NESTING} levels deep"
    return None


def _parse(sql: str, dialect: str) -> tuple[list[exp.Expression], str | None]:
    """The statements of `sql` (empty ones dropped), or the reason it does not parse."""
    try:
        statements = sqlglot.parse(sql, read=DIALECTS.get(dialect, dialect))
    except SqlglotError as err:
        return [], f"cannot parse this SQL ({_dialect_name(dialect)}): {_first_line(err)}"
    except RecursionError:
        return [], "SQL is nested too deeply to parse"
    return [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)], None


def _first_line(err: SqlglotError) -> str:
    """sqlglot's reason, without the echo of the statement (the problem already points at it)."""
    if isinstance(err, TokenError):
        return "an unterminated string, quoted name or comment"
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        near = str(first.get("highlight") or "").strip()
        return str(first.get("description") or "syntax error") + (f" near '{near[:40]}'" if near else "")
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _dialect_name(dialect: str) -> str:
    return "Spark SQL" if dialect == "spark" else f"{dialect} dialect"


def _write_in(tree: exp.Expression) -> str | None:
    for node in tree.walk():
        for kind, words in _WRITES:
            if isinstance(node, kind):
                return words
    return None


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _forbidden_call(tree: exp.Expression) -> str | None:
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if name in _FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES):
            return f"SQL must not call {name}(): it reads files, runs code or stalls the server"
    return None


def _outside_the_lake(tree: exp.Expression) -> str | None:
    """Gold SQL reads silver.<flow>, gold.<table>, its own CTEs and row generators: never a file path
    (parquet.`/etc/...`), a catalog table or a dynamic IDENTIFIER()."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            name = _function_name(table.this)
            if name not in _GENERATORS:
                return f"gold SQL can't read from {name}(): read silver.<flow> and gold.<table>"
            continue
        layer, name = table.db.lower(), table.name
        if table.catalog or (layer and layer not in LAKE_LAYERS) or (not layer and name.lower() not in ctes):
            shown = ".".join(part for part in (table.catalog, table.db, name) if part)[:80]
            return f"gold SQL reads '{shown}': read silver.<flow> and gold.<table> (and its own WITH names) only"
    return None


@functools.lru_cache(maxsize=4096)  # flows of an estate share checks and models: parse each text once
def select_problem(sql: str, dialect: str = "spark", *, lake_only: bool = False) -> str | None:
    """Why `sql` is not one read-only query in `dialect`, or None when it is. `lake_only` (gold SQL): it
    may read the lake's silver and gold tables only."""
    if not sql.strip():
        return "empty SQL"
    bounded = _bounded(sql)
    if bounded:
        return bounded
    statements, error = _parse(sql, dialect)
    if error:
        return error
    if not statements:
        return "empty SQL"
    if len(statements) > 1:
        return f"SQL must be one SELECT statement, found {len(statements)} statements"
    statement = statements[0]
    write = _write_in(statement)
    if write:
        return f"SQL must be a read-only SELECT, but it contains {write}"
    if not isinstance(statement, exp.Query | exp.Values):
        return "SQL must be a single SELECT (or WITH ... SELECT) statement"
    return _forbidden_call(statement) or (_outside_the_lake(statement) if lake_only else None)


@functools.lru_cache(maxsize=4096)
def expression_problem(text: str) -> str | None:
    """Why `text` is not one Spark SQL expression (a filter, a derived column, a row check), or None."""
    if not text.strip():
        return "empty SQL expression"
    bounded = _bounded(text)
    if bounded:
        return bounded
    statements, error = _parse(f"SELECT {text}", "spark")
    if error:
        return error.replace("this SQL", "this expression")
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        return "a SQL expression must be one expression, not statements"
    select = statements[0]
    extra = [key for key, value in select.args.items() if value and key != "expressions"]
    if len(select.expressions) != 1 or extra:
        return "a SQL expression must be one expression (no FROM, WHERE, commas or clauses)"
    write = _write_in(select)
    if write:
        return f"a SQL expression must not contain {write}"
    return _forbidden_call(select)
