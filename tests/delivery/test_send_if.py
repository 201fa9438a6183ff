"""Conditional sends: a report whose `send_if` is not met ends SKIPPED with its reason, visible
in `herald runs --json`, and the SMTP sink receives nothing; once it is met, it sends.

The tenant database is real PostgreSQL read through a SELECT-only role; the period binds
yesterday (New York), so rows outside it do not count.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlmodel import select

from jobs.tick import tick
from models.db import session_scope
from models.definition import parse_definition
from models.errors import InvalidInput
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from models.tenancy import Role
from pipeline.in_process import run_in_process
from services.access import Viewer
from services.runs import send_test
from tests.delivery.servers import MailSink
from tests.seeding import add_schedule, add_tenant, save_report

READER = "oncall@acme.example"
SLOT = datetime(2026, 11, 24, 14, tzinfo=UTC)          # 09:00 in New York
YESTERDAY = datetime(2026, 11, 23, 18, tzinfo=UTC)      # inside the period (23 Nov, New York)
LAST_WEEK = datetime(2026, 11, 16, 18, tzinfo=UTC)      # outside it
IN_PERIOD = "at >= :period_start AND at < :period_end"
SIGNUPS = {
    "slug": "signups", "title": "New sign-ups",
    "sections": [{"kind": "table", "title": "Sign-ups", "sql": f"SELECT email FROM signups WHERE {IN_PERIOD}"}],
    "csv": {"sql": f"SELECT email, at FROM signups WHERE {IN_PERIOD} ORDER BY at"},
    "send_if": "rows",
}
ERRORS = {
    "slug": "error-alert", "title": "Too many errors",
    "sections": [{"kind": "kpi", "title": "Errors", "sql": f"SELECT count(*) AS value FROM errors WHERE {IN_PERIOD}"}],
    "send_if": {"sql": f"SELECT count(*) > 2 AS send, count(*) AS errors FROM errors WHERE {IN_PERIOD}"},
}


@pytest.fixture
def tenant_db(create_tenant_database):
    db = create_tenant_database()
    with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE signups (email text, at timestamptz)")
        conn.execute("CREATE TABLE errors (message text, at timestamptz)")
        conn.execute("INSERT INTO signups VALUES ('old@acme.example', %s)", (LAST_WEEK,))
        conn.execute("INSERT INTO errors VALUES ('timeout', %s), ('old', %s)", (YESTERDAY, LAST_WEEK))
    return db


def schedule(datasource: str, report: dict, **extra) -> int:
    with session_scope() as session:
        tenant = add_tenant(session, "acme", "Acme Corp", "America/New_York", datasource)
        save_report(session, tenant, parse_definition(report))
        return add_schedule(session, tenant, report["slug"], now=SLOT - timedelta(hours=1),
                            cadence="daily", at="09:00", emails=[READER],
                            formats=["pdf", "csv"] if "csv" in report else ["pdf"],
                            **extra).id


def run_slot(at: datetime = SLOT) -> int:
    queued = []
    tick(at + timedelta(minutes=1), queued.extend)
    [(run_id, _)] = queued
    run_in_process(run_id)
    return run_id


def runs_json(schedule_id: int) -> list[dict]:
    done = subprocess.run(["herald", "runs", "--schedule", str(schedule_id), "--json"],
                          capture_output=True, text=True, env=os.environ, timeout=120, check=True)
    return json.loads(done.stdout)


def test_an_empty_result_skips_the_run_with_its_reason_and_sends_nothing(
    db_url: str, tenant_db, mail_sink: MailSink
) -> None:
    schedule_id = schedule(tenant_db.url, SIGNUPS)

    run_id = run_slot()

    [run] = runs_json(schedule_id)
    assert (run["id"], run["status"], run["error"]) == (run_id, "skipped", None)
    assert run["reason"] == ("csv.sql returned no rows, and this report is sent only when it does "
                             "(send_if: rows).")
    assert run["deliveries"] == []
    assert mail_sink.mails == []


def test_a_false_alert_is_skipped_and_a_true_one_is_sent(
    db_url: str, tenant_db, mail_sink: MailSink
) -> None:
    schedule_id = schedule(tenant_db.url, ERRORS)

    run_slot()  # one error yesterday: below the threshold
    [skipped] = runs_json(schedule_id)
    assert skipped["status"] == "skipped"
    assert skipped["reason"] == ("The alert condition was not met: send_if.sql returned send = false "
                                 "(errors = 1).")
    assert mail_sink.mails == []

    # Three errors on the next day: the alert fires, and the mail says how many.
    with psycopg.connect(tenant_db.admin_url.replace("+psycopg", "")) as conn:
        for hour in (1, 2, 3):
            conn.execute("INSERT INTO errors VALUES ('timeout', %s)", (YESTERDAY + timedelta(days=1, hours=hour),))
    run_slot(SLOT + timedelta(days=1))
    newest = runs_json(schedule_id)[0]
    assert (newest["status"], newest["reason"]) == ("success", None)
    [mail] = mail_sink.to(READER)
    assert "Errors: 3" in mail.text().splitlines()


def test_a_named_section_decides_and_a_test_send_ignores_the_condition(
    db_url: str, tenant_db, mail_sink: MailSink
) -> None:
    report = {**SIGNUPS, "slug": "by-section", "send_if": {"rows": "Sign-ups"}}
    schedule_id = schedule(tenant_db.url, report)
    run_slot()
    [run] = runs_json(schedule_id)
    assert run["reason"] == ("Section 'Sign-ups' returned no rows, and this report is sent only when it "
                             "does (send_if: rows: Sign-ups).")

    with session_scope() as session:
        editor = Viewer(user_id=0, email="ed@acme.example", roles={run["tenant_id"]: Role.EDITOR})
        sent = send_test(session, editor, schedule_id, now=SLOT + timedelta(minutes=5), emails=["ed@acme.example"],
                         dispatch=lambda runs: None)
    run_in_process(sent.run_id)
    assert [m.rcpt_tos for m in mail_sink.mails] == [["ed@acme.example"]]


def test_a_schedule_may_send_always_whatever_the_report_says(
    db_url: str, tenant_db, mail_sink: MailSink
) -> None:
    schedule_id = schedule(tenant_db.url, SIGNUPS, send_if="always")
    run_slot()
    [run] = runs_json(schedule_id)
    assert run["status"] == "success"
    [mail] = mail_sink.to(READER)
    assert mail.attachments()  # the empty CSV still goes out, with its header


def test_an_alert_without_a_send_column_fails_with_one_sentence(db_url: str, tenant_db, mail_sink) -> None:
    report = {**ERRORS, "send_if": {"sql": "SELECT count(*) AS errors FROM errors"}}
    with session_scope() as session:
        tenant = add_tenant(session, "acme", "Acme Corp", "America/New_York", tenant_db.url)
        with pytest.raises(InvalidInput, match=r"send_if.sql has no column 'send' \(it returns errors\); "
                                               r"write the alert condition as SELECT"):
            save_report(session, tenant, parse_definition(report))


def test_a_schedule_asking_for_rows_of_a_report_without_csv_is_refused(db_url: str, tenant_db) -> None:
    with session_scope() as session:
        tenant = add_tenant(session, "acme", "Acme Corp", "America/New_York", tenant_db.url)
        save_report(session, tenant, parse_definition(ERRORS))
        with pytest.raises(InvalidInput, match="send_if rows waits for rows from the CSV query, and report "
                                               "'error-alert' has none"):
            add_schedule(session, tenant, "error-alert", now=SLOT, cadence="daily", at="09:00",
                         emails=[READER], send_if="rows")


def test_skipped_runs_do_not_count_towards_auto_pause(db_url: str, tenant_db, mail_sink) -> None:
    schedule_id = schedule(tenant_db.url, SIGNUPS)
    for day in range(4):
        run_slot(SLOT + timedelta(days=day))
    with session_scope() as session:
        statuses = [r.status for r in session.exec(select(ReportRun).where(ReportRun.schedule_id == schedule_id))]
        assert session.get(Schedule, schedule_id).active
    assert statuses == [RunStatus.SKIPPED] * 4
