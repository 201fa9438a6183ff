"""A daily report that filters on :period_start/:period_end, run for a slot the day after New
York falls back, three weeks late: it reports that 25-hour day, in its KPI, its CSV, its
subject ({period}) and its summary, exactly as it would have on time."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from jobs.tick import tick
from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.periods import period_for
from models.schedules import Schedule
from models.tenancy import Membership, Role, User
from pipeline.in_process import run_in_process
from pipeline.query import query_sections, with_period
from services import documents
from services.access import load_viewer
from tests.delivery.conftest import csv_rows
from tests.delivery.servers import MailSink
from tests.delivery.test_mail_parsed import parsed, parts, stored
from tests.seeding import add_schedule, add_tenant, save_report

READER = "anna@acme.example"
SLOT = datetime(2026, 11, 2, 14, tzinfo=UTC)  # 09:00 EST, the Monday after the fall-back
IN_PERIOD = "published_at >= :period_start AND published_at < :period_end"
REPORT = {
    "slug": "daily-views", "title": "Daily views",
    "sections": [{"kind": "kpi", "title": "Views", "sql": f"SELECT sum(views) AS value FROM videos WHERE {IN_PERIOD}"}],
    "csv": {"sql": f"SELECT title, views FROM videos WHERE {IN_PERIOD} ORDER BY published_at"},
}
# (title, views, published_at UTC): 1 November in New York runs 04:00Z to 05:00Z the next day
VIDEOS = [
    ("Halloween night", 1, datetime(2026, 11, 1, 3, 59)),   # 31 Oct 23:59 EDT: before
    ("First light", 10, datetime(2026, 11, 1, 4, 0)),       # 1 Nov 00:00 EDT: the first instant
    ("Extra hour", 100, datetime(2026, 11, 1, 6, 30)),      # the second 01:30 (EST)
    ("Late show", 1000, datetime(2026, 11, 2, 4, 30)),      # 1 Nov 23:30 EST: the 25th hour
    ("Monday", 10000, datetime(2026, 11, 2, 5, 0)),         # 2 Nov 00:00 EST: after
]


@pytest.fixture
def tenant_db(create_tenant_database) -> str:
    db = create_tenant_database()
    with psycopg.connect(db.admin_url.replace("+psycopg", "")) as conn:
        conn.execute("CREATE TABLE videos (title text, views bigint, published_at timestamptz)")
        for title, views, at in VIDEOS:
            conn.execute("INSERT INTO videos VALUES (%s, %s, %s)", (title, views, at.replace(tzinfo=UTC)))
    return db.url


def schedule_due_at_slot(datasource: str) -> int:
    with session_scope() as session:
        tenant = add_tenant(session, "acme", "Acme Corp", "Europe/Berlin", datasource)
        save_report(session, tenant, parse_definition(REPORT))
        schedule = add_schedule(session, tenant, REPORT["slug"], now=SLOT - timedelta(days=1),
                                cadence="daily", at="09:00", timezone="America/New_York",
                                formats=["pdf", "csv"], emails=[READER],
                                subject="{title} for {period} ({date})")
        assert session.get(Schedule, schedule.id).next_run_at == SLOT
        return schedule.id


def test_a_late_run_reports_its_slots_period_in_every_part(
    db_url: str, tenant_db: str, mail_sink: MailSink
) -> None:
    # Given a daily New York schedule whose 2 November slot was claimed on time
    schedule_due_at_slot(tenant_db)
    queued = []
    tick(SLOT + timedelta(minutes=1), queued.extend)
    [(run_id, _)] = queued
    assert utcnow() - SLOT > timedelta(days=1)  # the run happens well after its slot

    # When its pipeline runs late
    run_in_process(run_id)

    # Then the mail covers 1 November, all 25 of its hours, and nothing either side
    [mail] = mail_sink.to(READER)
    message = parsed(mail)
    assert message["Subject"] == "Daily views for 1 Nov 2026 (2026-11-02)"
    plain, html, documents = parts(message)
    lines = plain.splitlines()
    assert "Period: 1 Nov 2026" in lines and "Views: 1,110" in lines
    assert "1 Nov 2026" in html and "1,110" in html
    csv_name = next(name for name in documents if name.endswith(".csv"))
    assert csv_rows(documents[csv_name]) == [["title", "views"], ["First light", "10"],
                                             ["Extra hour", "100"], ["Late show", "1000"]]
    # and the PDF's header names the period
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", "-", "-"], input=stored(run_id, "pdf"),
                          capture_output=True, check=True, timeout=60).stdout.decode()
    assert "period: 1 Nov 2026" in text and "1,110" in text


def test_export_takes_a_period_and_refuses_one_that_ends_before_it_starts(
    db_url: str, tenant_db: str, tmp_path
) -> None:
    schedule_due_at_slot(tenant_db)
    target = tmp_path / "views.csv"
    export = ["herald", "export", "--tenant", "acme", "--report", "daily-views", "--format", "csv",
              "-o", str(target)]

    # the New York day, given in the tenant's timezone (Berlin): 1 Nov 05:00 to 2 Nov 06:00
    done = subprocess.run([*export, "--period-start", "2026-11-01T00:00-04:00",
                           "--period-end", "2026-11-02T00:00-05:00"], capture_output=True, text=True,
                          env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in csv_rows(target.read_bytes())[1:]] == ["First light", "Extra hour", "Late show"]

    refused = subprocess.run([*export, "--period-start", "2026-11-02", "--period-end", "2026-11-01"],
                             capture_output=True, text=True, env=os.environ, timeout=120)
    assert refused.returncode != 0
    assert "give a --period-end later than --period-start" in refused.stderr + refused.stdout


def test_a_sqlite_source_gets_the_period_as_iso_text_that_datetime_reads(tmp_path) -> None:
    # Given a SQLite source storing UTC text, and the same New York day
    path = tmp_path / "videos.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE videos (title text, views int, published_at text)")
        conn.executemany("INSERT INTO videos VALUES (?, ?, ?)",
                         [(t, v, at.strftime("%Y-%m-%d %H:%M:%S")) for t, v, at in VIDEOS])
    definition = parse_definition({**REPORT, "sections": [{
        "kind": "kpi", "title": "Views", "sql": "SELECT sum(views) AS value FROM videos WHERE "
        "published_at >= datetime(:period_start) AND published_at < datetime(:period_end)"}]})
    period = period_for(SLOT, "America/New_York", cadence="daily", cron_expr="0 9 * * *", kind=None)

    [kpi] = query_sections(f"sqlite:///{path}", definition, with_period({}, period))

    assert kpi["rows"] == [[1110]]


def test_the_admin_preview_shows_the_latest_complete_period_as_of_now(session, tenant_db: str) -> None:
    # Given a New York tenant's report and a viewer, at noon on 2 November
    tenant = add_tenant(session, "acme", "Acme Corp", "America/New_York", tenant_db)
    report, _ = save_report(session, tenant, parse_definition(REPORT))
    user = User(email="viewer@acme.example", password_hash="x")
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=Role.VIEWER))
    session.commit()

    preview = documents.preview_report(session, load_viewer(session, user.id), report.id,
                                     now=datetime(2026, 11, 2, 17, tzinfo=UTC), images=False)

    # then it shows yesterday in the tenant's timezone: the whole 25-hour 1 November
    assert [row[0] for row in preview.csv_rows] == ["First light", "Extra hour", "Late show"]
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", "-", "-"], input=preview.pdf,
                          capture_output=True, check=True, timeout=60).stdout.decode()
    assert "period: 1 Nov 2026" in text and "1,110" in text
