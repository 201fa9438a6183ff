"""Accounts: logging in to the admin, passwords, and a user's own account.

Login: argon2 passwords against `app_user`. Failed logins slow down and then stop the client
that makes them, for that address, and a client failing across many addresses, but never the
right password from another client (`services.login_throttle`, kept in the database, so a
restart does not reset it). A success stamps `last_login_at`. A wrong current password in a
password change counts against the account itself (`failed_logins`, `locked_until`): only
someone signed in as the user can make it, and MAX_FAILURES in a row lock password changes,
not logins, for LOCK_MINUTES. A password change ends the user's other admin sessions
(`services.admin_sessions`).
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timedelta
from typing import NamedTuple, NoReturn

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from models.admin_sessions import Ended
from models.errors import InvalidInput, LoginRefused, NotFound, PermissionDenied
from models.recipients import normalise_email
from models.tenancy import Membership, Tenant, User
from services import admin_sessions, login_throttle
from services.access import Operator, Viewer, Who
from services.login_throttle import LOCK_MINUTES, MAX_FAILURES

MIN_PASSWORD = 8  # characters
REFUSAL = (f"Wrong e-mail or password; check both and try again ({MAX_FAILURES} failures within "
           f"{LOCK_MINUTES} minutes lock this e-mail out from your network address for a while).")

# Every password is hashed, and checked, with these parameters (a login rehashes older ones).
HASHER = PasswordHasher()


# --- users and passwords ---------------------------------------------------------------------------

def find_user(session: Session, email: str) -> User | None:
    """The user with this e-mail (normalised as it was when written), or None."""
    try:
        address = normalise_email(email or "")
    except InvalidInput:
        return None
    return session.exec(select(User).where(User.email == address)).first()


def create_user(session: Session, email: str, password: str | None) -> tuple[User, str | None]:
    """A new active user with `password`, or a generated one; returns it with the generated
    password (shown once) if any. The caller gives them a membership."""
    if password is not None:
        check_password(password)
    generated = secrets.token_urlsafe(12) if password is None else None
    user = User(email=normalise_email(email), password_hash=HASHER.hash(password or generated))
    session.add(user)
    session.flush()
    return user, generated


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"The password is shorter than {MIN_PASSWORD} characters; choose a "
                           f"longer one.")


def verify_password(user: User, password: str) -> bool:
    try:
        return HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(session: Session, user: User, password: str, now: datetime,
                 keep: int | None = None) -> None:
    """Give `user` a new password (not the current one), lift every lockout of the account (its
    failed logins from every client too), and end their admin sessions but `keep` (the one that
    changed it, if any)."""
    check_password(password)
    if verify_password(user, password):
        raise InvalidInput("The new password is the same as the current one; choose a "
                           "different one.")
    user.password_hash = HASHER.hash(password)
    user.password_changed_at = now
    user.failed_logins, user.locked_until = 0, None
    login_throttle.forget_account(session, user.email)
    admin_sessions.end_all(session, user.id, now, Ended.PASSWORD, keep=keep)


def reset_password(session: Session, who: Who, email: str, password: str | None,
                   now: datetime) -> tuple[str, str | None]:
    """An operator's reset (`herald user set-password`): `password`, or a generated one.
    Returns the user's address and the generated password (shown once), if any."""
    if not isinstance(who, Operator):
        raise PermissionDenied("Only herald's operator resets another user's password; change "
                               "your own on the My account page.")
    address = normalise_email(email)
    user = session.exec(select(User).where(User.email == address)).first()
    if user is None:
        raise NotFound(f"No user has the e-mail {address}; check the address, or create the "
                       f"user with `herald user add`.")
    generated = secrets.token_urlsafe(12) if password is None else None
    set_password(session, user, password or generated, now)
    session.flush()
    return address, generated


# --- logging in -----------------------------------------------------------------------------------

