"""Text from users and from other servers shows as text, in a real browser: a report title
and a schedule subject holding markdown links and images, and a mail server whose 550 reply
holds them too, are read literally on every page that shows them (Schedules: the paused
warning, the picked schedule, its Changes table, the delete confirmation; History; Health's
stuck-run links; Failures), and no link or image of the page points where they say.
`herald admin` on PostgreSQL, a real SMTP server, Chromium.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from models.db import session_scope, utcnow
from models.definition import parse_definition
from models.runs import ReportRun, RunStatus
from services import reports, tenants
from services.access import OPERATOR
from tests.admin.test_browser import EDITOR, Admin, admin_url, browser, log_in, shoot  # noqa: F401
from tests.admin.test_browser_sessions import new_page, wait_for_cookie
from tests.seeding import add_schedule

pytestmark = pytest.mark.slow
TITLE = "Sales [ext](http://x.test/) ![t](http://x.test/t.png)"
SUBJECT = "Weekly [click](http://x.test/s) ![s](http://x.test/s.png)"
REPLY = "5.1.1 [Re-login here](http://attacker.test/phish) ![x](http://attacker.test/t.png)"
GONE = "gone@acme.example"
HOSTILE = {"slug": "hostile", "title": TITLE,
           "sections": [{"kind": "kpi", "title": "Videos", "sql": "SELECT count(*) AS value FROM videos"}]}
NOT_THEIRS = ("a[href*='x.test'], a[href*='attacker.test'], img[src*='x.test'], "
              "img[src*='attacker.test']")


def literal(page, text: str, within: str = "body") -> None:
    """`text` is on the page as it was typed (the invisible word joiners that keep a URL or
    an address from becoming a link aside), and nothing links to or shows what it names."""
    page.wait_for_function(
        "([selector, text]) => [...document.querySelectorAll(selector)].some("
        "n => n.innerText.replaceAll('\\u2060', '').includes(text))", arg=[within, text])
    assert page.locator(NOT_THEIRS).count() == 0, page.locator(NOT_THEIRS).evaluate_all(
        "nodes => nodes.map(n => n.outerHTML)")


def test_titles_subjects_and_a_mail_servers_reply_show_as_text_on_every_page(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base, sink = admin_url.base, admin_url.sink
    # Given a report titled with markdown, a schedule whose subject holds some too, and a mail
    # server whose refusal holds a link and an image: its run fails and herald pauses it
    with session_scope(admin_url.database_url) as session:
        acme = tenants.get_tenant(session, OPERATOR, "acme")
        reports.save_report(session, OPERATOR, acme, parse_definition(HOSTILE))
        schedule_id = add_schedule(session, acme, "hostile", now=utcnow(), cron_expr="0 6 * * *",
                                   formats=["pdf"], emails=[GONE], subject=SUBJECT).id
    sink.refuse[GONE] = (550, REPLY)
    ran = subprocess.run([sys.executable, "-m", "herald", "run", str(schedule_id)],
                         env={**admin_url.env, "HERALD_AUTOPAUSE_AFTER": "1",
                              "RENDER_PDF_STUB": "true"},
                         capture_output=True, text=True, timeout=180)
    assert "failed" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    # ... and a run of it stuck in the queue, for Health
    with session_scope(admin_url.database_url) as session:
        run_id = session.exec(select(ReportRun.id).where(ReportRun.schedule_id == schedule_id)).one()
        stuck = ReportRun(schedule_id=schedule_id, tenant_id=acme.id, status=RunStatus.QUEUED,
                          scheduled_for=utcnow() - timedelta(hours=1),
                          queued_at=utcnow() - timedelta(minutes=30))
        session.add(stuck)
        session.flush()
        stuck_id = stuck.id

    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = new_page(context)
    log_in(page, base, EDITOR)
    wait_for_cookie(context)

    # Schedules: the warning naming the paused schedules
    page.goto(f"{base}/?tenant=acme")  # Schedules, the first page
    page.get_by_text("Paused by herald after failing in a row").wait_for()
    literal(page, f"#{schedule_id} {TITLE}")

    # The picked schedule: its heading, why herald paused it, and its changes
    page.goto(f"{base}/?schedule={schedule_id}&tenant=acme")
    literal(page, f"Schedule {schedule_id}: {TITLE}")
    literal(page, REPLY)
    literal(page, SUBJECT, ".st-key-schedule_changes")
    shoot(page, "foreign-text-schedule", tmp_path)

    # The delete confirmation
    page.locator(".st-key-schedule_delete button").click()
    literal(page, f"Delete schedule {schedule_id} ({TITLE}", ".st-key-delete_confirmation")

    # History: the failed run's story
    page.goto(f"{base}/history?run={run_id}&tenant=acme")
    literal(page, f"Run {run_id}: {TITLE}", ".st-key-history_story")
    literal(page, REPLY, ".st-key-history_story")
    shoot(page, "foreign-text-history", tmp_path)

    # Health: the stuck run's link goes to its story, and reads as its title
    page.goto(f"{base}/health?tenant=acme")
    literal(page, f"Run {stuck_id}: {TITLE}")
    link = page.locator(f"a[href*='run={stuck_id}']")
    assert link.count() == 1 and TITLE in link.inner_text().replace("\u2060", "")

    # Failures: the group of the refused deliveries
    page.goto(f"{base}/failures?tenant=acme")
    literal(page, REPLY)
    shoot(page, "foreign-text-failures", tmp_path)
    context.close()
