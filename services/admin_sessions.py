"""Admin sessions: staying signed in to the admin across reloads, tabs and links, until the
user logs out, goes idle, gets a new password or is deactivated.

A login `start`s a session and gets a one-time code for its tab; the tab hands the code to
the admin's server (`admin/session_cookie.py`), which `claim`s the session's token with it and
sets that as an HttpOnly cookie, so the token itself never reaches the page. A reload, another
tab or a link `resume`s the session from the cookie. Every interaction is `check`ed against the
row: ended elsewhere, idle since `last_seen_at`, or the account deactivated, and it ends here
too. Only hashes of the code and the token are stored, so a session is revoked by ending its row.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from models.admin_sessions import AdminSession, Ended
from models.errors import NotFound, SessionEnded
from services.access import Viewer, load_viewer
from services.tokens import secret_hash

HANDOFF = timedelta(minutes=2)  # how long after the login its code can be swapped for the cookie
KEPT = timedelta(days=30)       # sessions unused this long are deleted at their user's next login


def start(session: Session, user_id: int, now: datetime) -> tuple[int, str]:
    """A new session of the user who just logged in: its id, and the one-time code its tab
    swaps for the cookie (`claim`)."""
    session.execute(sa.delete(AdminSession).where(AdminSession.user_id == user_id,
                                                  AdminSession.last_seen_at < now - KEPT))
    code = secrets.token_urlsafe(32)
    row = AdminSession(user_id=user_id, secret_hash=secret_hash(code), created_at=now,
                       last_seen_at=now)
    session.add(row)
    session.flush()
    return row.id, code


def claim(session: Session, code: str, now: datetime) -> str | None:
    """The token for the cookie of the session whose login handed out `code`, once and within
    HANDOFF of it; None for an unknown, used or late code, or an ended session."""
    token = secrets.token_urlsafe(32)
    t = AdminSession
    claimed = session.execute(
        sa.update(t).where(t.secret_hash == secret_hash(code), t.claimed_at.is_(None),
                           t.ended_at.is_(None), t.created_at > now - HANDOFF)
        .values(secret_hash=secret_hash(token), claimed_at=now))
    return token if claimed.rowcount == 1 else None


def resume(session: Session, token: str | None) -> int | None:
    """The id of the live session whose cookie holds `token`; None without one."""
    if not token:
        return None
    t = AdminSession
    return session.exec(select(t.id).where(t.secret_hash == secret_hash(token),
                                           t.claimed_at.is_not(None), t.ended_at.is_(None))).first()


def check(session: Session, session_id: int, now: datetime, idle_minutes: int,
          tenant_id: int | None = None, seen: bool = True) -> Viewer:
    """The viewer signed in by session `session_id`, with this interaction recorded; raises
    SessionEnded, saying why, when it has ended, or ends now (idle for `idle_minutes`, the
    account deactivated, or, given `tenant_id`, no longer a member of that tenant). `seen=False`
    for what the user did not do (a page refreshing itself): idle time goes on counting.
    Commits, so a long page does not hold the session's row.

    Every use of a signed-in session goes through here: each run of a page, a self-refreshing
    part of one, and each download, when it is used rather than when it was drawn."""
    row = session.get(AdminSession, session_id)
    if row is None or row.ended_at is not None:
        raise SessionEnded(_why(Ended(row.ended_why) if row else Ended.GONE, idle_minutes))
    if session_expired(row.last_seen_at, now, idle_minutes):
        _end_now(session, session_id, now, Ended.IDLE)
        raise SessionEnded(_why(Ended.IDLE, idle_minutes))
    try:
        viewer = load_viewer(session, row.user_id)
    except NotFound:
        _end_now(session, session_id, now, Ended.GONE)
        raise SessionEnded(_why(Ended.GONE, idle_minutes)) from None
    if tenant_id is not None and viewer.role_in(tenant_id) is None:
        _end_now(session, session_id, now, Ended.ACCESS)
        raise SessionEnded(_why(Ended.ACCESS, idle_minutes))
    if seen:
        session.execute(sa.update(AdminSession).where(AdminSession.id == session_id)
                        .values(last_seen_at=now))
    session.commit()
    return viewer


def end(session: Session, session_id: int, now: datetime, why: Ended) -> None:
    """End one session (if it is live): its cookie no longer signs anyone in, in any tab."""
    session.execute(sa.update(AdminSession)
                    .where(AdminSession.id == session_id, AdminSession.ended_at.is_(None))
                    .values(ended_at=now, ended_why=why))


def end_all(session: Session, user_id: int, now: datetime, why: Ended,
            keep: int | None = None) -> None:
    """End every live session of the user but `keep` (the one that asked, if any)."""
    t = AdminSession
    others = [t.id != keep] if keep is not None else []
    session.execute(sa.update(t).where(t.user_id == user_id, t.ended_at.is_(None), *others)
                    .values(ended_at=now, ended_why=why))


def session_expired(last_seen: datetime | None, now: datetime, idle_minutes: int) -> bool:
    """Whether a session last used at `last_seen` (None: never) has been idle too long."""
    return last_seen is None or now - last_seen >= timedelta(minutes=idle_minutes)


def _end_now(session: Session, session_id: int, now: datetime, why: Ended) -> None:
    end(session, session_id, now, why)
    session.commit()


def _why(ended: Ended, idle_minutes: int) -> str:
    return {
        Ended.LOGOUT: "You logged out in another tab or window; log in again.",
        Ended.IDLE: f"Your session ended after {idle_minutes} idle minutes; log in again.",
        Ended.PASSWORD: "This account's password was changed; log in with the new one.",
        Ended.GONE: "This account no longer exists or was deactivated; log in again.",
        Ended.ACCESS: "Your access to that tenant was removed; log in again.",
    }[ended]

