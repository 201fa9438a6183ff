"""Checks on write that need the tenant's database: a data source whose role could run
programs or read server files is refused at `tenant add`, and report SQL that is not one
SELECT (or lacks a column its section shows) is refused at `report add`. Each refusal is
one sentence, exit status 1, and nothing written."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url
from sqlmodel import Session

from tests.cli.test_data_commands import row_counts
from tests.conftest import PG_ADMIN_URL, sqlalchemy_url
from tests.renderers.conftest import pdf_text


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
    ("SELECT v FROM t; DELETE FROM t", False, 'section 1 ("T").sql holds more than one SQL statement'),
    ("DELETE FROM t WHERE v = :n", False,
     'section 1 ("T").sql tried to change the tenant database (delete from t)'),
    ("ATTACH DATABASE 'x.db' AS x", False, 'section 1 ("T").sql tried to attach a database file'),
    ("SELEKT v FROM t", False,
     'section 1 ("T").sql is not a single SELECT the tenant database accepts'),
    ("SELECT v FROM t", True, """section 1 ("C").sql has no column 'label'; its query returns v."""),
], ids=["two-statements", "delete", "attach", "typo", "missing-column"])
def test_report_sql_that_is_not_one_fitting_select_is_refused_on_save(
    cli, session: Session, tenant_with_data: Path, tmp_path: Path, sql: str, chart: bool, message: str,
) -> None:
    path = report_file(tmp_path, sql, chart)
    refused(cli, session, ["report", "add", "--tenant", "acme", path], f"error: {path}: {message}")
    ok = cli("report", "add", "--tenant", "acme", report_file(tmp_path, "SELECT v, label FROM t", chart))
    assert ok.exit_code == 0, ok.stderr


PERIOD_SQL = ("SELECT :period_start AS s, :period_end AS e, count(*) AS n FROM ev "
              "WHERE at >= :period_start AND at < :period_end")


@pytest.fixture
def tenant_with_events(cli, create_tenant_database) -> None:
    """Tenant acme, whose PostgreSQL database has events inside and around 1 March (UTC)."""
    db = create_tenant_database()
    with psycopg.connect(db.admin_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE TABLE ev (at timestamptz)")
        conn.execute("INSERT INTO ev VALUES ('2026-02-28 23:59+00'), ('2026-03-01 00:00+00'), "
                     "('2026-03-01 12:00+00'), ('2026-03-02 00:00+00')")
    assert cli("tenant", "add", "acme", "--name", "Acme", "--datasource", db.url).exit_code == 0


def period_report(tmp_path: Path, sql: str) -> Path:
    path = tmp_path / "period.yaml"
    path.write_text(yaml.safe_dump({"slug": "period", "title": "Period", "csv": {"sql": sql},
                                    "sections": [{"kind": "table", "title": "Events", "sql": sql}]}))
    return path


def test_a_report_showing_its_own_period_is_saved_and_its_table_shows_the_period(
    cli, tenant_with_events: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # When the report is saved, which binds the period as a run does, and exported for 1 March
    saved = cli("report", "add", "--tenant", "acme", period_report(tmp_path, PERIOD_SQL))
    assert saved.exit_code == 0, saved.stderr
    period = ["--period-start", "2026-03-01", "--period-end", "2026-03-02"]
    exported = cli("export", "--tenant", "acme", "--report", "period", "--format", "csv",
                   "-o", tmp_path / "period.csv", *period)
    assert exported.exit_code == 0, exported.stderr
    monkeypatch.setenv("RENDER_PDF_STUB", "false")
    printed = cli("export", "--tenant", "acme", "--report", "period", "--format", "pdf",
                  "-o", tmp_path / "period.pdf", *period)
    assert printed.exit_code == 0, printed.stderr

    # Then the CSV and the PDF's table show the period and the two events in it
    with (tmp_path / "period.csv").open(newline="") as f:
        [header, row] = list(csv.reader(f))
    assert header == ["s", "e", "n"]
    assert [datetime.fromisoformat(cell) for cell in row[:2]] == [
        datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)]
    assert row[2] == "2"
    table = pdf_text(tmp_path / "period.pdf", tmp_path).split("Events", 1)[1].split()
    assert table[:8] == ["s", "e", "n", "2026-03-01", "00:00", "2026-03-02", "00:00", "2"]


def test_sql_that_fails_on_the_period_a_run_binds_is_refused_on_save(
    cli, session: Session, tenant_with_events: None, tmp_path: Path,
) -> None:
    # Unbound, $1 + 1 reads as an integer and prepares; bound to a timestamp, as a run binds
    # :period_start, it cannot run, so it is refused when saved.
    path = period_report(tmp_path, "SELECT :period_start + 1 AS later")
    refused(cli, session, ["report", "add", "--tenant", "acme", path],
            f'error: {path}: section 1 ("Events").sql failed in the tenant database: operator '
            f"does not exist: timestamp with time zone + integer.")
