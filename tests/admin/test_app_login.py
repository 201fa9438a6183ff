"""The admin app as a visitor meets it (Streamlit's AppTest on the test database): only the
login form until someone logs in, the sidebar and tenant picker after, Log out, idle expiry
(measured on the server's session row); and `herald admin` serving it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, delete
from streamlit.testing.v1 import AppTest

import admin
from admin import ui
from herald.cli.admin import app_path, streamlit_command
from models.admin_sessions import AdminSession
from models.db import utcnow
from models.settings import get_settings
from models.tenancy import Membership, User
from services.accounts import REFUSAL
from tests.seeding import add_tenant, add_user

PASSWORD = "correct horse battery"
APP = Path(admin.__file__).parent / "app.py"
SERVER = APP.with_name("server.py")  # what `herald admin` serves: APP, and the cookie's route
SHOWN = ("title", "header", "subheader", "markdown", "text", "caption", "info", "error",
         "warning", "success")


@pytest.fixture
def people(session: Session) -> dict[str, int]:
    """Ana: editor of Acme and viewer of Beta; Bob: member of Gamma only."""
    acme, beta, gamma = (add_tenant(session, "acme", "Acme"), add_tenant(session, "beta", "Beta"),
                         add_tenant(session, "gamma", "Gamma"))
    ana = add_user(session, "ana@acme.example", acme, "editor", PASSWORD).user_id
    add_user(session, "ana@acme.example", beta, "viewer")
    bob = add_user(session, "bob@gamma.example", gamma, "admin", PASSWORD).user_id
    session.commit()
    return {"ana": ana, "bob": bob}


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30)


def shown(block) -> str:
    """Every text the block shows, one per line, as it reads on the page (the pages escape
    what markdown would make into links, emphasis and the like: `admin.format.md`)."""
    return "\n".join(readable(str(e.value)) for kind in SHOWN for e in getattr(block, kind))


def readable(markdown: str) -> str:
    """Escaped markdown as it reads: `\\[x\\]` is `[x]`, and the invisible word joiners
    that keep an address or a URL from becoming a link are not seen."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


def assert_login_form(at: AppTest) -> None:
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Email", "Password"]
    assert [b.label for b in at.button] == ["Log in"]
    assert not at.selectbox and not at.sidebar.children


def log_in(at: AppTest, email: str, password: str = PASSWORD) -> AppTest:
    fields = {t.label: t for t in at.text_input}
    fields["Email"].input(email)
    fields["Password"].input(password)
    next(b for b in at.button if b.label == "Log in").click()
    return at.run()


def logged_in(email: str = "ana@acme.example") -> AppTest:
    at = log_in(new_app().run(), email)
    assert not at.exception and at.sidebar.selectbox, shown(at.main)
    return at


def test_an_anonymous_visitor_sees_only_the_login_form(people) -> None:
    at = new_app()
    at.query_params["tenant"] = "acme"
    at.run()
    assert_login_form(at)
    assert at.title[0].value == "herald admin"
    page = shown(at.main) + shown(at.sidebar)
    assert "Acme" not in page and "Schedules" not in page and "ana@" not in page
    assert ui.SESSION_ID not in at.session_state


def test_an_anonymous_visitor_cannot_reach_a_page(people) -> None:
    at = new_app().run()
    with pytest.raises(ValueError):  # no page script is registered for an anonymous visitor
        at.switch_page("schedules/page.py")
    assert_login_form(at.run())


def test_a_page_url_shows_the_login_form_then_the_page(people) -> None:
    at = logged_in()
    at.switch_page("reports/page.py").run()
    at.sidebar.button[0].click().run()  # logged out while on the Reports URL
    assert_login_form(at)
    assert "has no reports yet" not in shown(at.main)
    at = log_in(at, "ana@acme.example")
    assert at.title[0].value == "Reports"
    assert "Acme has no reports yet." in shown(at.main)


def test_wrong_credentials_get_one_sentence(people) -> None:
    at = log_in(new_app().run(), "ana@acme.example", "not the password")
    assert_login_form(at)
    assert [e.value for e in at.error] == [REFUSAL]
    at = log_in(at, "nobody@acme.example", PASSWORD)
    assert [e.value for e in at.error] == [REFUSAL]
    assert ui.SESSION_ID not in at.session_state


def test_right_password_shows_the_sidebar_and_the_first_tenant(people) -> None:
    at = logged_in()
    assert "ana@acme.example" in shown(at.sidebar)
    picker = at.sidebar.selectbox[0]
    assert picker.label == "Tenant" and picker.options == ["Acme", "Beta"] and picker.value == "acme"
    assert at.query_params["tenant"] == "acme"
    assert [b.label for b in at.sidebar.button] == ["Log out"]
    assert at.title[0].value == "Schedules"
    assert "No schedules yet." in shown(at.main)
    assert "Email" not in [t.label for t in at.text_input]  # the login form is gone


