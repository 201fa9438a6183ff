"""Logging in to the admin: argon2 passwords against `app_user`, a lockout after repeated
failures, and idle expiry.

Policy: after MAX_FAILURES failed logins in a row the account is locked for LOCK_MINUTES;
during the lock even the right password is refused, and attempts neither count nor extend
it. The counter and the lock live in `app_user` (`failed_logins`, `locked_until`), so a
restart does not reset them; a success resets the counter and stamps `last_login_at`.
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from models import catalog
from models.errors import InvalidInput, LoginRefused
from models.recipients import normalise_email
from models.tenancy import User

MAX_FAILURES = 5
LOCK_MINUTES = 15
REFUSAL = (f"Wrong e-mail or password; check both and try again ({MAX_FAILURES} failures in a "
           f"row lock the account for {LOCK_MINUTES} minutes).")

# The hasher users are created with (`herald user add`): its parameters are the current ones.
HASHER = catalog._hasher


def authenticate(session: Session, email: str, password: str, now: datetime) -> int:
    """The id of the active, unlocked user with this e-mail and password; else LoginRefused,
    with the same sentence whatever the reason.

    Commits its own writes (failure count, lock, rehash, `last_login_at`), so a refusal
    still counts when the caller's transaction is rolled back.
    """
    user = _find_user(session, email)
    if user is None or not user.active or _locked(user, now):
        _check_dummy(password)  # the same work as a real check, so timing tells nothing
        raise LoginRefused(REFUSAL)
    if not catalog.verify_password(user, password):
        _record_failure(session, user, now)
        raise LoginRefused(REFUSAL)
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    session.commit()
    return user.id


def change_own_password(session: Session, user_id: int, current: str, new: str, confirm: str,
                        now: datetime) -> None:
    """The signed-in user's new password. The current one is checked as a login is: a wrong
    one counts towards the lockout (a session left open is not a way to guess it). Commits;
    every other session of the user ends (`ended_by_password_change`)."""
    user = session.get(User, user_id)
    if _locked(user, now):
        raise InvalidInput(f"Too many wrong passwords in a row: password changes are locked for "
                           f"{LOCK_MINUTES} minutes; try again later.")
    if not catalog.verify_password(user, current or ""):
        _record_failure(session, user, now)
        raise InvalidInput(f"The current password is wrong; type it again ({MAX_FAILURES} "
                           f"failures in a row lock the account for {LOCK_MINUTES} minutes).")
    if new != confirm:
        raise InvalidInput("The new password and its confirmation differ; type the new one "
                           "twice.")
    catalog.set_password(user, new or "", now)
    session.commit()


def ended_by_password_change(user: User, logged_in_at: datetime | None) -> bool:
    """Whether a session of `user` logged in at `logged_in_at` (None: before herald noted it)
    predates their last password change."""
    changed = user.password_changed_at
    return changed is not None and (logged_in_at is None or logged_in_at < changed)


def session_expired(last_seen: datetime | None, now: datetime, idle_minutes: int) -> bool:
    """Whether a session last used at `last_seen` (None: never) has been idle too long."""
    return last_seen is None or now - last_seen >= timedelta(minutes=idle_minutes)


def _find_user(session: Session, email: str) -> User | None:
    try:
        address = normalise_email(email or "")
    except InvalidInput:
        return None
    return session.exec(select(User).where(User.email == address)).first()


def _locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and now < user.locked_until


def _record_failure(session: Session, user: User, now: datetime) -> None:
    """Count a failure (atomically, so parallel attempts all count); the MAX_FAILURES-th locks.
    A lock that has passed starts a fresh count."""
    if user.locked_until is not None:
        session.execute(sa.update(User).where(User.id == user.id, User.locked_until <= now)
                        .values(failed_logins=0, locked_until=None))
    failures = session.execute(
        sa.update(User).where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1).returning(User.failed_logins)
    ).scalar_one()
    if failures >= MAX_FAILURES:
        session.execute(sa.update(User).where(User.id == user.id)
                        .values(locked_until=now + timedelta(minutes=LOCK_MINUTES)))
    session.commit()


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def _check_dummy(password: str) -> None:
    try:
        HASHER.verify(_dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        pass
