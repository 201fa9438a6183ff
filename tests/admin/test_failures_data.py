"""The failures page's data functions: failed deliveries grouped by cause (addresses and ids
left out), scoping per role and tenant, pausing a group's schedules, and resending a group's
runs through a real SMTP server. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from models.audit import ChangeEvent
from models.db import utcnow
from models.definition import parse_definition
from models.errors import NotFound, PermissionDenied
from models.runs import Artifact, Delivery, ReportRun
from models.schedules import Schedule, set_active
from models.tenancy import Role
from services import failures, history, reports, schedules, tenants
from services.access import OPERATOR, Viewer
from services.runs import send_now
from tests.admin.test_history_data import REPORT, add_member

# The delivery tests' fixtures: a real SMTP server (aiosmtpd) and a SQLite tenant data source.
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process
from tests.seeding import add_schedule

NOW = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
WEEK = {"since": NOW - timedelta(days=7), "until": NOW}
UNKNOWN = "the SMTP server refused the recipient: 550 5.1.1 <{}>: user unknown"
NO_CHAT = "Telegram refused the document: 400 Bad Request: chat {} not found"


def add_run(session: Session, schedule_id: int, tenant_id: int, slot: datetime, status: str,
            deliveries: list[tuple[str, str, str, str | None]]) -> int:
    """A finished run with deliveries (channel, recipient, status, error) stamped at `slot`."""
    run = ReportRun(schedule_id=schedule_id, tenant_id=tenant_id, scheduled_for=slot,
                    status=status, attempts=1)
    session.add(run)
    session.flush()
    for channel, recipient, outcome, error in deliveries:
        session.add(Delivery(run_id=run.id, channel=channel, recipient=recipient, status=outcome,
                             error=error, finished_at=slot + timedelta(seconds=5), attempts=1))
    session.flush()
    return run.id


@pytest.fixture
def world(session: Session) -> dict[str, Any]:
    """acme: four schedules; 550s for seven addresses over two schedules, a Telegram chat
    failing with its id in the error, an old failure outside the week, a paused and a deleted
    schedule with the same 550s. beta: the same 550 for its own address."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin")
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    for tenant in (acme, beta):
        reports.save_report(session, OPERATOR, tenant, parse_definition(REPORT))
    ids = [add_schedule(session, acme, "views", now=NOW, cron_expr="0 9 * * *",
                                   emails=["boss@acme.example"]).id for _ in range(5)]
    daily, hourly, paused, deleted, quiet = ids
    theirs = add_schedule(session, beta, "views", now=NOW, cron_expr="0 9 * * *",
                                     emails=["b@beta.example"]).id
    day = NOW - timedelta(days=1)
    add_run(session, daily, acme.id, day, "partial", [
        ("email", "boss@acme.example", "sent", None),
        *[("email", f"p{i}@acme.example", "failed", UNKNOWN.format(f"p{i}@acme.example"))
          for i in range(4)]])
    add_run(session, hourly, acme.id, day + timedelta(hours=1), "failed", [
        *[("email", f"p{i}@acme.example", "failed", UNKNOWN.format(f"p{i}@acme.example"))
          for i in range(2, 7)],
        ("telegram", "-100123456", "failed", NO_CHAT.format("-100123456"))])
    add_run(session, paused, acme.id, day + timedelta(hours=2), "failed", [
        ("email", "p0@acme.example", "failed", UNKNOWN.format("p0@acme.example"))])
    add_run(session, deleted, acme.id, day + timedelta(hours=3), "failed", [
        ("email", "p1@acme.example", "failed", UNKNOWN.format("p1@acme.example"))])
    add_run(session, quiet, acme.id, NOW - timedelta(days=9), "failed", [
        ("email", "old@acme.example", "failed", UNKNOWN.format("old@acme.example"))])
    add_run(session, theirs, beta.id, day, "failed", [
        ("email", "b@beta.example", "failed", UNKNOWN.format("b@beta.example"))])
    set_active(session, session.get(Schedule, paused), False, NOW, actor="cli")
    schedules.delete(session, OPERATOR, deleted, now=NOW)
    session.commit()
    return {"acme": acme.id, "beta": beta.id, "daily": daily, "hourly": hourly, "paused": paused,
            "deleted": deleted, "quiet": quiet, "theirs": theirs,
            "viewer": add_member(session, acme.id, Role.VIEWER, "vera@acme.example"),
            "editor": add_member(session, acme.id, Role.EDITOR, "ed@acme.example")}


