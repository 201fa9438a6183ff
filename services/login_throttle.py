"""Login throttling: failed logins slow down, then stop, the client that makes them, and only
that client, so nobody can lock an account's owner out by failing on purpose.

Each failed login is a `login_failure` row: the address typed and the client's IP address.
From one client, each failure for an address makes its next try wait longer (1, 2, 4, 8 s);
MAX_FAILURES within LOCK_MINUTES lock that address out from that client until the first of
them is LOCK_MINUTES old, while the right password from any other client still works. A
client with CLIENT_FAILURES failures within LOCK_MINUTES, whatever the addresses, is refused
for every address the same way. An unknown address counts as a known one does, so the
refusals tell nothing about who has an account. A success clears its address's failures
from that client.

The attempt is written before the password is checked (`attempt`), so parallel tries see each
other: however many race past the waits, at most MAX_FAILURES (or CLIENT_FAILURES) are
checked within the window.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from models.admin_sessions import LoginFailure
from models.errors import InvalidInput
from models.recipients import normalise_email

MAX_FAILURES = 5       # for one address from one client, within LOCK_MINUTES
CLIENT_FAILURES = 20   # from one client, whatever the addresses, within LOCK_MINUTES
LOCK_MINUTES = 15
KEPT = timedelta(days=1)  # older failures are deleted at the next one
UNKNOWN_CLIENT = "local"  # a client whose address the admin's server does not see (localhost)

log = logging.getLogger("herald.admin")


def account_key(email: str) -> str:
    """The address a failure counts against: normalised, or "" for text that is not an address
    (a password typed into the e-mail field is not kept)."""
    try:
        return normalise_email(email or "")
    except InvalidInput:
        return ""


def client_key(address: str | None) -> str:
    return (address or UNKNOWN_CLIENT)[:64]


def backoff(failures: int) -> timedelta:
    """How long the next try waits after `failures` failures in a row (1 s, doubling)."""
    return timedelta(seconds=2 ** (failures - 1)) if failures else timedelta(0)


def wait_refusal(session: Session, email: str, client: str, now: datetime) -> str | None:
    """The sentence refusing a login from `client` for `email` now, or None if it may be tried."""
    from_client = _recent(session, now, LoginFailure.client == client, CLIENT_FAILURES)
    if len(from_client) >= CLIENT_FAILURES:
        until = from_client[-1] + timedelta(minutes=LOCK_MINUTES)
        return (f"Too many failed logins from your network address; try again in "
                f"{_wait_text(until - now)}.")
    mine = _recent(session, now, sa.and_(LoginFailure.email == email,
                                         LoginFailure.client == client), MAX_FAILURES)
    if len(mine) >= MAX_FAILURES:
        until = mine[-1] + timedelta(minutes=LOCK_MINUTES)
    elif mine and now < mine[0] + backoff(len(mine)):
        until = mine[0] + backoff(len(mine))
    else:
        return None
    return (f"Too many failed logins for this e-mail from your network address; try again in "
            f"{_wait_text(until - now)}.")


def attempt(session: Session, email: str, client: str, now: datetime) -> int:
    """Write a try as a failure before its password is checked, and commit; a success takes it
    back (`succeeded`). Older failures than KEPT go. Returns the row's id."""
    session.execute(sa.delete(LoginFailure).where(LoginFailure.at < now - KEPT))
    row = LoginFailure(email=email, client=client, at=now)
    session.add(row)
    session.commit()
    return row.id


def raced(session: Session, email: str, client: str, now: datetime, row_id: int) -> bool:
    """Whether parallel tries, each written before this one, leave it past a limit."""
    window = now - timedelta(minutes=LOCK_MINUTES)
    earlier = sa.and_(LoginFailure.at > window, LoginFailure.id < row_id)
    count = sa.select(sa.func.count()).select_from(LoginFailure)
    mine = session.execute(count.where(earlier, LoginFailure.email == email,
                                       LoginFailure.client == client)).scalar_one()
    from_client = session.execute(count.where(earlier, LoginFailure.client == client)).scalar_one()
    return mine >= MAX_FAILURES or from_client >= CLIENT_FAILURES


def failed(email: str, client: str, reason: str) -> None:
    log.warning("admin login failed for %s from %s: %s", email or "(not an address)", client,
                reason)


def succeeded(session: Session, email: str, client: str) -> None:
    """A login that worked: its address's failures from that client are forgotten (not
    committed here: the login's own commit does)."""
    session.execute(sa.delete(LoginFailure).where(LoginFailure.email == email,
                                                  LoginFailure.client == client))


def forget_account(session: Session, email: str) -> None:
    """A new password: the address's failures from every client are forgotten."""
    session.execute(sa.delete(LoginFailure).where(LoginFailure.email == email))


def _recent(session: Session, now: datetime, where, limit: int) -> list[datetime]:
    """The moments of the `limit` newest failures matching `where` within LOCK_MINUTES, newest
    first."""
    window = now - timedelta(minutes=LOCK_MINUTES)
    return list(session.execute(sa.select(LoginFailure.at).where(where, LoginFailure.at > window)
                                .order_by(LoginFailure.at.desc(), LoginFailure.id.desc())
                                .limit(limit)).scalars())


def _wait_text(delta: timedelta) -> str:
    seconds = max(1, math.ceil(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"
