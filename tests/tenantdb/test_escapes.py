"""Report SQL that tries to leave the read-only boundary, through the section path
and the CSV path, with and without parameters: each is refused with one sentence,
the data and the files are unchanged, and the next report in this process is as
confined as the first."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from models.errors import QueryError
from pipeline.query import query_sections
from renderers.csv_export import export_csv
from tests.tenantdb.conftest import Source, report, values

MULTI = "holds more than one SQL statement"
WRITE = "tried to change the tenant database"
NOT_QUERY = "statement, not a query"
MAY_NOT = "which report queries may not do"
SYNTAX = "is not a single SELECT the tenant database accepts"

# {p} is a literal 1, or the parameter :n (whose value is 1): psycopg sends a statement
# with no parameters over the simple protocol unless herald stops it.
# name: (sql, what PostgreSQL's refusal says, what SQLite's says); None: not on that backend.
ATTEMPTS = {
    "commit-then-delete": ("COMMIT; DELETE FROM t WHERE v <= {p}; SELECT 1 AS n", MULTI, MAY_NOT),
    "rollback-then-delete": ("ROLLBACK; DELETE FROM t; SELECT {p} AS n", MULTI, MAY_NOT),
    "select-then-delete": ("SELECT {p} AS n; DELETE FROM t", MULTI, MULTI),
    "delete-after-a-comment": ("SELECT {p} AS n; -- harmless\nDELETE FROM t", MULTI, MULTI),
    "break-out-of-the-wrapper": ("SELECT {p} AS n) AS q; DELETE FROM t; SELECT * FROM (SELECT 1", MULTI, SYNTAX),
    "update": ("UPDATE t SET v = v + 100 WHERE v >= {p} RETURNING v", "an UPDATE " + NOT_QUERY, WRITE),
    "delete": ("DELETE FROM t WHERE v >= {p} RETURNING v", "a DELETE " + NOT_QUERY, WRITE),
    "insert": ("INSERT INTO t VALUES ({p}) RETURNING v", "an INSERT " + NOT_QUERY, WRITE),
    "drop": ("DROP TABLE t", "a DROP " + NOT_QUERY, WRITE),
    "create-table-as": ("CREATE TABLE stolen AS SELECT {p} AS n", "a CREATE " + NOT_QUERY, WRITE),
    "data-modifying-cte": ("WITH gone AS (DELETE FROM t WHERE v >= {p} RETURNING v) SELECT count(*) AS n FROM gone",
                           WRITE, "syntax error"),
    "session-characteristics": ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "a SET " + NOT_QUERY, None),
    "set-transaction-read-write": ("SET TRANSACTION READ WRITE", "a SET " + NOT_QUERY, None),
    "set-config-transaction": ("SELECT set_config('transaction_read_only', 'off', true) AS n, {p} AS m", WRITE, None),
    "do-block": ("DO $$ BEGIN DELETE FROM t; END $$", "a DO " + NOT_QUERY, None),
    "call-a-procedure-that-commits": ("CALL purge()", "a CALL " + NOT_QUERY, None),
    "lock": ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "a LOCK " + NOT_QUERY, None),
    "copy-to-program": ("COPY (SELECT {p}) TO PROGRAM 'touch {dir}/pwned'", "a COPY " + NOT_QUERY, None),
    "pg-read-file": ("SELECT pg_read_file('/etc/hostname') AS n, {p} AS m", "permission denied", None),
    "nextval": ("SELECT nextval('s') AS n, {p} AS m", WRITE, None),
    "select-for-update": ("SELECT v FROM t WHERE v >= {p} FOR UPDATE", WRITE, None),
    "explain-analyze-delete": ("EXPLAIN ANALYZE DELETE FROM t WHERE v >= {p}", "an EXPLAIN " + NOT_QUERY, None),
    "prepare": ("PREPARE gone AS DELETE FROM t", "a PREPARE " + NOT_QUERY, None),
    "attach": ("ATTACH DATABASE '{dir}/attached.db' AS x", SYNTAX, "attach a database file"),
    "vacuum-into": ("VACUUM INTO '{dir}/copy.db'", SYNTAX, "attach a database file"),
    "pragma-query-only-off": ("PRAGMA query_only = 0", SYNTAX, "PRAGMA query_only"),
    "pragma-writable-schema": ("PRAGMA writable_schema = 1", SYNTAX, "PRAGMA writable_schema"),
    "begin": ("BEGIN", "a BEGIN " + NOT_QUERY, "control the transaction"),
    "load-extension": ("SELECT load_extension('{dir}/evil') AS n, {p} AS m", "load_extension", "call load_extension()"),
}


def attempts(backend: str) -> list:
    column = 1 if backend == "postgresql" else 2
    return [pytest.param(backend, entry[0], entry[column], p,
                         id=f"{backend}-{name}-{'param' if p else 'literal'}")
            for name, entry in ATTEMPTS.items() if entry[column] is not None
            for p in ([False, True] if "{p}" in entry[0] else [False])]


def through_sections(source: Source, sql: str, params: dict) -> None:
    query_sections(source.url, report(sql, params=params), params)


def through_csv(source: Source, sql: str, params: dict) -> None:
    export_csv(source.url, sql, params, io.BytesIO(), timeout_s=5, max_bytes=10**6)


def files_in(directory: Path) -> set[str]:
    return {str(p) for p in directory.rglob("*")}


@pytest.mark.parametrize("path", [through_sections, through_csv], ids=["sections", "csv"])
@pytest.mark.parametrize(("backend", "sql", "expected", "parametrised"),
                         attempts("postgresql") + attempts("sqlite"))
def test_an_escape_attempt_is_refused_and_changes_nothing(
    request: pytest.FixtureRequest, backend: str, sql: str, expected: str, parametrised: bool,
    path,
) -> None:
    source: Source = request.getfixturevalue("pg_source" if backend == "postgresql" else "sqlite_source")
    params = {"n": 1} if parametrised else {}
    sql = sql.replace("{p}", ":n" if parametrised else "1").replace("{dir}", str(source.directory))
    files = files_in(source.directory)

    with pytest.raises(QueryError) as refused:
        path(source, sql, params)

    message = str(refused.value)
    assert message.count("\n") == 0 and message.endswith(".")
    assert message.startswith(('section 1 ("S0")', "csv.sql"))
    assert expected in message
    assert values(source) == [1, 2, 3]
    assert files_in(source.directory) == files
    assert not os.path.exists(source.directory / "pwned")
    # The next report in this process: still read-only, nothing attached.
    with pytest.raises(QueryError, match="tried to change"):
        through_sections(source, "SELECT nextval('s') AS n" if backend == "postgresql" else
                         "DELETE FROM t RETURNING v", {})
    if backend == "sqlite":
        with pytest.raises(QueryError, match="no such table: x.sqlite_master"):
            through_sections(source, "SELECT count(*) AS n FROM x.sqlite_master", {})