def test_causes_leave_out_addresses_and_ids() -> None:
    assert failures.cause_of(UNKNOWN.format("a@x.example")) == \
        failures.cause_of(UNKNOWN.format("b.c@y.example")) == \
        "the SMTP server refused the recipient: 550 5.1.1 <address>: user unknown"
    assert failures.cause_of(NO_CHAT.format("-1001234")) == failures.cause_of(NO_CHAT.format("77777")) \
        == "Telegram refused the document: 400 Bad Request: chat <id> not found"
    # codes and names stay: different codes are different causes
    assert failures.cause_of("the Telegram Bot API answered HTTP 503") != \
        failures.cause_of("the Telegram Bot API answered HTTP 502")
    assert failures.cause_of("the SMTP server does not accept non-ASCII addresses (SMTPUTF8), "
                             "which ä@x.example needs.").endswith("(SMTPUTF8), which <address> needs.")
    assert failures.cause_of(None) == failures.cause_of("  ") == "no error was recorded"


def test_groups_merge_errors_that_differ_by_address(session: Session, world: dict[str, Any]) -> None:
    groups = failures.failure_groups(session, world["viewer"], world["acme"], **WEEK)
    assert [(g.channel, g.cause, g.count) for g in groups] == [
        ("email", "the SMTP server refused the recipient: 550 5.1.1 <address>: user unknown", 11),
        ("telegram", "Telegram refused the document: 400 Bad Request: chat <id> not found", 1)]
    smtp, chat = groups
    assert smtp.recipients == tuple(f"p{i}@acme.example" for i in range(5))
    assert (smtp.recipient_count, smtp.more_recipients) == (7, 2)
    assert [(s.id, s.paused, s.deleted) for s in smtp.schedules] == [
        (world["daily"], False, False), (world["hourly"], False, False),
        (world["paused"], True, False), (world["deleted"], True, True)]
    assert smtp.schedules[0].report_title == "Views"
    assert smtp.last_seen == NOW - timedelta(days=1) + timedelta(hours=3, seconds=5)
    assert smtp.example.startswith("the SMTP server refused the recipient: 550 5.1.1 <p")
    assert smtp.open_runs == 4
    assert (chat.recipients, chat.recipient_count, chat.open_runs) == (("-100123456",), 1, 1)
    assert [(s.id, s.paused) for s in chat.schedules] == [(world["hourly"], False)]
    assert len({smtp.key, chat.key}) == 2
    # the old failure joins the group once the window reaches it
    longer = failures.failure_groups(session, world["viewer"], world["acme"],
                                     since=NOW - timedelta(days=30), until=NOW)
    assert (longer[0].key, longer[0].count, longer[0].recipient_count) == (smtp.key, 12, 8)
    assert failures.failure_groups(session, world["viewer"], world["acme"],
                                   since=NOW - timedelta(days=30), until=NOW - timedelta(days=8)
                                   )[0].recipients == ("old@acme.example",)


def test_roles_and_tenants(session: Session, world: dict[str, Any]) -> None:
    viewer, editor = world["viewer"], world["editor"]
    key = failures.failure_groups(session, viewer, world["acme"], **WEEK)[0].key
    with pytest.raises(PermissionDenied, match="viewer"):
        failures.pause_affected(session, viewer, world["acme"], key, now=NOW, **WEEK)
    with pytest.raises(PermissionDenied, match="viewer"):
        failures.resend_group(session, viewer, world["acme"], key, now=NOW, **WEEK,
                              dispatch=lambda runs: None)
    for who in (viewer, editor):
        with pytest.raises(NotFound):
            failures.failure_groups(session, who, world["beta"], **WEEK)
        with pytest.raises(NotFound):
            failures.pause_affected(session, who, world["beta"], key, now=NOW, **WEEK)
    # beta's failure has acme's cause, yet it is in no acme group
    [smtp, _] = failures.failure_groups(session, editor, world["acme"], **WEEK)
    assert "b@beta.example" not in smtp.recipients and world["theirs"] not in \
        [s.id for s in smtp.schedules]
    assert smtp.recipient_count == 7
    with pytest.raises(NotFound, match="reload the page"):
        failures.pause_affected(session, editor, world["acme"], "email-000000000000", now=NOW, **WEEK)
    session.rollback()
    assert not session.exec(select(ChangeEvent).where(ChangeEvent.actor == viewer.email)).all()