def authenticate(session: Session, email: str, password: str, now: datetime,
                 client: str | None = None) -> int:
    """The id of the active user with this e-mail and password, trying from `client` (an IP
    address; None: the admin's own host); else LoginRefused: one sentence for a wrong
    e-mail or password whatever the reason, another saying when to try again while
    `services.login_throttle` holds this client back.

    Commits its own writes (the failure, a rehash, `last_login_at`), so a refusal still counts
    when the caller's transaction is rolled back.
    """
    address, client = login_throttle.account_key(email), login_throttle.client_key(client)
    waiting = login_throttle.wait_refusal(session, address, client, now)
    if waiting:
        _refuse(session, address, client, "refused while throttled", waiting)
    attempt = login_throttle.attempt(session, address, client, now)
    if login_throttle.raced(session, address, client, now, attempt):
        _refuse(session, address, client, "refused: parallel tries passed a limit",
                login_throttle.wait_refusal(session, address, client, now) or REFUSAL)
    user = find_user(session, email)
    if user is None or not user.active:
        _check_dummy(password)  # the same work as a real check, so timing tells nothing
        _refuse(session, address, client, "unknown or deactivated account", REFUSAL)
    if not verify_password(user, password):
        _refuse(session, address, client, "wrong password", REFUSAL)
    login_throttle.succeeded(session, address, client)
    if HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = HASHER.hash(password)
    user.last_login_at = now
    session.commit()
    return user.id


def _refuse(session: Session, address: str, client: str, reason: str, sentence: str) -> NoReturn:
    """Log the failure (never the password), end the transaction, refuse with `sentence`."""
    login_throttle.failed(address, client, reason)
    session.commit()
    raise LoginRefused(sentence)


def _locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and now < user.locked_until


def _record_failure(session: Session, user: User, now: datetime) -> None:
    """Count a wrong current password (atomically, so parallel attempts all count); the
    MAX_FAILURES-th locks password changes. A lock that has passed starts a fresh count."""
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


# --- my account --------------------------------------------------------------------------------

class Account(NamedTuple):
    email: str
    last_login_at: datetime | None
    password_changed_at: datetime | None     # None: unchanged since the account was made
    tenants: tuple[tuple[str, str], ...]     # (tenant name, role), by name


def my_account(session: Session, viewer: Viewer) -> Account:
    """What the signed-in user sees of their own account (and only their own)."""
    user = session.get(User, viewer.user_id)
    tenants = session.exec(select(Tenant.name, Membership.role)
                           .join(Membership, Membership.tenant_id == Tenant.id)
                           .where(Membership.user_id == viewer.user_id)
                           .order_by(Tenant.name)).all()
    return Account(email=user.email, last_login_at=user.last_login_at,
                   password_changed_at=user.password_changed_at,
                   tenants=tuple((name, str(role)) for name, role in tenants))


def change_own_password(session: Session, viewer: Viewer, current: str, new: str, confirm: str,
                        now: datetime, keep: int | None = None) -> None:
    """The signed-in user's new password. A wrong current one counts against the account (a
    session left open is not a way to guess it): MAX_FAILURES in a row lock password changes,
    not logins, for LOCK_MINUTES. Commits; every admin session of the user ends but `keep`
    (the one asking)."""
    user = session.get(User, viewer.user_id)
    if _locked(user, now):
        raise InvalidInput(f"Too many wrong passwords in a row: password changes are locked for "
                           f"{LOCK_MINUTES} minutes; try again later.")
    if not verify_password(user, current or ""):
        _record_failure(session, user, now)
        raise InvalidInput(f"The current password is wrong; type it again ({MAX_FAILURES} "
                           f"failures in a row lock password changes for {LOCK_MINUTES} "
                           f"minutes).")
    if new != confirm:
        raise InvalidInput("The new password and its confirmation differ; type the new one "
                           "twice.")
    set_password(session, user, new or "", now, keep=keep)
    session.commit()
