"""Auto-pause: a schedule whose last three scheduled or manual runs FAILED is paused with the
reason, and each active admin of its tenant gets one e-mail saying why and how to resume.

Runs go through the real pipeline (a SQLite tenant data source, CSV only) and a real SMTP
server that refuses the schedule's recipients when a run should fail. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from jobs.tick import tick
from models.audit import ChangeEvent
from models.db import session_scope, utcnow
from models.runs import ReportRun, RunStatus
from models.schedules import Schedule
from models.settings import get_settings
from models.tenancy import User
from pipeline.deliver import deliver_run
from pipeline.in_process import run_in_process
from pipeline.lifecycle import create_manual_run
from pipeline.query import end_by_id
from services import members, runs, tenants
from services.access import OPERATOR, load_viewer

# The delivery tests' fixtures: a SQLite tenant data source and a real SMTP server (aiosmtpd).
from tests.delivery.conftest import fast_retries, mail_sink, make_schedule, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process

BOSS, TEAM = "boss@acme.example", "team@acme.example"
ADMINS = ["ada@acme.example", "adam@acme.example"]
NOT_TOLD = ["ed@acme.example", "vera@acme.example", "gone@acme.example", "bea@beta.example"]
NO_SUCH_USER = (550, "5.1.1 no such user")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def sink(mail_sink: MailSink) -> MailSink:  # noqa: F811 - the delivery tests' fixture
    return mail_sink


@pytest.fixture
def schedule_id(db_url: str, videos_file: str, sink: MailSink) -> int:  # noqa: F811
    """Acme's CSV schedule to boss and team; acme's admins Ada and Adam, an editor, a viewer and
    a deactivated admin; beta's admin Bea."""
    sid = make_schedule(videos_file, emails=[BOSS, TEAM], formats=["csv"])
    with session_scope() as session:
        acme = tenants.get_tenant(session, OPERATOR, "acme")
        beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
        for email, role in [*((a, "admin") for a in ADMINS), ("ed@acme.example", "editor"),
                            ("vera@acme.example", "viewer"), ("gone@acme.example", "admin")]:
            members.grant(session, OPERATOR, acme.id, email, role, "a-password-123")
        members.grant(session, OPERATOR, beta.id, "bea@beta.example", "admin", "a-password-123")
        session.exec(select(User).where(User.email == "gone@acme.example")).one().active = False
    return sid


def fail(sink: MailSink) -> None:
    """Every recipient refuses: the next run delivers nothing (FAILED)."""
    sink.refuse.update({BOSS: NO_SUCH_USER, TEAM: NO_SUCH_USER})


def bounce_one(sink: MailSink) -> None:
    """Only boss refuses: the next run is PARTIAL."""
    sink.refuse.clear()
    sink.refuse[BOSS] = NO_SUCH_USER


def run(schedule_id: int, at: datetime, test_to: str | None = None) -> int:
    """A manual run (or a test run to `test_to`) for slot `at`, through the whole pipeline."""
    with session_scope() as session:
        made = create_manual_run(session, session.get(Schedule, schedule_id), at, "cli")
        if test_to:
            made.test, made.test_recipients = True, [["email", test_to]]
        run_id = made.id
    run_in_process(run_id)
    return run_id


def schedule(schedule_id: int) -> Schedule:
    with session_scope() as session:
        return session.get(Schedule, schedule_id)


def statuses(schedule_id: int) -> list[str]:
    with session_scope() as session:
        return [str(r.status) for r in session.exec(
            select(ReportRun).where(ReportRun.schedule_id == schedule_id).order_by(ReportRun.id))]


def pause_events(schedule_id: int) -> list[ChangeEvent]:
    with session_scope() as session:
        return list(session.exec(select(ChangeEvent).where(
            ChangeEvent.object_type == "schedule", ChangeEvent.object_id == schedule_id,
            ChangeEvent.action.in_(["paused", "resumed"])).order_by(ChangeEvent.id)))


def notices(sink: MailSink) -> dict[str, int]:
    """How many pause notices each address received."""
    counts = {}
    for mail in sink.mails:
        if mail.message["Subject"].startswith("herald paused"):
            for address in mail.rcpt_tos:
                counts[address] = counts.get(address, 0) + 1
    return counts


