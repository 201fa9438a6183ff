"""The admin in a real browser: `herald admin` on a fresh PostgreSQL database, driven by
Playwright with Chromium, as an editor and then as a viewer of another tenant.

Screenshots of each page go to the test's temporary folder, and to
HERALD_SCREENSHOTS_DIR when it is set (`docs/screenshots/` holds the README's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from herald.demo import DEMO_REPORT, write_demo_datasource
from models import migrate
from models.db import session_scope, utcnow
from models.definition import load_definition, parse_definition
from renderers.browser import find_chromium
from services import members, reports, tenants
from services.access import OPERATOR
from tests.delivery.servers import MailSink, free_port
from tests.seeding import add_schedule

pytestmark = pytest.mark.slow
PASSWORD = "a long enough password"
EDITOR, VIEWER = "ana@acme.example", "bob@beta.example"
BETA_REPORT = {"slug": "beta-sales", "title": "Beta sales", "sections": [
    {"kind": "kpi", "title": "Videos", "sql": "SELECT count(*) AS value FROM videos"}]}


class Admin(NamedTuple):
    """A running `herald admin`: its address, its mail server, its database and environment."""

    base: str
    sink: MailSink
    database_url: str
    env: dict[str, str]


@pytest.fixture
def admin_url(create_pg_database, tmp_path: Path) -> Iterator[Admin]:
    """`herald admin` on a new PostgreSQL database: Acme (an editor, the demo report, one
    schedule) and Beta (a viewer, its own report and schedule); a local mail server."""
    url = create_pg_database()
    migrate.upgrade(url)
    for name in ("acme", "beta"):
        write_demo_datasource(tmp_path / f"{name}.db")
    with session_scope(url) as session:
        acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme Media", "Europe/Berlin",
                                  f"sqlite:///{tmp_path / 'acme.db'}", emails=["team@acme.example"])
        beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta Corp", "UTC", f"sqlite:///{tmp_path / 'beta.db'}",
                                  emails=["ops@beta.example"])
        reports.save_report(session, OPERATOR, acme, load_definition(DEMO_REPORT))
        reports.save_report(session, OPERATOR, beta, parse_definition(BETA_REPORT))
        add_schedule(session, acme, "video-performance", now=utcnow(), cadence="weekly",
                                at="08:00", formats=["pdf", "csv"])
        add_schedule(session, beta, "beta-sales", now=utcnow(), cron_expr="0 7 * * 1-5")
        members.grant(session, OPERATOR, acme.id, EDITOR, "editor", PASSWORD)
        members.grant(session, OPERATOR, beta.id, VIEWER, "viewer", PASSWORD)
    sink = MailSink().start()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "MAIL_SMTP_HOST": "127.0.0.1",
           "MAIL_SMTP_PORT": str(sink.port), "MAIL_FROM": "reports@acme.example",
           "RENDER_PDF_STUB": "false"}
    env.pop("REDIS_URL", None)  # embedded: send now runs the pipeline in the admin's process
    server = subprocess.Popen([sys.executable, "-m", "herald", "admin", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"herald admin did not answer on {base} (exit status {server.poll()})")
        yield Admin(base, sink, url, env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        sink.stop()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=find_chromium(os.environ.get("HERALD_CHROMIUM_PATH"),
                                          playwright.chromium.executable_path))
        try:
            yield chromium
        finally:
            chromium.close()


def shoot(page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("HERALD_SCREENSHOTS_DIR"):
        shutil.copy(path, Path(os.environ["HERALD_SCREENSHOTS_DIR"]) / path.name)


def log_in(page, base: str, email: str) -> None:
    page.goto(base)
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Schedules").wait_for(timeout=30_000)


def choose(page, key: str, text: str) -> None:
    """Pick `text` in the selectbox with widget key `key` (type to search, then Enter)."""
    field = page.locator(f".st-key-{key} input")
    field.click()
    field.fill(text)
    page.keyboard.press("Enter")


def test_an_editor_schedules_across_dst_sends_now_and_another_tenant_sees_none_of_it(
    admin_url: Admin, browser, tmp_path: Path
) -> None:
    base, sink = admin_url.base, admin_url.sink
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, timezone_id="Europe/Berlin")
    page.set_default_timeout(30_000)

    # The login page
    page.goto(base)
    page.get_by_role("button", name="Log in").wait_for()
    shoot(page, "login", tmp_path)

    # Given an editor of Acme
    log_in(page, base, EDITOR)
    page.locator(".st-key-schedules_table").wait_for()
    assert "tenant=acme" in page.url
    shoot(page, "schedules", tmp_path)

    # When she creates a daily schedule at 02:30 in New York, looking from 5 March
    page.locator(".st-key-schedule_new button").click()
    page.locator(".st-key-schedule_form").wait_for()
    choose(page, "form_cadence", "Daily")
    page.locator(".st-key-form_time input").fill("02:30")
    page.keyboard.press("Enter")
    choose(page, "form_timezone", "America/New_York")
    page.locator(".st-key-form_preview_from input").fill("2026-03-05")  # opens March 2026
    page.get_by_role("button", name="Thursday, March 5, 2026").click()  # the calendar's day

    # Then the helper shows five fire times in three zones, and the DST note
    page.get_by_text("skipped 02:30 on 8 Mar fires at 03:00").wait_for()
    table = page.locator(".st-key-fire_times table")
    headers = table.locator("thead th").all_inner_texts()
    assert "Schedule (America/New_York)" in headers and "UTC" in headers
    assert any(h.startswith("You (Europe/Berlin)") for h in headers), headers
    rows = table.locator("tbody tr").all_inner_texts()
    assert len(rows) == 5 and "Sun 08 Mar 2026 03:00 EDT" in "\n".join(rows), rows
    shoot(page, "schedule-form", tmp_path)

    # When she saves it and presses Send now
    page.locator(".st-key-form_save button").click()
    page.get_by_text("saved.").wait_for()
    page.locator(".st-key-schedule_send_now button").click()

    # Then the run appears, and its e-mail reached the tenant's fallback recipient
    page.get_by_text("queued").first.wait_for(timeout=90_000)
    # The schedule's runs, beside its changes (a data grid: its cells are drawn on a canvas
    # and kept, hidden, in a table for screen readers, which is what is read here).
    runs = page.locator("table").filter(has_text="Slot")
    runs.locator("td", has_text="success").first.wait_for(state="attached", timeout=90_000)
    assert [m.rcpt_tos for m in sink.mails] == [["team@acme.example"]]
    shoot(page, "schedule-sent", tmp_path)

    # The reports page: the preview renders the PDF now and shows the CSV's first rows
    page.get_by_role("link", name="Reports").click()
    page.locator(".st-key-report_pick").wait_for()
    page.get_by_role("tab", name="Preview").click()
    page.locator(".st-key-report_preview button").click()
    page.locator(".st-key-report_pdf").wait_for(timeout=90_000)
    page.locator(".st-key-report_csv_rows").wait_for()
    page.wait_for_timeout(1500)  # let the embedded viewer draw the first page
    shoot(page, "report-preview", tmp_path)

    # When a viewer of another tenant logs in
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()  # the session has ended on the server
    log_in(page, base, VIEWER)
    page.locator(".st-key-schedules_table").wait_for()

    # Then Acme's schedules, report and tenant are nowhere
    # (text_content, not inner_text: the table's cells are kept, hidden, for screen readers)
    page.locator("td", has_text="Beta sales").first.wait_for(state="attached")
    shown = page.locator("[data-testid='stMain']").text_content()
    sidebar = page.locator("[data-testid='stSidebar']").text_content()
    assert "Beta sales" in shown and "tenant=beta" in page.url
    for acme_thing in ("video-performance", "Video performance", "America/New_York", "Acme"):
        assert acme_thing not in shown and acme_thing not in sidebar
    assert page.locator(".st-key-schedule_new").count() == 0  # a viewer cannot create
    page.get_by_role("link", name="Reports").click()
    page.locator(".st-key-report_pick").wait_for()  # the Reports page, with a report to pick
    page.locator("td", has_text="Beta sales").first.wait_for(state="attached")
    assert "Video performance" not in page.locator("[data-testid='stMain']").text_content()
    assert "tenant=beta" in page.url
    shoot(page, "viewer-of-another-tenant", tmp_path)

    # When the viewer changes their password on My account
    page.get_by_role("link", name="My account").click()
    page.get_by_role("heading", name="Change your password").wait_for()
    page.locator("td", has_text="Beta Corp").first.wait_for(state="attached")  # tenant, role
    page.get_by_role("textbox", name="Current password").fill(PASSWORD)
    page.get_by_role("textbox", name="New password", exact=True).fill("an even longer password")
    page.get_by_role("textbox", name="New password again").fill("an even longer password")
    page.get_by_role("button", name="Change password").click()

    # Then they are told, and stay signed in
    page.get_by_text("Password changed.").wait_for()
    assert page.get_by_role("button", name="Log out").is_visible()
    shoot(page, "my-account", tmp_path)
