"""The history page's data functions: scoping per role, filters and keyset pages, outcomes per
day counted in SQL, a run's story, and resending failed deliveries through a real SMTP server.
On SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from models.artifacts import store_artifact
from models.audit import ChangeEvent
from models.db import utcnow
from models.definition import parse_definition
from models.errors import InvalidInput, NotFound, PermissionDenied
from models.runs import Delivery, ReportRun
from models.schedules import Schedule
from models.tenancy import Membership, Role, User
from services import history, reports, runs, schedules, tenants
from services.access import OPERATOR, Viewer, load_viewer
from services.history_records import RunFilters
from services.runs import send_now

# The delivery tests' fixtures: a real SMTP server (aiosmtpd) and a SQLite tenant data source.
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process
from tests.seeding import add_schedule

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
REPORT = {"slug": "views", "title": "Views", "params": {},
          "sections": [{"kind": "kpi", "title": "Total", "sql": "SELECT 1 AS value"}]}
OTHER = {**REPORT, "slug": "sales", "title": "Sales"}
STATUSES = ("success", "partial", "failed", "missed")


def add_member(session: Session, tenant_id: int, role: Role, email: str) -> Viewer:
    user = User(email=email, password_hash="x")
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role))
    session.commit()
    return load_viewer(session, user.id)


@pytest.fixture
def world(session: Session) -> dict[str, Any]:
    """acme (Europe/Berlin; two schedules on two reports; 30 runs over the March DST change,
    ties on the slot included) and beta (one run), with a viewer and an editor of acme."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin")
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    for tenant in (acme, beta):
        reports.save_report(session, OPERATOR, tenant, parse_definition(REPORT))
    reports.save_report(session, OPERATOR, acme, parse_definition(OTHER))
    views = add_schedule(session, acme, "views", now=NOW, cron_expr="0 9 * * *",
                                    emails=["boss@acme.example"])
    sales = add_schedule(session, acme, "sales", now=NOW, cron_expr="0 9 * * *",
                                    emails=["boss@acme.example"])
    theirs = add_schedule(session, beta, "views", now=NOW, cron_expr="0 9 * * *",
                                     emails=["b@beta.example"])
    start = datetime(2026, 3, 27, 22, 30, tzinfo=UTC)   # 23:30 in Berlin: near midnight, before DST
    runs = []
    for i in range(30):
        slot = start + timedelta(hours=7 * (i // 2))    # two runs per slot: keyset ties on the slot
        status = STATUSES[i % 4]
        run = ReportRun(schedule_id=(views, sales)[i % 2].id, tenant_id=acme.id, scheduled_for=slot,
                        status=status, manual=i % 3 == 1, test=i % 6 == 4, attempts=1,
                        error=f"line one {i}\nline two" if status != "success" else None)
        session.add(run)
        session.flush()
        channel = "telegram" if i % 5 == 0 else "email"
        address = "-100777" if channel == "telegram" else f"Person{i % 4}@Acme.example"
        outcome = {"success": "sent", "partial": "failed", "failed": "failed", "missed": "pending"}[status]
        session.add(Delivery(run_id=run.id, channel=channel, recipient=address, status=outcome))
        if status == "partial":
            session.add(Delivery(run_id=run.id, channel="email", recipient="boss@acme.example",
                                 status="sent"))
        runs.append(run.id)
    theirs_run = ReportRun(schedule_id=theirs.id, tenant_id=beta.id, scheduled_for=start,
                           status="partial")
    session.add(theirs_run)
    session.commit()
    return {"acme": acme.id, "beta": beta.id, "views": views.id, "sales": sales.id, "runs": runs,
            "theirs": theirs_run.id,
            "viewer": add_member(session, acme.id, Role.VIEWER, "vera@acme.example"),
            "editor": add_member(session, acme.id, Role.EDITOR, "ed@acme.example")}


def all_pages(session: Session, viewer: Viewer, tenant_id: int, filters: RunFilters,
              limit: int) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = history.runs_page(session, viewer, tenant_id, filters, after=cursor, limit=limit)
        pages.append([r.id for r in page.rows])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def expected(session: Session, tenant_id: int, keep) -> list[int]:
    """The same filter done in Python over every run, newest first."""
    session.expire_all()
    runs = session.exec(select(ReportRun).where(ReportRun.tenant_id == tenant_id)).all()
    deliveries = session.exec(select(Delivery)).all()
    chosen = [r for r in runs if keep(r, [d for d in deliveries if d.run_id == r.id])]
    return [r.id for r in sorted(chosen, key=lambda r: (r.scheduled_for, r.id), reverse=True)]


def test_roles_scope_reads_and_resend(session: Session, world: dict[str, Any]) -> None:
    viewer, editor = world["viewer"], world["editor"]
    page = history.runs_page(session, viewer, world["acme"], RunFilters())
    assert len(page.rows) == 30 and page.next_cursor is None
    run_id = world["runs"][1]   # partial
    assert history.run_story(session, viewer, run_id).id == run_id
    with pytest.raises(PermissionDenied):
        runs.resend_failed(session, viewer, run_id, now=NOW, dispatch=lambda runs: None)
    for who in (viewer, editor):
        with pytest.raises(NotFound, match=f"^No run {world['theirs']}.$"):
            history.run_story(session, who, world["theirs"])
        with pytest.raises(NotFound, match=f"^No run {world['theirs']}.$"):
            runs.resend_failed(session, who, world["theirs"], now=NOW, dispatch=lambda runs: None)
        with pytest.raises(NotFound):
            history.runs_page(session, who, world["beta"], RunFilters())
        with pytest.raises(NotFound):
            history.outcomes_per_day(session, who, world["beta"], RunFilters())


def test_keyset_pages_hold_every_run_once_in_order(session: Session, world: dict[str, Any]) -> None:
    pages = all_pages(session, world["viewer"], world["acme"], RunFilters(), limit=12)
    assert [len(p) for p in pages] == [12, 12, 6]
    flat = [i for p in pages for i in p]
    assert flat == expected(session, world["acme"], lambda r, ds: True)
    assert len(set(flat)) == 30
    # a page of exactly the remaining rows says there is no next one
    assert [len(p) for p in all_pages(session, world["viewer"], world["acme"], RunFilters(), 10)] \
        == [10, 10, 10]
    row = history.runs_page(session, world["viewer"], world["acme"],
                            RunFilters(status="partial"), limit=1).rows[0]
    newest_partial = expected(session, world["acme"], lambda r, ds: r.status == "partial")[0]
    assert (row.id, row.report_title, row.sent, row.failed, row.pending) == (
        newest_partial, "Sales" if row.schedule_id == world["sales"] else "Views", 1, 1, 0)
    assert row.error == f"line one {world['runs'].index(row.id)}"   # the first line only


def test_filters_match_a_python_filter(session: Session, world: dict[str, Any]) -> None:
    start, end = datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC)
    cases = [
        (RunFilters(schedule_id=world["views"]), lambda r, ds: r.schedule_id == world["views"]),
        (RunFilters(report="sales"), lambda r, ds: r.schedule_id == world["sales"]),
        (RunFilters(status="failed"), lambda r, ds: r.status == "failed"),
        (RunFilters(channel="telegram"), lambda r, ds: any(d.channel == "telegram" for d in ds)),
        (RunFilters(recipient="person1@ACME"),
         lambda r, ds: any("person1@acme" in d.recipient.lower() for d in ds)),
        (RunFilters(recipient="50%"), lambda r, ds: False),   # % is a character, not a wildcard
        (RunFilters(start=start, end=end), lambda r, ds: start <= r.scheduled_for < end),
        (RunFilters(kind="scheduled"), lambda r, ds: not r.manual),
        (RunFilters(kind="manual"), lambda r, ds: r.manual and not r.test),
        (RunFilters(kind="test"), lambda r, ds: r.test),
        (RunFilters(report="views", status="partial", channel="email", start=start),
         lambda r, ds: r.schedule_id == world["views"] and r.status == "partial"
         and any(d.channel == "email" for d in ds) and r.scheduled_for >= start),
    ]
    for filters, keep in cases:
        flat = [i for p in all_pages(session, world["viewer"], world["acme"], filters, 4) for i in p]
        assert flat == expected(session, world["acme"], keep), filters
    assert any(flat for flat in [expected(session, world["acme"], k) for _, k in cases])
    with pytest.raises(InvalidInput, match="kind"):
        history.runs_page(session, world["viewer"], world["acme"], RunFilters(kind="weekly"))


def test_outcomes_per_day_equal_a_python_count(session: Session, world: dict[str, Any]) -> None:
    for filters in (RunFilters(), RunFilters(report="views"),
                    RunFilters(start=datetime(2026, 3, 29, 0, 30, tzinfo=UTC))):
        outcomes = history.outcomes_per_day(session, world["viewer"], world["acme"], filters)
        flat = [i for p in all_pages(session, world["viewer"], world["acme"], filters, 50) for i in p]
        runs = [session.get(ReportRun, i) for i in flat]
        count = Counter((r.scheduled_for.astimezone(BERLIN).date(), r.status) for r in runs)
        assert {(o.day, o.status): o.count for o in outcomes} == dict(count)
        assert outcomes == sorted(outcomes)
    assert history.outcomes_per_day(session, world["viewer"], world["acme"],
                                    RunFilters(status="running")) == []


def test_run_story(session: Session, world: dict[str, Any]) -> None:
    run_id = world["runs"][1]
    run = session.get(ReportRun, run_id)
    run.requested_by, run.queued_at = "ed@acme.example", run.scheduled_for
    kept = store_artifact(session, run_id=run_id, kind="pdf", filename="views.pdf",
                          media_type="application/pdf", source=b"%PDF", now=NOW)
    old = store_artifact(session, run_id=run_id, kind="csv", filename="views.csv",
                         media_type="text/csv", source=b"a,b\n", now=NOW - timedelta(days=400))
    session.commit()
    story = history.run_story(session, world["viewer"], run_id, now=NOW)
    assert (story.status, story.manual, story.test, story.requested_by, story.attempts) == (
        "partial", True, False, "ed@acme.example", 1)
    assert story.error == "line one 1\nline two" and story.queued_at == run.scheduled_for
    assert [(d.channel, d.recipient, d.status) for d in story.deliveries] == [
        ("email", "Person1@Acme.example", "failed"), ("email", "boss@acme.example", "sent")]
    assert [(d.kind, d.filename, d.size, d.expired) for d in story.documents] == [
        ("pdf", "views.pdf", 4, None),
        ("csv", "views.csv", 4, f"expired on {old.expires_at.date().isoformat()}")]
    assert story.documents[0].expires_at == kept.expires_at
    assert [d.media_type for d in story.documents] == ["application/pdf", "text/csv"]

    pdf = history.document(session, world["viewer"], run_id, "pdf", now=NOW)
    assert (pdf.filename, pdf.media_type, pdf.content) == ("views.pdf", "application/pdf", b"%PDF")
    with pytest.raises(InvalidInput, match=f"^The csv of run {run_id} expired on "
                                           f"{old.expires_at.date().isoformat()}; send"):
        history.document(session, world["viewer"], run_id, "csv", now=NOW)
    with pytest.raises(NotFound, match=f"^Run {run_id} has no query-result document"):
        history.document(session, world["viewer"], run_id, "query-result", now=NOW)
    with pytest.raises(NotFound, match=f"^No run {world['theirs']}.$"):
        history.document(session, world["editor"], world["theirs"], "pdf", now=NOW)


def test_filter_choices_name_the_tenants_schedules_and_reports(
    session: Session, world: dict[str, Any]
) -> None:
    schedules.delete(session, OPERATOR, world["sales"], now=NOW)
    session.commit()
    choices = history.filter_choices(session, world["viewer"], world["acme"])
    assert choices.schedules == ((world["views"], f"#{world['views']} Views"),
                                 (world["sales"], f"#{world['sales']} Sales (deleted)"))
    assert choices.reports == (("sales", "Sales"), ("views", "Views"))
    with pytest.raises(NotFound):
        history.filter_choices(session, world["viewer"], world["beta"])


def test_resend_is_refused_for_finished_runs_and_expired_documents(
    session: Session, world: dict[str, Any]
) -> None:
    editor = world["editor"]
    success = world["runs"][0]
    with pytest.raises(InvalidInput, match=f"^Run {success} is success; "):
        runs.resend_failed(session, editor, success, now=NOW, dispatch=lambda runs: None)
    partial = world["runs"][1]
    with pytest.raises(InvalidInput, match="no longer kept"):
        runs.resend_failed(session, editor, partial, now=NOW, dispatch=lambda runs: None)
    store_artifact(session, run_id=partial, kind="pdf", filename="views.pdf",
                   media_type="application/pdf", source=b"%PDF", now=NOW - timedelta(days=400))
    session.commit()
    with pytest.raises(InvalidInput, match=r"expired on \d{4}-\d\d-\d\d; send the schedule now"):
        runs.resend_failed(session, editor, partial, now=NOW, dispatch=lambda runs: None)
    session.rollback()
    session.expire_all()
    assert session.get(ReportRun, partial).status == "partial"   # nothing was written
    assert {d.status for d in session.exec(select(Delivery).where(Delivery.run_id == partial))} \
        == {"sent", "failed"}


GOOD, BAD = ("one@acme.example", "two@acme.example"), "three@acme.example"


def test_resend_failed_sends_only_to_the_refused_recipient(
    session: Session, videos_file: str, mail_sink: MailSink  # noqa: F811 - fixtures imported above
) -> None:
    schedule_id = make_schedule(videos_file, emails=[*GOOD, BAD], formats=("csv",))
    tenant_id = session.get(Schedule, schedule_id).tenant_id
    editor = add_member(session, tenant_id, Role.EDITOR, "ed@acme.example")
    mail_sink.refuse[BAD] = (550, "5.1.1 no such user")

    sent = send_now(session, editor, schedule_id, now=utcnow(), dispatch=in_process)
    assert sent.status == "partial"
    assert sorted(r for m in mail_sink.mails for r in m.rcpt_tos) == sorted(GOOD)
    first_ids = {a: mail_sink.to(a)[0].message_id for a in GOOD}

    del mail_sink.refuse[BAD]   # the mailbox was fixed
    # a recipient added to the schedule since is not part of this run's resend
    schedules.save_schedule(session, editor, tenant_id, schedules.ScheduleValues(
        report="video-performance", cron="0 9 * * *", formats=("csv",),
        emails=(*GOOD, BAD, "new@acme.example")),
        now=utcnow(), schedule_id=schedule_id)
    session.commit()
    result = runs.resend_failed(session, editor, sent.run_id, now=utcnow(), dispatch=in_process)

    assert (result.status, result.resent) == ("success", (("email", BAD),))
    assert len(mail_sink.mails) == 3
    assert [m.rcpt_tos for m in mail_sink.to(BAD)] == [[BAD]]
    assert {a: [m.message_id for m in mail_sink.to(a)] for a in GOOD} == \
        {a: [i] for a, i in first_ids.items()}
    assert mail_sink.to("new@acme.example") == []
    session.expire_all()
    story = history.run_story(session, editor, sent.run_id)
    assert story.status == "success" and story.error is None
    assert {(d.recipient, d.status, d.attempts) for d in story.deliveries} == {
        (GOOD[0], "sent", 1), (GOOD[1], "sent", 1), (BAD, "sent", 2)}   # attempts add up
    assert all(d.message_id for d in story.deliveries)
    [change] = session.exec(select(ChangeEvent).where(ChangeEvent.action == "resend")).all()
    assert (change.object_type, change.object_id, change.actor) == ("run", sent.run_id, "ed@acme.example")
    assert change.changes["status"] == ["partial", "queued"]
    assert change.changes["resent"] == [None, [f"email {BAD}"]]
    # a second resend has nothing to send
    with pytest.raises(InvalidInput, match="is success"):
        runs.resend_failed(session, editor, sent.run_id, now=utcnow(), dispatch=in_process)
    assert len(mail_sink.mails) == 3