def test_three_failed_runs_in_a_row_pause_the_schedule_and_tell_each_admin_once(
    schedule_id: int, sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a schedule whose every recipient refuses mail, fired by the tick three days running
    monkeypatch.setenv("HERALD_ADMIN_URL", "https://reports.example.com/admin/")
    get_settings.cache_clear()
    fail(sink)
    slots = []
    for day in range(3):
        slot = schedule(schedule_id).next_run_at
        slots.append(slot)
        assert schedule(schedule_id).active and notices(sink) == {}, f"paused after {day}"
        tick(slot, in_process)

    # Then the third failure paused it, with the reason, and recorded who did it
    assert statuses(schedule_id) == ["failed"] * 3
    paused = schedule(schedule_id)
    reason = ("Paused automatically after 3 failed runs in a row; the last error: 2 of 2 "
              "deliveries failed: email boss@acme.example: the SMTP server refused the recipient: "
              "550 5.1.1 no such user; email team@acme.example: the SMTP server refused the "
              "recipient: 550 5.1.1 no such user.")
    assert (paused.active, paused.paused_reason) == (False, reason)
    assert paused.paused_at is not None and paused.last_status == "failed"
    [event] = pause_events(schedule_id)
    assert (event.actor, event.changes) == ("system", {"paused": [False, True],
                                                       "paused_reason": [None, reason]})
    # And each active admin of acme got one e-mail; nobody else did
    assert notices(sink) == {"ada@acme.example": 1, "adam@acme.example": 1}
    [mail] = sink.to("ada@acme.example")
    assert mail.message["Subject"] == f"herald paused “Video performance” (schedule {schedule_id})"
    text = mail.text()
    assert reason in text and f"herald schedule resume {schedule_id}" in text
    assert "Schedules, pick schedule" in text and "Resume" in text
    with session_scope() as session:
        last = max(session.exec(select(ReportRun.id).where(ReportRun.schedule_id == schedule_id)))
    assert (f"  The last failed run: https://reports.example.com/admin/history?run={last}&tenant=acme"
            in text.splitlines()[5])
    assert all(not sink.to(address) for address in NOT_TOLD)
    # And the tick leaves it alone from now on
    tick(slots[-1] + timedelta(days=1), in_process)
    assert statuses(schedule_id) == ["failed"] * 3


def test_a_partial_run_resets_the_count(schedule_id: int, sink: MailSink) -> None:
    fail(sink)
    run(schedule_id, T0)
    run(schedule_id, T0 + timedelta(hours=1))
    bounce_one(sink)  # one bouncing recipient must not stop everyone's report
    run(schedule_id, T0 + timedelta(hours=2))
    fail(sink)
    run(schedule_id, T0 + timedelta(hours=3))
    run(schedule_id, T0 + timedelta(hours=4))
    assert statuses(schedule_id) == ["failed", "failed", "partial", "failed", "failed"]
    assert schedule(schedule_id).active and notices(sink) == {}

    run(schedule_id, T0 + timedelta(hours=5))
    assert not schedule(schedule_id).active
    assert notices(sink) == {"ada@acme.example": 1, "adam@acme.example": 1}


def test_test_runs_do_not_count(schedule_id: int, sink: MailSink) -> None:
    fail(sink)
    sink.refuse["qa@acme.example"] = NO_SUCH_USER
    run(schedule_id, T0)
    run(schedule_id, T0 + timedelta(hours=1))
    run(schedule_id, T0 + timedelta(hours=2), test_to="qa@acme.example")  # a failed test
    run(schedule_id, T0 + timedelta(hours=3), test_to="qa@acme.example")
    assert statuses(schedule_id) == ["failed"] * 4
    assert schedule(schedule_id).active and notices(sink) == {}
    # A test that succeeds in between does not reset the count either
    run(schedule_id, T0 + timedelta(hours=4), test_to="ok@acme.example")
    run(schedule_id, T0 + timedelta(hours=5))
    assert statuses(schedule_id)[-2:] == ["success", "failed"]
    assert not schedule(schedule_id).active
    assert notices(sink) == {"ada@acme.example": 1, "adam@acme.example": 1}


def test_redelivering_or_resending_the_last_run_does_not_pause_or_email_twice(
    schedule_id: int, sink: MailSink
) -> None:
    fail(sink)
    made = [run(schedule_id, T0 + timedelta(hours=h)) for h in range(3)]
    assert not schedule(schedule_id).active
    # When the last run's messages are delivered again (Dramatiq redelivers after a crash)
    run_in_process(made[-1])
    deliver_run(made[-1])
    # And an admin sends its failed deliveries again, which fail again
    with session_scope() as session:
        ada = session.exec(select(User).where(User.email == ADMINS[0])).one()
        resent = runs.resend_failed(session, load_viewer(session, ada.id), made[-1],
                                       now=utcnow(), dispatch=in_process)
    assert resent.status == "failed" and statuses(schedule_id) == ["failed"] * 3
    # Then it was paused once, and each admin told once
    assert [e.action for e in pause_events(schedule_id)] == ["paused"]
    assert notices(sink) == {"ada@acme.example": 1, "adam@acme.example": 1}


def test_resuming_clears_the_reason(schedule_id: int, sink: MailSink, cli) -> None:
    fail(sink)
    for h in range(3):
        run(schedule_id, T0 + timedelta(hours=h))
    reason = schedule(schedule_id).paused_reason
    listed = json.loads(cli("schedule", "list", "--tenant", "acme", "--json").output)
    assert [(s["active"], s["paused_reason"]) for s in listed] == [(False, reason)]
    text = cli("schedule", "list", "--tenant", "acme").output
    assert reason in text

    result = cli("schedule", "resume", schedule_id)
    assert result.exit_code == 0, result.output
    resumed = schedule(schedule_id)
    assert (resumed.active, resumed.paused_reason, resumed.paused_at) == (True, None, None)
    assert resumed.next_run_at > utcnow()
    assert pause_events(schedule_id)[-1].changes == {"paused": [True, False],
                                                     "paused_reason": [reason, None]}
    assert reason not in cli("schedule", "list", "--tenant", "acme").output


def test_a_notice_that_cannot_be_sent_does_not_fail_the_run(
    schedule_id: int, sink: MailSink
) -> None:
    fail(sink)
    sink.refuse[ADMINS[0]] = NO_SUCH_USER
    made = [run(schedule_id, T0 + timedelta(hours=h)) for h in range(3)]
    assert statuses(schedule_id) == ["failed"] * 3  # recorded, not left running or retried
    assert not schedule(schedule_id).active
    assert notices(sink) == {"adam@acme.example": 1}
    with session_scope() as session:
        assert session.get(ReportRun, made[-1]).finished_at is not None


def test_zero_turns_it_off(schedule_id: int, sink: MailSink,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_AUTOPAUSE_AFTER", "0")
    get_settings.cache_clear()
    fail(sink)
    for h in range(4):
        run(schedule_id, T0 + timedelta(hours=h))
    assert statuses(schedule_id) == ["failed"] * 4
    assert schedule(schedule_id).active and schedule(schedule_id).paused_reason is None
    assert notices(sink) == {} and pause_events(schedule_id) == []


def test_a_secret_in_the_last_error_reaches_neither_the_schedule_nor_the_e_mail(
    schedule_id: int, sink: MailSink
) -> None:
    error = "could not connect to postgresql://reader:hunter2-secret@db.acme.example/acme"
    for h in range(3):
        with session_scope() as session:
            run_id = create_manual_run(session, session.get(Schedule, schedule_id),
                                       T0 + timedelta(hours=h), "cli").id
        end_by_id(run_id, RunStatus.FAILED, error)  # the query stage's way to fail
    reason = schedule(schedule_id).paused_reason
    assert reason == ("Paused automatically after 3 failed runs in a row; the last error: could "
                      "not connect to postgresql://reader:***@db.acme.example/acme.")
    [mail] = sink.to(ADMINS[0])
    assert reason in mail.text() and "hunter2-secret" not in mail.raw.decode()
