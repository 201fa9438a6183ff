"""What a report query may do inside the boundary: read, within its timeout, with bound
parameters; and what the boundary guarantees across uses and roles."""

from __future__ import annotations

import io

import psycopg
import pytest

from models.definition import parse_definition
from models.errors import QueryError
from pipeline.query import query_sections
from renderers.csv_export import export_csv
from tenantdb import open_source
from tests.tenantdb.conftest import Source, admin, report, values


def test_a_slow_query_ends_at_the_timeout_with_a_clear_error(source: Source) -> None:
    slow = ("SELECT pg_sleep(5) AS n" if source.backend == "postgresql" else
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) AS n FROM n")
    with pytest.raises(QueryError, match=r"ran longer than the 0.5 s statement timeout; make it faster"):
        with open_source(source.url, 0.5) as tenant:
            tenant.query(slow, {}, cap=1, where="sections[0]")


def test_the_timeout_bounds_a_whole_stream_of_quick_rows(source: Source) -> None:
    # Each row is quick; together they take about 1.5 s. A timeout per fetch would let it run.
    if source.backend == "postgresql":
        sql = "SELECT g, pg_sleep(0.015) AS pause FROM generate_series(1, 100) AS g"
    else:
        sql = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
               "SELECT i FROM n")
    with pytest.raises(QueryError, match="ran longer than the 0.5 s statement timeout"):
        with open_source(source.url, 0.5) as tenant:
            tenant.query(sql, {}, cap=10, where="sections[0]")
    with pytest.raises(QueryError, match="ran longer than the 0.5 s statement timeout"):
        export_csv(source.url, sql, {}, io.BytesIO(), timeout_s=0.5, max_bytes=10**9)


def test_parameters_are_bound_not_formatted(source: Source) -> None:
    definition = parse_definition({
        "slug": "r", "title": "R", "params": {"min": "2 OR 1=1"},
        "sections": [{"kind": "table", "title": "T", "sql": "SELECT v FROM t WHERE CAST(v AS TEXT) >= :min"}]})
    [table] = query_sections(source.url, definition, {"min": "2"})
    assert table["rows"] == [[2], [3]]
    # Bound, the injection attempt is one string compared as text ('3' >= '2 OR 1=1' only);
    # formatted in, `OR 1=1` would have returned every row.
    [table] = query_sections(source.url, definition, definition.params)
    assert table["rows"] == [[3]]


def test_missing_columns_are_named_even_when_no_row_comes_back(source: Source) -> None:
    for where in ("", " WHERE v > 100"):
        definition = parse_definition({
            "slug": "r", "title": "R", "sections": [
                {"kind": "chart", "title": "By v", "sql": f"SELECT v AS value FROM t{where}",
                 "chart": {"x": "label", "y": "value"}}]})
        with pytest.raises(QueryError, match=r'section 1 \("By v"\) has no column \'label\'; its query returns value'):
            query_sections(source.url, definition, {})


def test_table_rows_are_capped_and_the_total_is_counted(source: Source) -> None:
    definition = parse_definition({"slug": "r", "title": "R", "sections": [
        {"kind": "table", "title": "T", "sql": "SELECT v FROM t ORDER BY v;", "max_rows": 2}]})
    [table] = query_sections(source.url, definition, {})
    assert (table["rows"], table["total"]) == ([[1], [2]], 3)


def test_a_pooled_connection_comes_back_as_safe_as_a_new_one(pg_source: Source) -> None:
    # Given a report that changes what it can of its session: the default for later
    # transactions, an advisory lock that outlives a rollback, a GUC.
    sql = ("SELECT pg_backend_pid() AS pid, set_config('default_transaction_read_only', 'off', false) AS a, "
           "set_config('statement_timeout', '0', false) AS b, pg_advisory_lock(42) AS c")
    [first] = query_sections(pg_source.url, report(sql), {})
    # When the next report runs on the same pooled connection,
    check = ("SELECT pg_backend_pid() AS pid, current_setting('transaction_read_only') AS ro, "
             "current_setting('default_transaction_read_only') AS default_ro, "
             "current_setting('statement_timeout') AS timeout, "
             "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks")
    [second] = query_sections(pg_source.url, report(check), {})
    # Then it is the same backend, read-only by default and in its transaction, timed, lock-free.
    pid, ro, default_ro, timeout, locks = second["rows"][0]
    assert pid == first["rows"][0][0]
    assert (ro, default_ro, timeout, locks) == ("on", "on", "1min", 0)
    with pytest.raises(QueryError, match="tried to change the tenant database"):
        query_sections(pg_source.url, report("SELECT nextval('s') AS n"), {})
    assert values(pg_source) == [1, 2, 3]


def test_a_role_that_can_read_server_files_is_refused_when_a_run_starts(pg_source: Source) -> None:
    role = psycopg.conninfo.conninfo_to_dict(pg_source.url.replace("+psycopg", ""))["user"]
    with admin(pg_source) as conn:
        conn.execute(f'GRANT pg_read_server_files TO "{role}"')
    try:
        with pytest.raises(QueryError, match=rf"The data source's role '{role}' is a member of "
                                             r"pg_read_server_files, .*CREATE ROLE herald_reader LOGIN"):
            query_sections(pg_source.url, report("SELECT 1 AS n"), {})
    finally:
        with admin(pg_source) as conn:
            conn.execute(f'REVOKE pg_read_server_files FROM "{role}"')
    assert query_sections(pg_source.url, report("SELECT 1 AS n"), {})[0]["rows"] == [[1]]


def test_a_csv_over_the_size_limit_fails_with_the_sizes(source: Source) -> None:
    sql = ("SELECT g, repeat('x', 100) AS filler FROM generate_series(1, 1000) AS g"
           if source.backend == "postgresql" else
           "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < 1000) "
           "SELECT g, printf('%.100c', 'x') AS filler FROM n")
    target = io.BytesIO()
    with pytest.raises(QueryError, match=r"^csv.sql produced more than 20.0 KB of CSV \(HERALD_CSV_MAX_BYTES\) "
                                         r"after [\d,]+ rows; narrow the query or raise the limit.$"):
        export_csv(source.url, sql, {}, target, timeout_s=10, max_bytes=20 * 1024)
    assert len(target.getvalue()) <= 20 * 1024
    assert export_csv(source.url, sql, {}, io.BytesIO(), timeout_s=10, max_bytes=200 * 1024) == 1000
