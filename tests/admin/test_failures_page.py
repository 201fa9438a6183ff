"""The Failures page as an editor and a viewer meet it (Streamlit's AppTest, logged in through
the form, on SQLite; the data functions it calls are tested on both backends elsewhere).

The failures are real: a send now through the pipeline in this process (a SQLite tenant data
source, a real SMTP server that answers 550 for two mailboxes, naming each), on the real clock,
since the window is counted back from the moment the deliveries failed. Older failures are
written as rows.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select
from streamlit.testing.v1 import AppTest

from admin.failures import view as failures_view
from models.audit import ChangeEvent
from models.db import utcnow
from models.definition import parse_definition
from models.runs import Delivery, ReportRun
from models.schedules import Schedule
from services import members, reports, tenants
from services.access import OPERATOR, load_viewer
from services.runs import send_now
from tests.admin.test_app_login import PASSWORD, log_in, new_app, readable, shown

# The delivery tests' fixtures: a SQLite tenant data source and a real SMTP server (aiosmtpd).
from tests.delivery.conftest import REPORT, fast_retries, mail_sink, videos_file  # noqa: F401
from tests.delivery.servers import MailSink
from tests.jobs.helpers import in_process
from tests.seeding import add_schedule

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

EDITOR, VIEWER = "ana@acme.example", "vera@acme.example"
GOOD, BAD = "one@acme.example", ("four@acme.example", "three@acme.example")
CAUSE = "the SMTP server refused the recipient: 550 5.1.1 <address>: user unknown"


@pytest.fixture(autouse=True)
def embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)  # a resend runs the pipeline here


@pytest.fixture
def world(session: Session, videos_file: str, mail_sink: MailSink) -> dict[str, int]:  # noqa: F811
    """acme's schedule sent now to GOOD and the two BAD mailboxes (both answer 550), a second
    schedule that failed by Telegram ten days ago; beta failed with the same 550 for its own
    address. Ana edits acme, Vera views it."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", "Europe/Berlin", videos_file)
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta", "UTC")
    for tenant in (acme, beta):
        reports.save_report(session, OPERATOR, tenant, parse_definition(REPORT))
    now = utcnow()
    mine = add_schedule(session, acme, "video-performance", now=now,
                                   cron_expr="0 9 * * *", formats=["csv"], emails=[GOOD, *BAD])
    older = add_schedule(session, acme, "video-performance", now=now,
                                    cron_expr="0 7 * * *", chats=["-100777"])
    theirs = add_schedule(session, beta, "video-performance", now=now,
                                     cron_expr="0 9 * * *", emails=["b@beta.example"])
    ana = members.grant(session, OPERATOR, acme.id, EDITOR, "editor", PASSWORD).user_id
    members.grant(session, OPERATOR, acme.id, VIEWER, "viewer", PASSWORD)
    for schedule, days, channel, recipient, error in (
            (older, 10, "telegram", "-100777", "Telegram refused the document: 400 Bad Request: "
                                               "chat not found"),
            (theirs, 1, "email", "b@beta.example", "the SMTP server refused the recipient: 550 "
                                                   "5.1.1 <b@beta.example>: user unknown")):
        run = ReportRun(schedule_id=schedule.id, tenant_id=schedule.tenant_id, status="failed",
                        scheduled_for=now - timedelta(days=days))
        session.add(run)
        session.flush()
        session.add(Delivery(run_id=run.id, channel=channel, recipient=recipient, status="failed",
                             error=error, finished_at=now - timedelta(days=days)))
    session.commit()
    for address in BAD:
        mail_sink.refuse[address] = (550, f"5.1.1 <{address}>: user unknown")
    sent = send_now(session, load_viewer(session, ana), mine.id, now=now, dispatch=in_process)
    assert sent.status == "partial"
    return {"mine": mine.id, "older": older.id, "run": sent.run_id}


def failures_page(email: str = EDITOR) -> AppTest:
    at = log_in(new_app().run(), email)
    at.switch_page("failures/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Failures"
    return at


def plain(markdown: str) -> str:
    """Markdown as it reads on the page (the page escapes what markdown would interpret)."""
    return readable(markdown)


def groups(at: AppTest) -> list[str]:
    """Each group's heading, then its schedules and recipients."""
    return [plain(m.value) for m in at.main.markdown]


def buttons(at: AppTest) -> dict[str, bool]:
    """Label: enabled, of the page's buttons."""
    return {b.label: not b.disabled for b in at.main.button}


def test_groups_by_cause_for_this_tenant_and_a_viewer_reads_only(world) -> None:
    at = failures_page(VIEWER)
    assert groups(at) == [
        f"**{CAUSE} × 2**",
        f"**Schedules:** #{world['mine']} Video performance  \n"
        f"**Recipients:** four@acme.example, three@acme.example"]
    assert "b@beta.example" not in shown(at.main)    # beta's 550 is not acme's
    assert "email · last seen " in plain(at.main.caption[1].value)
    assert "e.g. the SMTP server refused the recipient: 550 5.1.1 <" in plain(at.main.caption[1].value)
    assert buttons(at) == {}                          # a viewer acts on nothing

    at.selectbox(key=failures_view.WINDOW).select(30).run()
    assert [g for g in groups(at) if g.startswith("**") and " × " in g] == [
        f"**{CAUSE} × 2**",
        "**Telegram refused the document: 400 Bad Request: chat not found × 1**"]


def test_an_editor_pauses_the_affected_schedules(session: Session, world) -> None:
    at = failures_page()
    assert buttons(at) == {"Pause the affected schedules": True, "Resend failed": True}
    at.button(key=next(b.key for b in at.button if b.key.startswith("pause_"))).click().run()
    assert [readable(s.value) for s in at.success] == [
        f"Schedule #{world['mine']} paused; resume it on the Schedules page."]
    assert f"#{world['mine']} Video performance (paused)" in groups(at)[1]
    assert buttons(at) == {"Pause the affected schedules": False, "Resend failed": True}
    session.rollback()
    session.expire_all()
    assert [(s.id, s.active) for s in session.exec(select(Schedule).order_by(Schedule.id))][:2] == [
        (world["mine"], False), (world["older"], True)]
    [change] = session.exec(select(ChangeEvent).where(ChangeEvent.action == "paused")).all()
    assert (change.object_id, change.actor) == (world["mine"], EDITOR)


def test_an_editor_resends_a_group_once_per_failed_mailbox(session: Session, world,
                                                           mail_sink: MailSink) -> None:  # noqa: F811
    at = failures_page()
    for address in BAD:
        del mail_sink.refuse[address]   # the mailboxes were fixed
    at.button(key=next(b.key for b in at.button if b.key.startswith("resend_"))).click().run()
    assert not at.exception, at.exception
    assert [readable(s.value) for s in at.success] == [
        f"Run {world['run']} sent again to four@acme.example (email), three@acme.example (email): "
        f"success.",
        "No failed deliveries in the last 7 days."]
    assert sorted(r for m in mail_sink.mails for r in m.rcpt_tos) == sorted([GOOD, *BAD])
    assert [len(mail_sink.to(a)) for a in BAD] == [1, 1]
    session.rollback()
    assert session.get(ReportRun, world["run"]).status == "success"