def test_the_tenant_choice_lands_in_the_url_and_stays_across_pages(people) -> None:
    at = logged_in()
    at.sidebar.selectbox[0].select("beta").run()
    assert at.query_params["tenant"] == "beta"
    assert at.title[0].value == "Schedules"
    at.switch_page("reports/page.py").run()
    assert at.query_params["tenant"] == "beta"
    assert at.sidebar.selectbox[0].value == "beta"
    assert "Beta has no reports yet." in shown(at.main)


def test_a_tenant_in_the_url_picks_it_and_anothers_is_ignored(people) -> None:
    at = new_app()
    at.query_params["tenant"] = "beta"
    at = log_in(at.run(), "ana@acme.example")
    assert at.sidebar.selectbox[0].value == "beta"

    at.query_params["tenant"] = "gamma"  # Bob's tenant, not Ana's
    at.run()
    assert at.sidebar.selectbox[0].value == "beta"  # her last choice, not Gamma
    assert at.query_params["tenant"] == "beta"
    assert "Gamma" not in shown(at.main) + shown(at.sidebar)

    at = new_app()
    at.query_params["tenant"] = "gamma"
    at = log_in(at.run(), "ana@acme.example")
    assert at.sidebar.selectbox[0].value == "acme" and at.query_params["tenant"] == "acme"


def test_a_user_without_tenants_is_told_so(session: Session, people) -> None:
    session.exec(delete(Membership).where(Membership.user_id == people["bob"]))
    session.commit()
    at = log_in(new_app().run(), "bob@gamma.example")
    assert not at.exception
    assert [i.value for i in at.info] == [
        "You are not a member of any tenant yet; ask a tenant admin to add you."]
    assert not at.sidebar.selectbox and [b.label for b in at.sidebar.button] == ["Log out"]


def test_log_out_returns_to_the_login_form(people) -> None:
    at = logged_in()
    at.sidebar.button[0].click().run()
    assert_login_form(at)
    assert ui.SESSION_ID not in at.session_state
    assert_login_form(at.run())


def last_seen(session: Session, when) -> None:
    """Every admin session was last seen `when`, as the server records it."""
    session.execute(sa.update(AdminSession).values(last_seen_at=when))
    session.commit()


def test_an_idle_session_returns_to_the_login_form(session: Session, people,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_ADMIN_IDLE_MINUTES", "5")
    get_settings.cache_clear()
    at = logged_in()
    last_seen(session, utcnow() - timedelta(minutes=4))
    at.run()
    assert at.sidebar.selectbox  # still in: each interaction renews the session
    last_seen(session, utcnow() - timedelta(minutes=5, seconds=1))
    at.run()
    assert_login_form(at)
    assert [i.value for i in at.info] == ["Your session ended after 5 idle minutes; log in again."]
    assert ui.SESSION_ID not in at.session_state


def test_a_user_deactivated_meanwhile_is_logged_out(session: Session, people) -> None:
    at = logged_in()
    session.get(User, people["ana"]).active = False
    session.commit()
    at.run()
    assert_login_form(at)
    assert "deactivated" in shown(at.main)


def test_no_pages_directory_beside_the_entry_script() -> None:
    # Streamlit treats a `pages/` folder beside the entry script as its old multipage mode and
    # runs a requested page without the entry script (no login) until st.navigation is first
    # called; AppTest does so on every run. Each page lives in a package of its own.
    assert not (APP.parent / "pages").exists()
    assert (APP.parent / "schedules" / "page.py").is_file()


def test_herald_admin_serves_the_app(db_url: str, tmp_path: Path) -> None:
    assert app_path() == SERVER
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, DATABASE_URL=db_url)
    server = subprocess.Popen([sys.executable, "-m", "herald", "admin", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout.readline().strip() == f"herald admin at http://127.0.0.1:{port}"
        body, deadline = None, time.monotonic() + 30
        while body is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.3)
        assert body == "ok", f"no health answer; server exited with {server.poll()}"
    finally:
        server.terminate()  # the server is this very process: `herald admin` execs Streamlit
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


def test_the_streamlit_command_is_headless_on_the_given_port() -> None:
    command = streamlit_command(8600, "0.0.0.0")
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(SERVER)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options == {"--server.headless": "true", "--server.port": "8600",
                       "--server.address": "0.0.0.0", "--browser.gatherUsageStats": "false",
                       "--client.toolbarMode": "viewer"}
