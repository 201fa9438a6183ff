"""Checks on write that need the tenant's database: a data source whose role could run
programs or read server files is refused at `tenant add`, and report SQL that is not one
SELECT (or lacks a column its section shows) is refused at `report add`. Each refusal is
one sentence, exit status 1, and nothing written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url
from sqlmodel import Session

from tests.cli.test_data_commands import row_counts
from tests.conftest import PG_ADMIN_URL, sqlalchemy_url


def refused(cli, session: Session, args: list, message: str) -> None:
    before = row_counts(session)
    result = cli(*args)
    assert result.exit_code == 1, result.stdout
    assert (result.stdout, result.stderr.count("\n")) == ("", 1)
    assert message in result.stderr
    assert row_counts(session) == before


def test_a_superuser_data_source_is_refused_with_how_to_make_a_reader(cli, session: Session) -> None:
    superuser = make_url(sqlalchemy_url(PG_ADMIN_URL))
    refused(cli, session, ["tenant", "add", "big", "--name", "Big", "--datasource", str(superuser)],
            f"The data source's role '{superuser.username}' is a superuser, which can run programs or "
            f"read and write files on the database server; give herald a role that can only read, e.g. "
            f"CREATE ROLE herald_reader LOGIN PASSWORD")


@pytest.mark.parametrize("dangerous", ["pg_execute_server_program", "pg_read_server_files",
                                       "pg_write_server_files"])
def test_a_role_that_can_reach_the_server_is_refused(cli, session: Session, create_tenant_database,
                                                     dangerous: str) -> None:
    reader = create_tenant_database()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'GRANT {dangerous} TO "{reader.role}"')
    try:
        refused(cli, session, ["tenant", "add", "risky", "--name", "Risky", "--datasource", reader.url],
                f"The data source's role '{reader.role}' is a member of {dangerous}")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'REVOKE {dangerous} FROM "{reader.role}"')
    assert cli("tenant", "add", "safe", "--name", "Safe", "--datasource", reader.url).exit_code == 0


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite:///{dir}/missing.db", "The SQLite data source {dir}/missing.db does not exist"),
    ("sqlite://", "A SQLite data source must name a file"),
    ("mysql://reader:pw@db.example/x", "The data source is not a PostgreSQL or SQLite URL"),
    ("postgresql://reader@127.0.0.1:1/x", "Cannot connect to the data source at 127.0.0.1:1/x"),
], ids=["missing-file", "in-memory", "other-database", "unreachable"])
def test_a_data_source_herald_cannot_read_is_refused(cli, session: Session, tmp_path: Path,
                                                     url: str, message: str) -> None:
    refused(cli, session, ["tenant", "add", "nope", "--name", "Nope", "--datasource",
                           url.format(dir=tmp_path)], message.format(dir=tmp_path))


@pytest.fixture
def tenant_with_data(cli, tmp_path: Path) -> Path:
    path = tmp_path / "data.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v INTEGER, label TEXT)")
    conn.close()
    result = cli("tenant", "add", "acme", "--name", "Acme", "--datasource", f"sqlite:///{path}")
    assert result.exit_code == 0, result.stderr
    return path


def report_file(tmp_path: Path, sql: str, chart: bool = False) -> Path:
    section = {"kind": "chart", "title": "C", "sql": sql, "chart": {"x": "label", "y": "v"}} if chart \
        else {"kind": "table", "title": "T", "sql": sql}
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump({"slug": "r", "title": "R", "params": {"n": 1}, "sections": [section],
                                    "csv": {"sql": "SELECT v FROM t"}}))
    return path


@pytest.mark.parametrize(("sql", "chart", "message"), [
    ("SELECT v FROM t; DELETE FROM t", False, "sections[0].sql holds more than one SQL statement"),
    ("DELETE FROM t WHERE v = :n", False, "sections[0].sql tried to change the tenant database (delete from t)"),
    ("ATTACH DATABASE 'x.db' AS x", False, "sections[0].sql tried to attach a database file"),
    ("SELEKT v FROM t", False, "sections[0].sql is not a single SELECT the tenant database accepts"),
    ("SELECT v FROM t", True, "sections[0].sql has no column 'label'; its query returns v."),
], ids=["two-statements", "delete", "attach", "typo", "missing-column"])
def test_report_sql_that_is_not_one_fitting_select_is_refused_on_save(
    cli, session: Session, tenant_with_data: Path, tmp_path: Path, sql: str, chart: bool, message: str,
) -> None:
    refused(cli, session, ["report", "add", "--tenant", "acme", report_file(tmp_path, sql, chart)], message)
    ok = cli("report", "add", "--tenant", "acme", report_file(tmp_path, "SELECT v, label FROM t", chart))
    assert ok.exit_code == 0, ok.stderr
