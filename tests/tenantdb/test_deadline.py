"""One deadline for a whole use of a tenant's database, which herald keeps itself: a statement
that switches the server's timeout off does not lift it for the next statement, every statement
of a use shares the time, herald's own timer cuts a query the server would let run, and a cancel
that races the end of a query never reaches the next use of the pooled connection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from models.errors import QueryError
from tenantdb import open_source, postgres
from tests.tenantdb.conftest import Source

TIMED_OUT = "ran longer than the {:g} s statement timeout"
SWITCH_OFF = "SELECT set_config('statement_timeout', '0', true) AS value"


def deadline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "herald-query-deadline"]


def test_a_statement_cannot_switch_the_timeout_off_for_the_next(pg_source: Source) -> None:
    # Given a use whose first statement switches the server's statement timeout off
    started = time.monotonic()
    with pytest.raises(QueryError, match=f"^kpi 2 {TIMED_OUT.format(2)}"):
        with open_source(pg_source.url, 2) as source:
            assert source.query(SWITCH_OFF, {}, cap=1, where="kpi 1").rows == [["0"]]
            # When the next statement sleeps for far longer
            source.query("SELECT pg_sleep(100)::text AS value", {}, cap=1, where="kpi 2")
    # Then it ends at the deadline, not at the sleep's end
    assert time.monotonic() - started < 3


def test_herald_cuts_a_query_the_server_would_let_run(pg_source: Source,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the server's own limits switched off ('0': no statement timeout)
    monkeypatch.setattr(postgres, "_whole_seconds", lambda seconds: "0")
    started = time.monotonic()
    with pytest.raises(QueryError, match=f"^sections\\[0\\] {TIMED_OUT.format(1)}"):
        with open_source(pg_source.url, 1) as source:
            source.query("SELECT pg_sleep(30)::text AS value", {}, cap=1, where="sections[0]")
    # Then herald's timer cancelled the backend at the deadline
    assert time.monotonic() - started < 2


def test_the_statements_of_a_use_share_its_time(source: Source) -> None:
    # Given a use whose first query leaves it no time
    with open_source(source.url, 0.5) as tenant:
        assert tenant.query("SELECT 1 AS n", {}, cap=1, where="sections[0]").rows == [[1]]
        time.sleep(0.6)
        # Then its next query is refused before it runs, with the timeout's sentence
        with pytest.raises(QueryError, match=f"^sections\\[1\\] {TIMED_OUT.format(0.5)}"):
            tenant.query("SELECT 2 AS n", {}, cap=1, where="sections[1]")
    # and the next use has its own time
    with open_source(source.url, 0.5) as tenant:
        assert tenant.query("SELECT 3 AS n", {}, cap=1, where="sections[0]").rows == [[3]]


def test_a_cancel_racing_the_end_of_a_query_leaves_the_pool_sound(pg_source: Source) -> None:
    # Queries that end about when the timer fires: some finish, some are cancelled, and a
    # cancel may reach the server after its query is done.
    outcomes = set()
    for i in range(16):
        try:
            with open_source(pg_source.url, 0.3) as source:
                source.query(f"SELECT pg_sleep({0.26 + 0.01 * (i % 8):.2f})::text AS value", {},
                             cap=1, where="race")
            outcomes.add("finished")
        except QueryError as exc:
            assert TIMED_OUT.format(0.3) in str(exc)
            outcomes.add("cut")
        # The next use of the pool is never hit by a cancel meant for the one before
        with open_source(pg_source.url, 5) as source:
            result = source.query("SELECT current_setting('statement_timeout') AS timeout, "
                                  "pg_sleep(0.05)::text AS pause", {}, cap=1, where="next")
        assert result.rows == [["5s", ""]]
    assert "cut" in outcomes
    # and no timer outlives its use
    assert deadline_threads() == []


ESCAPE = {"slug": "escape", "title": "Escape", "sections": [
    {"kind": "kpi", "title": "Off", "sql": SWITCH_OFF},
    {"kind": "kpi", "title": "Sleep", "sql": "SELECT pg_sleep(100)::text AS value"}]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_herald_export_of_the_two_section_escape_ends_at_the_deadline(
        cli, pg_source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a report whose first section switches the timeout off and whose second sleeps 100 s
    monkeypatch.setenv("HERALD_QUERY_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("RENDER_PDF_STUB", "true")
    report = tmp_path / "escape.yaml"
    report.write_text(yaml.safe_dump(ESCAPE))
    for args in (["tenant", "add", "acme", "--name", "Acme", "--datasource", pg_source.url],
                 ["report", "add", "--tenant", "acme", report]):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr

    # When it is exported
    started = time.monotonic()
    result = cli("export", "--tenant", "acme", "--report", "escape", "--format", "pdf",
                 "-o", tmp_path / "escape.pdf")

    # Then the export ends within the 2 s deadline (plus a second), saying which limit cut it
    assert time.monotonic() - started < 3
    assert result.exit_code == 1
    assert result.stderr == ('error: section 2 ("Sleep") ran longer than the 2 s statement timeout; '
                             'make it faster or raise HERALD_QUERY_TIMEOUT_SECONDS.\n')
    assert not (tmp_path / "escape.pdf").exists()
