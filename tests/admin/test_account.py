"""My account: a user changes their own password (the current one checked as a login is, the
new one twice), other sessions of the account end, and an operator resets a password with
`herald user set-password`.

The data functions run on both backends; the page is the app as it runs (Streamlit's
AppTest, logged in through the form, on SQLite).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from models.db import utcnow
from models.errors import InvalidInput, LoginRefused
from models.tenancy import Membership, User
from services.access import load_viewer
from services.accounts import MAX_FAILURES, authenticate, change_own_password
from tests.admin.test_app_login import PASSWORD, log_in, new_app, shown
from tests.seeding import add_tenant, add_user

ANA = "ana@acme.example"
NEW = "a much longer passphrase"
on_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def ana(session: Session) -> int:
    """Ana: editor of Acme, admin of Beta."""
    acme, beta = add_tenant(session, "acme", "Acme"), add_tenant(session, "beta", "Beta")
    user = add_user(session, ANA, acme, "editor", PASSWORD).user_id
    add_user(session, ANA, beta, "admin")
    session.commit()
    return user


def logs_in(session: Session, password: str) -> bool:
    try:
        authenticate(session, ANA, password, utcnow())
    except LoginRefused:
        return False
    return True


def test_a_new_password_replaces_the_old_one(session: Session, ana: int) -> None:
    change_own_password(session, load_viewer(session, ana), PASSWORD, NEW, NEW, utcnow())

    assert logs_in(session, NEW)
    assert not logs_in(session, PASSWORD)
    assert session.get(User, ana).password_changed_at is not None


@pytest.mark.parametrize(("current", "new", "confirm", "sentence"), [
    ("wrong password", NEW, NEW, "The current password is wrong; type it again (5 failures in a "
                                 "row lock password changes for 15 minutes)."),
    (PASSWORD, NEW, NEW + "!", "The new password and its confirmation differ; type the new one "
                               "twice."),
    (PASSWORD, "short", "short", "The password is shorter than 8 characters; choose a longer one."),
    (PASSWORD, PASSWORD, PASSWORD, "The new password is the same as the current one; choose a "
                                   "different one."),
])
def test_a_refused_change_says_why_and_changes_nothing(
    session: Session, ana: int, current: str, new: str, confirm: str, sentence: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        change_own_password(session, load_viewer(session, ana), current, new, confirm, utcnow())
    assert str(refused.value) == sentence

    session.rollback()
    assert logs_in(session, PASSWORD)
    assert session.get(User, ana).password_changed_at is None


def test_wrong_current_passwords_lock_password_changes_not_logins(session: Session, ana: int) -> None:
    # A session left open is not a way to guess the password: five wrong ones lock password
    # changes; but not the owner's logins, or whoever holds the session could lock them out
    now = utcnow()
    for _ in range(MAX_FAILURES):
        with pytest.raises(InvalidInput):
            change_own_password(session, load_viewer(session, ana), "guess", NEW, NEW, now)
    with pytest.raises(InvalidInput) as locked:
        change_own_password(session, load_viewer(session, ana), PASSWORD, NEW, NEW, now)
    assert str(locked.value).startswith("Too many wrong passwords in a row")
    assert authenticate(session, ANA, PASSWORD, now) == ana
    with pytest.raises(InvalidInput, match="Too many wrong passwords in a row"):  # a login does not lift it
        change_own_password(session, load_viewer(session, ana), PASSWORD, NEW, NEW, now)
    # ... until the lock passes
    change_own_password(session, load_viewer(session, ana), PASSWORD, NEW, NEW, now + timedelta(minutes=16))
    assert logs_in(session, NEW)


def test_set_password_resets_a_forgotten_one_and_lifts_the_lock(cli, session: Session, ana: int) -> None:
    for _ in range(MAX_FAILURES):
        assert not logs_in(session, "guess")  # locked now

    result = cli("user", "set-password", ANA, "--password-stdin", input=f"{NEW}\n")
    assert (result.exit_code, result.stdout) == (
        0, f"password of {ANA} changed; their admin sessions have ended\n")
    assert NEW not in result.stdout + result.stderr
    session.expire_all()
    assert logs_in(session, NEW)

    generated = cli("user", "set-password", ANA, "--json")
    data = json.loads(generated.stdout)
    assert data["email"] == ANA and len(data["generated_password"]) >= 16
    session.expire_all()
    assert logs_in(session, data["generated_password"]) and not logs_in(session, NEW)

    unknown = cli("user", "set-password", "nobody@acme.example")
    assert unknown.exit_code == 1
    assert unknown.stderr == ("error: No user has the e-mail nobody@acme.example; check the address, "
                              "or create the user with `herald user add`.\n")


# --- the page ----------------------------------------------------------------------------------

def account_page(password: str = PASSWORD):
    at = log_in(new_app().run(), ANA, password)
    assert not at.exception, at.exception
    at.switch_page("account/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "My account"
    return at


def fill(at, current: str, new: str, confirm: str):
    fields = {t.label: t for t in at.text_input}
    fields["Current password"].input(current)
    fields["New password"].input(new)
    fields["New password again"].input(confirm)
    next(b for b in at.button if b.label == "Change password").click()
    return at.run()


@on_sqlite
def test_the_page_shows_the_account_and_changes_the_password(session: Session, ana: int) -> None:
    # Given Ana signed in twice: on her laptop, and on a shared computer she forgot about
    laptop, forgotten = account_page(), account_page()
    assert f"Signed in as **{ANA}**." in shown(laptop.main)
    assert laptop.main.dataframe[0].value.values.tolist() == [["Acme", "editor"], ["Beta", "admin"]]

    # When she types a wrong current password, she is told so and nothing changes
    fill(laptop, "not it", NEW, NEW)
    assert [e.value for e in laptop.error] == [
        "The current password is wrong; type it again (5 failures in a row lock password "
        "changes for 15 minutes)."]

    # When she changes it on the laptop
    fill(laptop, PASSWORD, NEW, NEW)
    assert not laptop.exception
    assert [s.value for s in laptop.success] == [
        "Password changed. Every other session of this account has ended; this one stays "
        "signed in."]
    assert all(t.value == "" for t in laptop.text_input)  # the form starts empty again

    # Then the laptop stays signed in, the forgotten session is logged out with a reason
    laptop.run()
    assert laptop.title[0].value == "My account" and not laptop.error
    forgotten.run()
    assert [t.label for t in forgotten.text_input] == ["Email", "Password"]
    assert "This account's password was changed; log in with the new one." in shown(forgotten.main)
    # ... and the new password is the one that logs in
    assert account_page(NEW).title[0].value == "My account"


@on_sqlite
def test_a_user_without_tenants_still_reaches_their_account(session: Session) -> None:
    acme = add_tenant(session, "acme", "Acme")
    add_user(session, ANA, acme, "viewer", PASSWORD)
    session.delete(session.exec(select(Membership)).one())
    session.commit()

    at = account_page()
    assert "You are not a member of any tenant yet" in shown(at.main)
    fill(at, PASSWORD, NEW, NEW)
    assert [s.value for s in at.success]
