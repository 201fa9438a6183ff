"""Secrets are masked where errors are stored: every write path to an error column, and
whole runs failing with a data-source password and the SMTP password in their errors.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from jobs.tick import tick
from models.base import Channel
from models.db import get_engine, session_scope, utcnow
from models.redact import remember_secret
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import get_settings
from pipeline.deliveries import Stamp, Stamper, fail_pending
from pipeline.in_process import run_in_process
from pipeline.leases import note_error, release_run
from pipeline.lifecycle import create_manual_run
from pipeline.query import end_by_id
from tests.delivery.conftest import SENDER, make_schedule
from tests.delivery.servers import MailSink
from tests.jobs.helpers import add_schedules, make_tenant


def stored(url: str, table: str, column: str, row_id: int) -> str | None:
    """The column as the database holds it, read with plain SQL."""
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(f"SELECT {column} FROM {table} WHERE id = :id"),
                            {"id": row_id}).scalar_one()


def every_error(url: str) -> list[str]:
    """Every error column of every row."""
    with get_engine(url).connect() as conn:
        return [text for query in ("SELECT error FROM report_run", "SELECT error FROM delivery",
                                   "SELECT last_error FROM schedule")
                for text in conn.execute(sa.text(query)).scalars() if text is not None]


@dataclass
class Rows:
    url: str
    schedule_id: int
    run_id: int
    delivery_ids: list[int]


@pytest.fixture
def rows(db_url: str) -> Rows:
    """A schedule, a running run of it, and two pending e-mail deliveries."""
    tenant_id, report_id = make_tenant(db_url)
    [schedule_id] = add_schedules(db_url, tenant_id, report_id, 1, cron="0 9 * * *", next_run_at=None)
    now = utcnow()
    with session_scope(db_url) as session:
        run = ReportRun(schedule_id=schedule_id, tenant_id=tenant_id, scheduled_for=now,
                        status=RunStatus.RUNNING, started_at=now, lease_expires_at=now + timedelta(minutes=5))
        session.add(run)
        session.flush()
        deliveries = [Delivery(run_id=run.id, channel=Channel.EMAIL, recipient=f"{name}@acme.example")
                      for name in ("anna", "boris")]
        session.add_all(deliveries)
        session.flush()
        return Rows(db_url, schedule_id, run.id, [d.id for d in deliveries])


def write_run_attribute(rows: Rows, text: str) -> tuple[str, str, int]:
    with session_scope() as session:
        session.get(ReportRun, rows.run_id).error = text
    return "report_run", "error", rows.run_id


def write_schedule_attribute(rows: Rows, text: str) -> tuple[str, str, int]:
    with session_scope() as session:
        session.get(Schedule, rows.schedule_id).last_error = text
    return "schedule", "last_error", rows.schedule_id


def write_delivery_attribute(rows: Rows, text: str) -> tuple[str, str, int]:
    with session_scope() as session:
        session.get(Delivery, rows.delivery_ids[0]).error = text
    return "delivery", "error", rows.delivery_ids[0]


def write_release_run(rows: Rows, text: str) -> tuple[str, str, int]:
    release_run(rows.run_id, utcnow(), text)
    return "report_run", "error", rows.run_id


def write_note_error(rows: Rows, text: str) -> tuple[str, str, int]:
    note_error(rows.run_id, text)
    return "report_run", "error", rows.run_id


def write_end_run(rows: Rows, text: str) -> tuple[str, str, int]:
    end_by_id(rows.run_id, RunStatus.FAILED, text)
    assert "***" in stored(rows.url, "schedule", "last_error", rows.schedule_id)
    return "report_run", "error", rows.run_id


def write_stamps(rows: Rows, text: str) -> tuple[str, str, int]:
    """The stamper's moves: two outcomes in one batch, the error a bound value."""
    stamper = Stamper()
    try:
        for delivery_id in rows.delivery_ids:
            stamper.put(Stamp(delivery_id, DeliveryStatus.FAILED, None, text, utcnow(), 5))
        stamper.flush()
    finally:
        stamper.close()
    assert "***" in stored(rows.url, "delivery", "error", rows.delivery_ids[0])
    return "delivery", "error", rows.delivery_ids[1]


def write_fail_pending(rows: Rows, text: str) -> tuple[str, str, int]:
    fail_pending(rows.run_id, Channel.EMAIL, text)
    return "delivery", "error", rows.delivery_ids[1]


def write_tick_flag(rows: Rows, text: str) -> tuple[str, str, int]:
    """The tick's executemany UPDATE of schedules it cannot plan (`last_error` a `bindparam`)."""
    with session_scope() as session:
        schedule = session.get(Schedule, rows.schedule_id)
        schedule.cron, schedule.next_run_at = text[:100], utcnow() - timedelta(minutes=1)
    assert tick(utcnow(), lambda runs: None).flagged == 1
    return "schedule", "last_error", rows.schedule_id


