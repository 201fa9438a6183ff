"""Downloads and self-refreshing pages check the session when they are used, in a real
browser: a run's PDF clicked after the membership was removed, or after the idle limit, is
refused and the tab shows the login page saying why; the Health page, which refreshes itself,
stops for a removed member. And login throttling by client address, behind a proxy the admin
trusts: five wrong passwords from one address leave the owner free to log in from another.
`herald admin` on PostgreSQL, Chromium.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from models.admin_sessions import AdminSession
from models.db import session_scope, utcnow
from models.runs import ReportRun
from models.tenancy import User
from services import members, tenants
from services.access import OPERATOR
from services.accounts import MAX_FAILURES
from tests.admin.test_browser import (  # noqa: F401 - fixtures
    EDITOR,
    PASSWORD,
    Admin,
    admin_url,
    browser,
    log_in,
    shoot,
)
from tests.admin.test_browser_sessions import new_page, wait_for_cookie
from tests.seeding import add_schedule

pytestmark = pytest.mark.slow


def a_run_with_a_pdf(admin: Admin) -> int:
    """A successful run of a new Acme schedule, its PDF kept."""
    with session_scope(admin.database_url) as session:
        acme = tenants.get_tenant(session, OPERATOR, "acme")
        schedule_id = add_schedule(session, acme, "video-performance", now=utcnow(),
                                   cron_expr="0 6 * * *", formats=["pdf"],
                                   emails=["boss@acme.example"]).id
    ran = subprocess.run([sys.executable, "-m", "herald", "run", str(schedule_id)],
                         env={**admin.env, "RENDER_PDF_STUB": "true"}, capture_output=True,
                         text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with session_scope(admin.database_url) as session:
        return session.exec(select(ReportRun.id).where(ReportRun.schedule_id == schedule_id)).one()


def remove_from_acme(admin: Admin, email: str) -> None:
    with session_scope(admin.database_url) as session:
        acme = tenants.get_tenant(session, OPERATOR, "acme")
        user_id = session.exec(select(User.id).where(User.email == email)).one()
        members.deactivate(session, OPERATOR, acme.id, user_id)


def open_story(page, base: str, run_id: int):
    page.goto(f"{base}/history?run={run_id}&tenant=acme")
    story = page.locator(".st-key-history_story")
    story.get_by_role("button", name="Download PDF").wait_for()
    # A download button drawn by a run still under way may be drawn again by its end, under a
    # new id: a click on the first would ask for bytes Streamlit has dropped. Click once the
    # page's run is over, as a reader would.
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    return story


def refused_download(page, story, notice: str) -> None:
    """Clicking Download PDF delivers nothing, and the tab asks for a login, saying why."""
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    story.get_by_role("button", name="Download PDF").click()
    page.get_by_role("button", name="Log in").wait_for()
    page.get_by_text(notice).wait_for()
    page.wait_for_timeout(1500)  # time for a download to start, were one on its way
    assert downloads == []


def test_a_download_after_the_membership_is_removed_is_refused_and_health_stops(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base, run_id = admin_url.base, a_run_with_a_pdf(admin_url)
    # Given the editor with a run's story open in one browser, and Health in another
    laptop, desk = browser.new_context(), browser.new_context()
    on_laptop, on_desk = new_page(laptop), new_page(desk)
    log_in(on_laptop, base, EDITOR)
    wait_for_cookie(laptop)
    story = open_story(on_laptop, base, run_id)
    with on_laptop.expect_download() as got:  # while she is a member, the PDF downloads
        story.get_by_role("button", name="Download PDF").click()
    assert Path(got.value.path()).read_bytes().startswith(b"%PDF")
    log_in(on_desk, base, EDITOR)
    on_desk.get_by_role("link", name="Health").click()
    on_desk.get_by_role("heading", name="Stuck runs").wait_for()

    # When an admin removes her from Acme
    remove_from_acme(admin_url, EDITOR)

    # Then Download PDF is refused, and that tab logs her out, saying why
    refused_download(on_laptop, on_laptop.locator(".st-key-history_story"),
                     "Your access to that tenant was removed; log in again.")
    # ... and Health, at its next refresh (every 30 s), stops and logs her out too
    on_desk.get_by_role("button", name="Log in").wait_for(timeout=45_000)
    on_desk.get_by_text("Your access to that tenant was removed; log in again.").wait_for()
    assert on_desk.get_by_role("heading", name="Stuck runs").count() == 0
    shoot(on_desk, "health-stopped-for-a-removed-member", tmp_path)
    laptop.close()
    desk.close()


def test_a_download_after_the_idle_limit_is_refused_and_logs_out(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base, run_id = admin_url.base, a_run_with_a_pdf(admin_url)
    context = browser.new_context()
    page = new_page(context)
    log_in(page, base, EDITOR)
    wait_for_cookie(context)
    story = open_story(page, base, run_id)

    # When the idle limit passes with the story open (her session last seen 2 hours ago)
    with session_scope(admin_url.database_url) as session:
        session.execute(sa.update(AdminSession).values(last_seen_at=utcnow() - timedelta(hours=2)))

    # Then Download PDF is refused and she is asked to log in again
    refused_download(page, story, "Your session ended after 30 idle minutes; log in again.")
    with session_scope(admin_url.database_url) as session:
        assert session.exec(select(AdminSession.ended_why)).all() == ["idle"]
    context.close()


def test_five_wrong_passwords_from_one_address_leave_the_owner_free_from_another(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    # Behind a proxy on the admin's host (uvicorn trusts 127.0.0.1's X-Forwarded-For), two
    # clients: an attacker and the owner, each with their own address.
    base = admin_url.base
    attacker = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.7"})
    owner = browser.new_context(extra_http_headers={"X-Forwarded-For": "198.51.100.20"})
    page = new_page(attacker)
    page.goto(base)

    def try_password(password: str) -> None:
        page.get_by_role("textbox", name="Email").fill(EDITOR)
        page.get_by_role("textbox", name="Password").fill(password)
        page.get_by_role("button", name="Log in").click()

    # Given five wrong passwords from the attacker's address, each after the wait it was given
    for attempt in range(MAX_FAILURES):
        try_password(f"guess {attempt}")
        page.get_by_text("Wrong e-mail or password").wait_for()
        time.sleep(2 ** attempt + 0.5 if attempt < MAX_FAILURES - 1 else 0.5)
    # Then even the right password is refused there, saying when to try again
    try_password(PASSWORD)
    page.get_by_text("Too many failed logins for this e-mail from your network address; "
                     "try again in 15 minutes.").wait_for()
    shoot(page, "login-throttled", tmp_path)

    # When the owner logs in from her own address, she is in
    log_in(new_page(owner), base, EDITOR)
    attacker.close()
    owner.close()