def test_pause_affected_pauses_exactly_the_groups_live_schedules(
    session: Session, world: dict[str, Any]
) -> None:
    editor: Viewer = world["editor"]
    chat = failures.failure_groups(session, editor, world["acme"], **WEEK)[1]
    result = failures.pause_affected(session, editor, world["acme"], chat.key, now=NOW, **WEEK)
    assert result == ((world["hourly"],), (), ())
    smtp = failures.failure_groups(session, editor, world["acme"], **WEEK)[0]
    result = failures.pause_affected(session, editor, world["acme"], smtp.key, now=NOW, **WEEK)
    assert result == ((world["daily"],), (world["hourly"], world["paused"]), (world["deleted"],))
    session.commit()
    session.expire_all()
    active = {s.id: s.active for s in session.exec(select(Schedule))}
    assert active == {world["daily"]: False, world["hourly"]: False, world["paused"]: False,
                      world["deleted"]: False, world["quiet"]: True, world["theirs"]: True}
    paused_by_editor = session.exec(select(ChangeEvent.object_id).where(
        ChangeEvent.action == "paused", ChangeEvent.actor == editor.email)).all()
    assert sorted(paused_by_editor) == sorted([world["daily"], world["hourly"]])


BAD = ("three@acme.example", "four@acme.example")
GOOD = "one@acme.example"


def test_resend_a_group_sends_once_per_failed_recipient(
    session: Session, videos_file: str, mail_sink: MailSink  # noqa: F811 - fixtures imported above
) -> None:
    # Given two sends of a schedule in which two mailboxes answered 550 with their address
    schedule_id = make_schedule(videos_file, emails=[GOOD, *BAD], formats=("csv",))
    tenant_id = session.get(Schedule, schedule_id).tenant_id
    editor = add_member(session, tenant_id, Role.EDITOR, "ed@acme.example")
    for address in BAD:
        mail_sink.refuse[address] = (550, f"5.1.1 <{address}>: user unknown")
    start = utcnow()
    runs = [send_now(session, editor, schedule_id, now=start + timedelta(seconds=i),
                     dispatch=in_process).run_id for i in range(2)]
    window = {"since": start - timedelta(days=7), "until": utcnow() + timedelta(minutes=1)}
    [group] = failures.failure_groups(session, editor, tenant_id, **window)
    assert (group.cause, group.count, group.recipients, group.open_runs) == (
        "the SMTP server refused the recipient: 550 5.1.1 <address>: user unknown", 4,
        tuple(sorted(BAD)), 2)
    assert len(mail_sink.mails) == 2   # one to GOOD per run

    # When the mailboxes are fixed, the first run's CSV has expired, and the group is resent
    for address in BAD:
        del mail_sink.refuse[address]
    session.execute(sa.update(Artifact).where(Artifact.run_id == runs[0])
                    .values(expires_at=start - timedelta(days=1)))
    session.commit()
    done = failures.resend_group(session, editor, tenant_id, group.key, now=utcnow(),
                                 dispatch=in_process, **window)

    # Then the first run says why not, the second went to each failed recipient once
    assert [(r.run_id, r.refusal is None) for r in done] == [(runs[0], False), (runs[1], True)]
    assert done[0].refusal.startswith(f"The documents of run {runs[0]} expired on ")
    assert (done[1].result.status, sorted(done[1].result.resent)) == (
        "success", sorted(("email", a) for a in BAD))
    assert sorted(r for m in mail_sink.mails[2:] for r in m.rcpt_tos) == sorted(BAD)
    assert [len(mail_sink.to(a)) for a in (GOOD, *BAD)] == [2, 1, 1]
    session.expire_all()
    assert [session.get(ReportRun, r).status for r in runs] == ["partial", "success"]
    [left] = failures.failure_groups(session, editor, tenant_id, **window)
    assert (left.count, left.open_runs) == (2, 1)
    story = history.run_story(session, editor, runs[1])
    assert {(d.recipient, d.status, d.attempts) for d in story.deliveries} == {
        (GOOD, "sent", 1), (BAD[0], "sent", 2), (BAD[1], "sent", 2)}