WRITES: dict[str, Callable[[Rows, str], tuple[str, str, int]]] = {
    "ReportRun.error": write_run_attribute,
    "Schedule.last_error": write_schedule_attribute,
    "Delivery.error": write_delivery_attribute,
    "leases.release_run": write_release_run,
    "leases.note_error": write_note_error,
    "lifecycle.end_run": write_end_run,
    "Stamper (a move per stamp)": write_stamps,
    "deliveries.fail_pending": write_fail_pending,
    "tick (flagged schedule)": write_tick_flag,
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_write_path_stores_errors_without_the_secret(
    rows: Rows, write: Callable[[Rows, str], tuple[str, str, int]]
) -> None:
    # Given a secret herald was told about (as the data-source boundary does)
    secret = f"tenant-pw-{uuid.uuid4().hex[:12]}"
    remember_secret(secret)

    # When an error quoting it is written through this path
    table, column, row_id = write(rows, f"bad {secret} here")

    # Then the database holds the error, with the secret masked
    raw = stored(rows.url, table, column, row_id)
    assert "***" in raw and secret not in raw
    assert not any(secret in text for text in every_error(rows.url))


FAILING_REPORT = {
    "slug": "leaky", "title": "Leaky", "params": {},
    "sections": [{"kind": "kpi", "title": "Value", "sql": "SELECT CAST(secret AS integer) AS value FROM leaks"}],
    "csv": {"sql": "SELECT 1 AS value"},
}
WORKING_REPORT = {
    "slug": "views", "title": "Views", "params": {},
    "sections": [{"kind": "kpi", "title": "Total views", "sql": "SELECT sum(views) AS value FROM videos"}],
    "csv": {"sql": "SELECT title, views FROM videos ORDER BY title"},
}
SMTP_PASSWORD = f"smtp-pw-{uuid.uuid4().hex[:12]}"
RECIPIENT = "anna@acme.example"


@pytest.fixture
def refusing_mail_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailSink]:
    """aiosmtpd answering RCPT with the SMTP password in its 550; herald has the password
    but no user, so it never logs in."""
    sink = MailSink()
    sink.refuse[RECIPIENT] = (550, f"5.1.1 {SMTP_PASSWORD} unknown")
    for name, value in {"MAIL_SMTP_HOST": "127.0.0.1", "MAIL_SMTP_PORT": str(sink.port),
                        "MAIL_FROM": SENDER, "MAIL_SMTP_PASS": SMTP_PASSWORD}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MAIL_SMTP_USER", raising=False)
    get_settings.cache_clear()
    sink.start()
    yield sink
    sink.stop()
    get_settings.cache_clear()


def manual_run(schedule_id: int) -> int:
    with session_scope() as session:
        return create_manual_run(session, session.get(Schedule, schedule_id), utcnow(), "cli").id


def test_runs_failing_with_the_datasource_and_smtp_passwords_store_neither(
    db_url: str, create_tenant_database, refusing_mail_server: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="herald")
    tenant_db = create_tenant_database()
    with psycopg.connect(tenant_db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE videos (title text, views bigint)")
        conn.execute("INSERT INTO videos VALUES ('Launch', 1200), ('Recap', 300)")
        # A row holding the password: saving the report reads no rows, running it does.
        conn.execute("CREATE TABLE leaks (secret text)")
        conn.execute("INSERT INTO leaks VALUES (%s)", [tenant_db.password])
    # (herald learns the password itself: the data-source boundary remembers it on opening)

    # Given a report whose query makes PostgreSQL quote the data source's password back
    leaky = make_schedule(tenant_db.url, emails=[RECIPIENT], formats=["pdf"], report=FAILING_REPORT,
                          slug="leaky")
    # When it runs, it fails in the query stage
    query_failed = manual_run(leaky)
    run_in_process(query_failed)

    # Given a working report whose one recipient the SMTP server refuses, naming its password
    refused = make_schedule(tenant_db.url, emails=[RECIPIENT], formats=["csv"], report=WORKING_REPORT,
                            slug="refused")
    delivery_failed = manual_run(refused)
    run_in_process(delivery_failed)

    # Then both runs failed, and said why
    with session_scope() as session:
        first, second = session.get(ReportRun, query_failed), session.get(ReportRun, delivery_failed)
        assert (first.status, second.status) == (RunStatus.FAILED, RunStatus.FAILED)
    assert refusing_mail_server.rcpt_attempts[RECIPIENT] == 1
    assert "invalid input syntax for type integer" in stored(db_url, "report_run", "error", query_failed)
    assert "***" in stored(db_url, "report_run", "error", query_failed)
    assert "550 5.1.1 *** unknown" in stored(db_url, "report_run", "error", delivery_failed)
    for schedule_id in (leaky, refused):
        assert "***" in stored(db_url, "schedule", "last_error", schedule_id)
    errors = every_error(db_url)
    assert any("550 5.1.1 *** unknown" in text for text in errors)  # the delivery's own error
    # ... and no error column, nor any of herald's log lines, holds either password
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("herald")]
    for text in errors + logged:
        assert tenant_db.password not in text and SMTP_PASSWORD not in text
