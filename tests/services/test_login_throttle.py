"""Login throttling by client: failures from one client slow down, then lock out, that client
for that address, never the owner logging in from elsewhere; a client failing across many
addresses is refused for all of them; each failure is logged without the password. On both
backends, with two client addresses (as the admin's server sees them)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from models.admin_sessions import LoginFailure
from models.errors import LoginRefused
from services.access import OPERATOR
from services.accounts import REFUSAL, authenticate, reset_password
from services.login_throttle import CLIENT_FAILURES, LOCK_MINUTES, MAX_FAILURES, backoff
from tests.seeding import add_tenant, add_user

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ANA = "ana@acme.example"
ATTACKER, OWNER = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def ana(session: Session) -> int:
    tenant = add_tenant(session, "acme", "Acme")
    user_id = add_user(session, ANA, tenant, "editor", PASSWORD).user_id
    session.commit()
    return user_id


def refused(session: Session, email: str, password: str, now: datetime, client: str) -> str:
    with pytest.raises(LoginRefused) as caught:
        authenticate(session, email, password, now, client)
    return str(caught.value)


def apart(attempt: int) -> datetime:
    return NOW + timedelta(seconds=10 * attempt)  # past every backoff


def test_five_wrong_passwords_from_one_client_do_not_stop_the_owner_elsewhere(
    session: Session, ana: int
) -> None:
    # Given an attacker who failed five times for Ana's address: locked out from there
    for attempt in range(MAX_FAILURES):
        assert refused(session, ANA, "guess", apart(attempt), ATTACKER) == REFUSAL
    later = apart(MAX_FAILURES)
    assert refused(session, ANA, PASSWORD, later, ATTACKER).startswith("Too many failed logins")

    # When Ana logs in from her own address, at once: she is in
    assert authenticate(session, ANA, PASSWORD, later, OWNER) == ana
    # ... and the attacker's lock is untouched by her success
    assert refused(session, ANA, PASSWORD, later, ATTACKER).startswith("Too many failed logins")


def test_each_failure_makes_that_clients_next_try_wait_longer(session: Session, ana: int) -> None:
    at = NOW
    for failures in range(1, MAX_FAILURES):
        assert refused(session, ANA, "guess", at, ATTACKER) == REFUSAL
        wait = backoff(failures)
        assert wait == timedelta(seconds=2 ** (failures - 1))
        # Too soon: refused without checking the password, saying how long to wait
        too_soon = at + wait - timedelta(milliseconds=500)
        assert refused(session, ANA, PASSWORD, too_soon, ATTACKER) == (
            "Too many failed logins for this e-mail from your network address; try again in "
            "1 second.")
        # ... while another client is not slowed down at all
        assert refused(session, ANA, "typo", too_soon, f"{OWNER}{failures}") == REFUSAL
        at += wait
    # A refused try is not counted: once waited, the right password works
    assert authenticate(session, ANA, PASSWORD, at, ATTACKER) == ana


def test_the_lock_says_when_to_try_again_and_ends(session: Session, ana: int) -> None:
    for attempt in range(MAX_FAILURES):
        refused(session, ANA, "guess", apart(attempt), ATTACKER)
    assert refused(session, ANA, PASSWORD, apart(MAX_FAILURES), ATTACKER) == (
        "Too many failed logins for this e-mail from your network address; try again in "
        "15 minutes.")
    assert authenticate(session, ANA, PASSWORD, NOW + timedelta(minutes=LOCK_MINUTES), ATTACKER) == ana


def test_an_unknown_address_is_throttled_as_a_known_one_is(session: Session, ana: int) -> None:
    def sentences(email: str, client: str) -> list[str]:
        return [refused(session, email, "guess", apart(a), client) for a in range(MAX_FAILURES + 1)]

    assert sentences(ANA, ATTACKER) == sentences("nobody@acme.example", f"{ATTACKER}0")


def test_a_client_failing_across_addresses_is_refused_for_every_address(
    session: Session, ana: int
) -> None:
    # Given a client spraying one password over many addresses, each failing once
    for n in range(CLIENT_FAILURES):
        refused(session, f"user{n}@acme.example", "Spring2026!", NOW + timedelta(seconds=n), ATTACKER)
    # Then it is refused for any address, Ana's right password too, saying when to try again
    sentence = refused(session, ANA, PASSWORD, NOW + timedelta(minutes=1), ATTACKER)
    assert sentence == ("Too many failed logins from your network address; try again in "
                        "14 minutes.")
    # ... while Ana, from her own address, logs in
    assert authenticate(session, ANA, PASSWORD, NOW + timedelta(minutes=1), OWNER) == ana
    # ... and the client may try again once the window has passed its first failures
    assert authenticate(session, ANA, PASSWORD, NOW + timedelta(minutes=LOCK_MINUTES), ATTACKER) == ana


def test_failed_logins_are_logged_without_the_password(
    session: Session, ana: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="herald.admin")
    refused(session, ANA, "s3cret-guess", NOW, ATTACKER)
    refused(session, "nobody@acme.example", "other-s3cret", NOW, ATTACKER)
    refused(session, "hunter2-typed-here", "x", NOW, ATTACKER)
    lines = [r.getMessage() for r in caplog.records if r.name == "herald.admin"]
    assert lines == [
        f"admin login failed for {ANA} from {ATTACKER}: wrong password",
        f"admin login failed for nobody@acme.example from {ATTACKER}: unknown or deactivated account",
        f"admin login failed for (not an address) from {ATTACKER}: unknown or deactivated account"]
    assert not any(secret in caplog.text for secret in ("s3cret", "hunter2"))


def test_a_password_reset_lifts_every_clients_lock_on_the_address(session: Session, ana: int) -> None:
    for attempt in range(MAX_FAILURES):
        refused(session, ANA, "guess", apart(attempt), ATTACKER)
    reset_password(session, OPERATOR, ANA, "a brand new password", apart(MAX_FAILURES))
    session.commit()
    assert session.exec(select(LoginFailure)).all() == []
    assert authenticate(session, ANA, "a brand new password", apart(MAX_FAILURES), ATTACKER) == ana


def test_failures_older_than_a_day_are_deleted(session: Session, ana: int) -> None:
    refused(session, ANA, "guess", NOW, ATTACKER)
    refused(session, ANA, "guess", NOW + timedelta(days=1, seconds=1), OWNER)
    assert [f.client for f in session.exec(select(LoginFailure))] == [OWNER]
