"""Logging in: argon2 against the database, one neutral sentence for every refusal, a lockout
(of the client that failed, `tests/services/test_login_throttle.py` has the rest) that
survives a restart, rehashing when the argon2 parameters change, idle expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type
from sqlmodel import Session, select

from models.db import get_engine
from models.errors import LoginRefused
from models.tenancy import User
from services.accounts import LOCK_MINUTES, MAX_FAILURES, REFUSAL, authenticate
from services.admin_sessions import session_expired
from tests.seeding import add_tenant, add_user

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def ana(session: Session) -> int:
    tenant = add_tenant(session, "acme", "Acme")
    user_id = add_user(session, "ana@acme.example", tenant, "editor", PASSWORD).user_id
    session.commit()
    return user_id


def refused(session: Session, email: str, password: str, now: datetime = NOW) -> str:
    with pytest.raises(LoginRefused) as caught:
        authenticate(session, email, password, now)
    return str(caught.value)


def stored(db_url: str, user_id: int) -> User:
    """The user as a fresh session (a restarted admin) reads it."""
    with Session(get_engine(db_url)) as fresh:
        return fresh.get(User, user_id)


def test_right_password_logs_in_and_stamps_last_login(session: Session, db_url: str, ana: int) -> None:
    assert authenticate(session, "ana@acme.example", PASSWORD, NOW) == ana
    user = stored(db_url, ana)
    assert user.last_login_at == NOW
    assert user.failed_logins == 0 and user.locked_until is None


def test_every_refusal_is_the_same_sentence(session: Session, ana: int) -> None:
    wrong_password = refused(session, "ana@acme.example", "not the password")
    unknown = refused(session, "nobody@acme.example", PASSWORD)
    not_an_address = refused(session, "not an address", PASSWORD)
    user = session.get(User, ana)
    user.active = False
    session.commit()
    deactivated = refused(session, "ana@acme.example", PASSWORD, NOW + timedelta(minutes=1))
    assert wrong_password == unknown == not_an_address == deactivated == REFUSAL
    assert REFUSAL.count(".") == 1 and REFUSAL.endswith(".")


def apart(attempt: int) -> datetime:
    """The moment of the `attempt`-th try, each past the wait the one before it set."""
    return NOW + timedelta(seconds=10 * attempt)


def test_the_fifth_failure_locks_the_address_from_that_client_until_the_lock_passes(
    session: Session, db_url: str, ana: int
) -> None:
    # The lock is the client's, for that address: the account itself is not locked.
    for attempt in range(MAX_FAILURES):
        refused(session, "ana@acme.example", "wrong", apart(attempt))
    unlocked = apart(0) + timedelta(minutes=LOCK_MINUTES)
    assert stored(db_url, ana).locked_until is None

    # The right password from that client is refused while locked, saying when to try again
    locked = refused(session, "ana@acme.example", PASSWORD, unlocked - timedelta(seconds=1))
    assert locked == ("Too many failed logins for this e-mail from your network address; try "
                      "again in 1 second.")
    assert authenticate(session, "ana@acme.example", PASSWORD, unlocked) == ana
    assert stored(db_url, ana).last_login_at == unlocked


def test_a_passed_lock_starts_a_fresh_count(session: Session, ana: int) -> None:
    for attempt in range(MAX_FAILURES):
        refused(session, "ana@acme.example", "wrong", apart(attempt))
    after = apart(MAX_FAILURES) + timedelta(minutes=LOCK_MINUTES)
    assert refused(session, "ana@acme.example", "wrong", after) == REFUSAL
    assert refused(session, "ana@acme.example", "wrong", after + timedelta(seconds=5)) == REFUSAL


def test_a_success_resets_the_count(session: Session, ana: int) -> None:
    for attempt in range(MAX_FAILURES - 1):
        refused(session, "ana@acme.example", "wrong", apart(attempt))
    authenticate(session, "ana@acme.example", PASSWORD, apart(MAX_FAILURES))
    for attempt in range(MAX_FAILURES - 1):  # four more, and the right one still works
        refused(session, "ana@acme.example", "wrong", apart(MAX_FAILURES + 1 + attempt))
    assert authenticate(session, "ana@acme.example", PASSWORD, apart(2 * MAX_FAILURES + 1)) == ana


def test_the_lock_survives_a_restart(db_url: str, ana: int) -> None:
    for attempt in range(MAX_FAILURES):
        with Session(get_engine(db_url)) as session:  # a new session for every attempt
            refused(session, "ana@acme.example", "wrong", apart(attempt))
    get_engine(db_url).dispose()  # drop pooled connections too, as a restarted process would
    unlocked = apart(0) + timedelta(minutes=LOCK_MINUTES)
    with Session(get_engine(db_url)) as session:
        assert refused(session, "ana@acme.example", PASSWORD, unlocked - timedelta(minutes=1)) != REFUSAL
    with Session(get_engine(db_url)) as session:
        assert authenticate(session, "ana@acme.example", PASSWORD, unlocked) == ana


def test_a_weaker_hash_is_rehashed_on_login(session: Session, db_url: str, ana: int) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    user = session.get(User, ana)
    user.password_hash = weak
    session.commit()
    current = PasswordHasher()
    assert current.check_needs_rehash(weak)

    assert authenticate(session, "ana@acme.example", PASSWORD, NOW) == ana
    rehashed = stored(db_url, ana).password_hash
    assert rehashed != weak
    assert not current.check_needs_rehash(rehashed)
    assert f"m={current.memory_cost},t={current.time_cost},p={current.parallelism}" in rehashed
    assert current.verify(rehashed, PASSWORD)
    # A second login leaves the now-current hash alone.
    authenticate(session, "ana@acme.example", PASSWORD, NOW)
    assert stored(db_url, ana).password_hash == rehashed


def test_the_failure_count_is_kept_when_the_callers_transaction_rolls_back(db_url: str, ana: int) -> None:
    from models.admin_sessions import LoginFailure
    from models.db import session_scope

    with pytest.raises(LoginRefused), session_scope(db_url) as session:
        authenticate(session, "ana@acme.example", "wrong", NOW)
    with Session(get_engine(db_url)) as fresh:
        assert [(f.email, f.client) for f in fresh.exec(select(LoginFailure))] == [
            ("ana@acme.example", "local")]


@pytest.mark.parametrize(("last_seen", "expired"), [
    (None, True),
    (NOW - timedelta(minutes=29, seconds=59), False),
    (NOW - timedelta(minutes=30), True),
    (NOW - timedelta(hours=5), True),
])
def test_session_expired(last_seen: datetime | None, expired: bool) -> None:
    assert session_expired(last_seen, NOW, 30) is expired
