"""The History page in a real browser: a run with a refused recipient (SMTP 550) shows that
delivery's error in the run's story, and Resend failed, once the mailbox is fixed, delivers
to that recipient exactly once. `herald admin` on PostgreSQL, a real SMTP server, Chromium.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.db import session_scope, utcnow
from services import tenants
from services.access import OPERATOR
from tests.admin.test_browser import EDITOR, Admin, admin_url, browser, log_in, shoot  # noqa: F401
from tests.seeding import add_schedule

pytestmark = pytest.mark.slow
GONE, BOSS = "gone@acme.example", "boss@acme.example"


def recipients(sink) -> list[str]:
    return sorted(address for mail in sink.mails for address in mail.rcpt_tos)


def test_a_refused_recipient_shows_in_the_story_and_resend_failed_delivers_once(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base, sink = admin_url.base, admin_url.sink
    # Given a schedule to two mailboxes, one of which the mail server refuses
    with session_scope(admin_url.database_url) as session:
        acme = tenants.get_tenant(session, OPERATOR, "acme")
        schedule_id = add_schedule(session, acme, "video-performance", now=utcnow(),
                                              cron_expr="0 6 * * *", formats=["pdf"],
                                              emails=[BOSS, GONE]).id
    sink.refuse[GONE] = (550, "5.1.1 <gone@acme.example>: mailbox unavailable")
    ran = subprocess.run([sys.executable, "-m", "herald", "run", str(schedule_id)],
                         env=admin_url.env, capture_output=True, text=True, timeout=180)
    assert ran.returncode != 0 or "partial" in ran.stdout, ran.stdout + ran.stderr
    assert recipients(sink) == [BOSS]

    # When the editor opens History and clicks the newest run
    page = browser.new_page(viewport={"width": 1440, "height": 1100}, timezone_id="Europe/Berlin")
    page.set_default_timeout(30_000)
    log_in(page, base, EDITOR)
    page.get_by_role("link", name="History").click()
    grid = page.locator(".st-key-history_table [data-testid='stDataFrameResizable']")
    grid.wait_for()
    page.locator(".st-key-history_chart").wait_for()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's selection cell

    # Then its story names the refused recipient with the server's answer
    story = page.locator(".st-key-history_story")
    story.wait_for()
    story.get_by_text("partial").first.wait_for(state="attached")
    deliveries = story.locator("table").filter(has_text="Recipient")
    deliveries.locator("td", has_text=GONE).first.wait_for(state="attached")
    text = deliveries.text_content()
    assert "550" in text and "mailbox unavailable" in text, text
    shoot(page, "history-story", tmp_path)

    # When the mailbox is fixed and she presses Resend failed
    del sink.refuse[GONE]
    story.get_by_role("button", name="Resend failed").click()
    # the flash (an invisible word joiner before the "@" keeps the address from becoming a link)
    page.get_by_text(f"sent again to {GONE.replace('@', chr(0x2060) + '@')}").first.wait_for()
    story.get_by_text("success").first.wait_for()
    page.wait_for_load_state("networkidle")

    # Then the refused recipient got exactly one message, and nobody else got another
    assert recipients(sink) == [BOSS, GONE]
    shoot(page, "history-resent", tmp_path)
