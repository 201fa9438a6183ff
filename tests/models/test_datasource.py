"""Report SQL runs read-only with a statement timeout, on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from jobs.pipeline import query_sections
from models.datasource import read_only, run_query
from models.definition import parse_definition
from models.errors import QueryError


@pytest.fixture
def pg_tenant_db(create_pg_database) -> str:
    """A PostgreSQL tenant database with a table `t(v)` holding 1, 2, 3 and a sequence `s`."""
    url = create_pg_database()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1), (2), (3)")
        conn.execute("CREATE SEQUENCE s")
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def tenant_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tenant data on PostgreSQL and on SQLite."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_tenant_db")
    path = tmp_path / "tenant.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    return f"sqlite:///{path}"


def values(url: str) -> list[int]:
    with read_only(url, 5) as conn:
        return [r[0] for r in run_query(conn, "SELECT v FROM t ORDER BY v", {}, 100, "check", 5).rows]


WRITES = {
    "update": "UPDATE t SET v = v + 100 RETURNING v",
    "delete": "DELETE FROM t RETURNING v",
    "drop": "DROP TABLE t",
    "insert": "INSERT INTO t VALUES (9) RETURNING v",
    "cte": "WITH gone AS (DELETE FROM t RETURNING v) SELECT count(*) AS value FROM gone",
}


@pytest.mark.parametrize("sql", WRITES.values(), ids=WRITES.keys())
def test_writes_are_refused_by_the_database_and_the_data_is_intact(tenant_db: str, sql: str) -> None:
    refusal = r"sections\[0\] tried to change the tenant database .*may only read"
    if tenant_db.startswith("sqlite") and sql.startswith("WITH"):
        refusal = r'sections\[0\] failed in the tenant database: near "DELETE": syntax error'  # no such CTEs
    with pytest.raises(QueryError, match=refusal):
        with read_only(tenant_db, 5) as conn:
            run_query(conn, sql, {}, 10, "sections[0]", 5)
    assert values(tenant_db) == [1, 2, 3]


def test_a_function_with_side_effects_is_refused(pg_tenant_db: str) -> None:
    # PostgreSQL only: SQLite has no server-side functions that write.
    with pytest.raises(QueryError, match="tried to change the tenant database"):
        with read_only(pg_tenant_db, 5) as conn:
            run_query(conn, "SELECT nextval('s') AS value", {}, 1, "sections[0]", 5)


def test_a_slow_query_ends_at_the_timeout_with_a_clear_error(tenant_db: str) -> None:
    slow = ("SELECT pg_sleep(5)" if tenant_db.startswith("postgresql") else
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n")
    with pytest.raises(QueryError, match=r"ran longer than the 0.5 s statement timeout; make it faster"):
        with read_only(tenant_db, 0.5) as conn:
            run_query(conn, slow, {}, 1, "sections[0]", 0.5)


def test_parameters_are_bound_not_formatted(tenant_db: str) -> None:
    definition = parse_definition({
        "slug": "r", "title": "R", "params": {"min": "2 OR 1=1"},
        "sections": [{"kind": "table", "title": "T", "sql": "SELECT v FROM t WHERE CAST(v AS TEXT) >= :min"}]})
    [table] = query_sections(tenant_db, definition, {"min": "2"})
    assert table["rows"] == [[2], [3]]
    # Bound, the injection attempt is one string compared as text ('3' >= '2 OR 1=1' only);
    # formatted in, `OR 1=1` would have returned every row.
    [table] = query_sections(tenant_db, definition, definition.params)
    assert table["rows"] == [[3]]


def test_missing_columns_are_named(tenant_db: str) -> None:
    definition = parse_definition({
        "slug": "r", "title": "R", "sections": [
            {"kind": "chart", "title": "By v", "sql": "SELECT v AS value FROM t",
             "chart": {"x": "label", "y": "value"}}]})
    with pytest.raises(QueryError, match=r"sections\[0\] \('By v'\) has no column 'label'; its query returns value"):
        query_sections(tenant_db, definition, {})


def test_table_rows_are_capped_and_the_total_is_counted(tenant_db: str) -> None:
    definition = parse_definition({"slug": "r", "title": "R", "sections": [
        {"kind": "table", "title": "T", "sql": "SELECT v FROM t ORDER BY v", "max_rows": 2}]})
    [table] = query_sections(tenant_db, definition, {})
    assert (table["rows"], table["total"]) == ([[1], [2]], 3)
