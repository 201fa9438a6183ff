"""Admin sessions on the server: a login's one-time code swapped, once, for the cookie's token;
only hashes stored; the cookie resumes the session until it ends (logged out, idle, a new
password, the account deactivated); and the route that sets the cookie, with its flags.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select
from starlette.applications import Starlette

from admin.session_cookie import COOKIE, PATH, ROUTES
from models.admin_sessions import AdminSession, Ended
from models.db import utcnow
from models.errors import SessionEnded
from models.tenancy import User
from services import admin_sessions
from services.access import OPERATOR, load_viewer
from services.accounts import change_own_password, reset_password
from tests.seeding import add_tenant, add_user

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD, NEW = "correct horse battery", "a much longer passphrase"
ANA = "ana@acme.example"


@pytest.fixture
def ana(session: Session) -> int:
    acme = add_tenant(session, "acme", "Acme")
    user_id = add_user(session, ANA, acme, "editor", PASSWORD).user_id
    session.commit()
    return user_id


def signed_in(session: Session, user_id: int, now: datetime = NOW) -> tuple[int, str]:
    """A login's session and the token its cookie holds."""
    session_id, code = admin_sessions.start(session, user_id, now)
    token = admin_sessions.claim(session, code, now)
    session.commit()
    return session_id, token


def ended(session: Session, session_id: int, idle_minutes: int = 30,
          now: datetime = NOW) -> str | None:
    """The sentence the session's next interaction gets, or None while it lives."""
    try:
        admin_sessions.check(session, session_id, now, idle_minutes)
    except SessionEnded as exc:
        return str(exc)
    return None


def test_the_cookie_resumes_the_session_and_only_hashes_are_stored(session: Session,
                                                                   ana: int) -> None:
    session_id, code = admin_sessions.start(session, ana, NOW)
    assert admin_sessions.resume(session, code) is None  # the code is not a cookie

    token = admin_sessions.claim(session, code, NOW + timedelta(seconds=1))
    assert token and token != code and len(token) >= 43
    assert admin_sessions.claim(session, code, NOW) is None  # once
    assert admin_sessions.resume(session, token) == session_id
    assert admin_sessions.resume(session, None) is None
    assert admin_sessions.resume(session, token + "x") is None

    row = session.get(AdminSession, session_id)
    session.refresh(row)
    assert row.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.model_dump_json() and code not in row.model_dump_json()
    assert admin_sessions.check(session, session_id, NOW + timedelta(minutes=1), 30).email == ANA


def test_a_late_code_gets_no_cookie(session: Session, ana: int) -> None:
    _, code = admin_sessions.start(session, ana, NOW)
    assert admin_sessions.claim(session, code, NOW + admin_sessions.HANDOFF) is None
    assert admin_sessions.claim(session, "a guess", NOW) is None


def test_each_interaction_renews_it_and_idleness_ends_it(session: Session, ana: int) -> None:
    session_id, token = signed_in(session, ana)
    assert ended(session, session_id, now=NOW + timedelta(minutes=29)) is None
    assert ended(session, session_id, now=NOW + timedelta(minutes=58)) is None  # renewed at 29
    assert ended(session, session_id, now=NOW + timedelta(minutes=88)) == (
        "Your session ended after 30 idle minutes; log in again.")
    assert admin_sessions.resume(session, token) is None  # a reload asks for a login
    assert session.exec(select(AdminSession.ended_why)).one() == Ended.IDLE


def test_logging_out_ends_it_in_every_tab(session: Session, ana: int) -> None:
    session_id, token = signed_in(session, ana)
    admin_sessions.end(session, session_id, NOW, Ended.LOGOUT)
    session.commit()
    assert ended(session, session_id) == "You logged out in another tab or window; log in again."
    assert admin_sessions.resume(session, token) is None


def test_a_deactivated_account_is_signed_out(session: Session, ana: int) -> None:
    session_id, _ = signed_in(session, ana)
    session.get(User, ana).active = False
    session.commit()
    assert ended(session, session_id) == (
        "This account no longer exists or was deactivated; log in again.")


def test_a_new_password_ends_the_other_sessions_and_keeps_the_one_that_changed_it(
    session: Session, ana: int
) -> None:
    laptop, _ = signed_in(session, ana)
    phone, phone_token = signed_in(session, ana)
    change_own_password(session, load_viewer(session, ana), PASSWORD, NEW, NEW, NOW, keep=laptop)
    assert ended(session, laptop) is None
    assert ended(session, phone) == "This account's password was changed; log in with the new one."
    assert admin_sessions.resume(session, phone_token) is None

    # An operator's reset (`herald user set-password`) ends every one of them
    reset_password(session, OPERATOR, ANA, "another long password", NOW)
    session.commit()
    assert ended(session, laptop) == "This account's password was changed; log in with the new one."


def test_old_sessions_are_deleted_at_the_next_login(session: Session, ana: int) -> None:
    old, _ = signed_in(session, ana, NOW - admin_sessions.KEPT - timedelta(minutes=1))
    recent, _ = signed_in(session, ana, NOW - timedelta(days=1))
    signed_in(session, ana)
    assert old not in session.exec(select(AdminSession.id)).all()
    assert recent in session.exec(select(AdminSession.id)).all()


# --- the route that sets the cookie ---------------------------------------------------------

def call(method: str, code: str | None = None, scheme: str = "https",
         **headers: str) -> httpx.Response:
    """One request to the cookie's route, served as `herald admin` serves it."""
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=Starlette(routes=ROUTES))
        base_url = f"{scheme}://admin.example"
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.request(method, f"/{PATH}", content=code, headers=headers)
    return asyncio.run(request())


def a_login(session: Session, user_id: int) -> tuple[int, str]:
    started = admin_sessions.start(session, user_id, utcnow())
    session.commit()
    return started


def test_the_route_sets_the_cookie_httponly_strict_and_secure_over_https(
    session: Session, ana: int
) -> None:
    session_id, code = a_login(session, ana)

    answer = call("POST", code)
    assert answer.status_code == 204
    cookie = answer.headers["set-cookie"]
    token = cookie.split(";")[0].removeprefix(f"{COOKIE}=")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert not any(f.startswith(("expires", "max-age")) for f in flags)  # ends with the browser
    assert admin_sessions.resume(session, token) == session_id

    assert call("POST", code).status_code == 403  # once
    assert call("POST", "x" * 200).status_code == 403

    cleared = call("DELETE")
    assert cleared.status_code == 204 and f'{COOKIE}=""' in cleared.headers["set-cookie"]


def test_the_route_answers_only_the_admins_own_pages(session: Session, ana: int) -> None:
    _, code = a_login(session, ana)
    elsewhere = call("POST", code, **{"Sec-Fetch-Site": "cross-site"})
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
    assert call("POST", code, **{"Sec-Fetch-Site": "same-origin"}).status_code == 204


def test_over_http_the_cookie_is_not_secure(session: Session, ana: int) -> None:
    _, code = a_login(session, ana)
    cookie = call("POST", code, scheme="http").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
