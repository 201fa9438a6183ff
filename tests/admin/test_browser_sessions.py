"""Staying signed in, in a real browser: `herald admin` on PostgreSQL, driven by Chromium.

A reload, a second tab and a run's link (`/history?run=N&tenant=acme`, the History page's
link to a run's story) find the session cookie and stay signed in; logging out in one tab
signs the other out at its next click; a new password signs out the account's other
browsers; a link opened while logged out lands on its page and run after the login.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlmodel import select

from admin.session_cookie import COOKIE
from models.db import session_scope, utcnow
from models.schedules import Schedule
from services import runs
from services.access import OPERATOR
from tests.admin.test_browser import (  # noqa: F401 - fixtures
    EDITOR,
    PASSWORD,
    VIEWER,
    Admin,
    admin_url,
    browser,
    log_in,
    shoot,
)
from tests.seeding import get_tenant

pytestmark = pytest.mark.slow
NEW_PASSWORD = "an even longer password"


def a_run(admin: Admin) -> int:
    """A queued run of Acme's schedule, made by send now (nothing sends it): its story is
    what the link shows."""
    with session_scope(admin.database_url) as session:
        acme = get_tenant(session, "acme")
        schedule_id = session.exec(select(Schedule.id).where(Schedule.tenant_id == acme.id)).one()
        return runs.send_now(session, OPERATOR, schedule_id, now=utcnow(),
                             dispatch=lambda _: None).run_id


def the_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == COOKIE), None)


def wait_for_cookie(context, present: bool = True) -> dict | None:
    """The session cookie once the page has it (or, `present=False`, once it is cleared)."""
    deadline = time.monotonic() + 15
    while (the_cookie(context) is not None) != present:
        if time.monotonic() > deadline:
            pytest.fail(f"the session cookie is {'missing' if present else 'still there'}")
        time.sleep(0.1)
    return the_cookie(context)


def new_page(context):
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def signed_in_as(page, email: str) -> None:
    page.locator("[data-testid='stSidebar']").get_by_text(f"Signed in as {email}").wait_for()
    assert page.get_by_role("textbox", name="Email").count() == 0


def story_of(page, run_id: int) -> None:
    story = page.locator(".st-key-history_story")
    story.get_by_role("heading", name=f"Run {run_id}: Video performance").wait_for()


def test_a_reload_a_second_tab_and_a_run_link_stay_signed_in_until_one_tab_logs_out(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base, run_id = admin_url.base, a_run(admin_url)
    context = browser.new_context(viewport={"width": 1440, "height": 1000},
                                  timezone_id="Europe/Berlin")
    first = new_page(context)

    # Given the editor logged in: her browser holds the session cookie, HttpOnly and Strict
    log_in(first, base, EDITOR)
    cookie = wait_for_cookie(context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"] and cookie["expires"] == -1  # plain http; ends with the browser
    assert first.evaluate("document.cookie").find(COOKIE) == -1  # no script of the page reads it

    # When she reloads: still signed in
    first.reload()
    first.get_by_role("heading", name="Schedules").wait_for()
    signed_in_as(first, EDITOR)

    # When she opens a run's link in a second tab: its story, no login
    second = new_page(context)
    second.goto(f"{base}/history?run={run_id}&tenant=acme")
    story_of(second, run_id)
    signed_in_as(second, EDITOR)
    second.reload()
    story_of(second, run_id)
    second.wait_for_timeout(500)  # let the story's table draw
    shoot(second, "deep-linked-run-after-reload", tmp_path)

    # When she logs out in the first tab
    first.get_by_role("button", name="Log out").click()
    first.get_by_role("button", name="Log in").wait_for()
    wait_for_cookie(context, present=False)

    # Then the second tab's next click asks for a login, and says why
    second.get_by_role("link", name="Reports").click()
    second.get_by_role("button", name="Log in").wait_for()
    second.get_by_text("You logged out in another tab or window; log in again.").wait_for()
    # ... and so does a reload
    second.reload()
    second.get_by_role("button", name="Log in").wait_for()
    context.close()


def test_a_run_link_opened_while_logged_out_lands_on_the_run_after_the_login(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base, run_id = admin_url.base, a_run(admin_url)
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = new_page(context)

    # Given a link to a run, opened by someone not logged in: the login form, link kept
    page.goto(f"{base}/history?run={run_id}&tenant=acme")
    page.get_by_role("button", name="Log in").wait_for()
    assert f"/history?run={run_id}" in page.url
    assert page.locator(".st-key-history_story").count() == 0
    shoot(page, "login-from-a-run-link", tmp_path)

    # When she logs in
    page.get_by_role("textbox", name="Email").fill(EDITOR)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # Then the History page shows that run's story
    page.get_by_role("heading", name="History").wait_for()
    story_of(page, run_id)
    assert f"run={run_id}" in page.url and "tenant=acme" in page.url
    context.close()


def test_a_new_password_signs_out_the_accounts_other_browsers(
    admin_url: Admin, browser, tmp_path: Path  # noqa: F811 - fixtures imported above
) -> None:
    base = admin_url.base
    # Given the viewer signed in on a laptop and on another computer (two browsers)
    laptop, other = browser.new_context(), browser.new_context()
    on_laptop, elsewhere = new_page(laptop), new_page(other)
    log_in(on_laptop, base, VIEWER)
    log_in(elsewhere, base, VIEWER)
    wait_for_cookie(laptop)

    # When she changes her password on the laptop
    on_laptop.get_by_role("link", name="My account").click()
    on_laptop.get_by_role("textbox", name="Current password").fill(PASSWORD)
    on_laptop.get_by_role("textbox", name="New password", exact=True).fill(NEW_PASSWORD)
    on_laptop.get_by_role("textbox", name="New password again").fill(NEW_PASSWORD)
    on_laptop.get_by_role("button", name="Change password").click()
    on_laptop.get_by_text("Password changed.").wait_for()

    # Then the other computer's next click asks for a login with the new password
    elsewhere.get_by_role("link", name="Reports").click()
    elsewhere.get_by_text("This account's password was changed; log in with the new one.").wait_for()
    assert elsewhere.get_by_role("button", name="Log in").is_visible()

    # ... while the laptop stays signed in, a reload too
    on_laptop.reload()
    on_laptop.get_by_role("heading", name="My account").wait_for()
    signed_in_as(on_laptop, VIEWER)
    laptop.close()
    other.close()
