"""Passwords in database URLs: a data source URL herald cannot read is refused in one sentence
that never shows its password, and a password holding a space or an @ works when it is
percent-encoded, in a tenant's data source and in DATABASE_URL alike."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from herald.cli import app
from models.db import get_engine
from models.settings import get_settings
from tenantdb import open_source
from tests.conftest import sqlalchemy_url

# The password's two halves, odd enough that a remembered secret masks nothing else in the tests.
LEAKS = ("Vq8Lk", "Zr4Pw", "Traceback")


def one_sentence_without_the_password(exit_code: int, stdout: str, stderr: str, message: str) -> None:
    assert exit_code == 1
    assert stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert not [leak for leak in LEAKS if leak in stderr]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://reader:Vq8Lk@Zr4Pw@127.0.0.1/analytics",
     "The data source URL has an @ that is not the one before its host; percent-encode an @ in "
     "the user name or password as %40 and a space as %20"),
    ("postgresql://reader:Vq8Lk%20Zr4Pw@127.0.0.1:54x/analytics",
     "The data source URL cannot be read as a URL; give the port as a number"),
    ("postgresql://reader:Vq8Lk%20Zr4Pw@127.0.0.1/analytics?colour=red",
     'The data source URL has a parameter PostgreSQL does not take (invalid connection option "colour")'),
    ("postgresql://reader:Vq8Lk Zr4Pw@127.0.0.1:1/analytics",
     "Cannot connect to the data source at 127.0.0.1:1/analytics"),
], ids=["raw-at", "port-not-a-number", "unknown-parameter", "raw-space-unreachable"])
def test_a_data_source_url_is_refused_without_its_password(cli, url: str, message: str) -> None:
    result = cli("tenant", "add", "p", "--name", "P", "--datasource", url)
    one_sentence_without_the_password(result.exit_code, result.stdout, result.stderr, message)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_reported_command_ends_in_one_sentence_not_a_traceback(db_url: str) -> None:
    # `herald tenant add` as a process, with a URL like the report's (it crashed in libpq's parser)
    done = subprocess.run(
        ["herald", "tenant", "add", "p", "--name", "P",
         "--datasource", "postgresql://u:Vq8Lk%20Zr4Pw@127.0.0.1:1/db"],
        capture_output=True, text=True, env=os.environ, timeout=120)
    one_sentence_without_the_password(done.returncode, done.stdout, done.stderr,
                                      "Cannot connect to the data source at 127.0.0.1:1/db")


@pytest.mark.parametrize("url", ["postgresql://herald:Vq8Lk@Zr4Pw@127.0.0.1/herald",
                                 "postgresql://herald:Vq8Lk@Zr4Pw@127.0.0.1:5432/herald"])
def test_a_raw_at_in_database_url_is_refused_without_the_password(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["runs"], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    one_sentence_without_the_password(result.exit_code, result.stdout, result.stderr,
                                      "DATABASE_URL is invalid")


@pytest.fixture
def roles_with_hard_passwords(pg_admin: str) -> Iterator[dict[str, str]]:
    """A control database owned by a role whose password holds a space and an @, and a tenant
    database (a table `t`) that a second such role may only read; dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    owner, reader = f"herald_owner_{suffix}", f"herald_reader_{suffix}"
    control, tenant = f"herald_control_{suffix}", f"herald_data_{suffix}"
    passwords = {owner: "p@ss word", reader: "Vq8 Lk@9 'x"}
    server = make_url(sqlalchemy_url(pg_admin))
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        for role, password in passwords.items():
            conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
        conn.execute(f'CREATE DATABASE "{control}" OWNER "{owner}"')
        conn.execute(f'CREATE DATABASE "{tenant}"')
    admin_url = server.set(drivername="postgresql", database=tenant).render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v integer)")
        conn.execute("INSERT INTO t VALUES (1), (2), (3)")
        conn.execute(f'GRANT SELECT ON t TO "{reader}"')

    def url(role: str, database: str) -> str:
        return (f"postgresql://{role}:{quote(passwords[role], safe='')}@{server.host}:"
                f"{server.port or 5432}/{database}")

    try:
        yield {"database_url": url(owner, control), "datasource": url(reader, tenant),
               "owner": passwords[owner], "reader": passwords[reader]}
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            for database in (control, tenant):
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in passwords:
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_percent_encoded_passwords_reach_the_database(
        roles_with_hard_passwords: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    urls = roles_with_hard_passwords
    assert "%40" in urls["database_url"] and "%20" in urls["datasource"]
    monkeypatch.setenv("DATABASE_URL", urls["database_url"])
    get_settings.cache_clear()
    report = tmp_path / "values.yaml"
    report.write_text(yaml.safe_dump({"slug": "values", "title": "Values",
                                      "csv": {"sql": "SELECT v FROM t ORDER BY v"}}))
    runner = CliRunner()

    def herald(*args: object):
        get_settings.cache_clear()
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        return result

    try:
        # Given herald's own database and a tenant's, each reached as a role whose password
        # holds a space, an @ (and a quote), percent-encoded in the URL
        herald("db", "upgrade")
        herald("tenant", "add", "acme", "--name", "Acme", "--datasource", urls["datasource"])
        herald("report", "add", "--tenant", "acme", report)
        # When a report is exported
        herald("export", "--tenant", "acme", "--report", "values", "--format", "csv",
               "-o", tmp_path / "values.csv")
        # Then the tenant's rows come back, read with the decoded passwords
        rows = list(csv.reader(io.StringIO((tmp_path / "values.csv").read_text())))
        assert rows == [["v"], ["1"], ["2"], ["3"]]
        with open_source(urls["datasource"], 5) as source:
            assert source.conn.info.password == urls["reader"]
        with get_engine().connect() as conn:
            assert conn.connection.driver_connection.info.password == urls["owner"]
    finally:
        get_engine().dispose()
        get_settings.cache_clear()
