"""The API tokens page as a tenant admin and an editor meet it (AppTest, logged in through the
form): a token is made with its scopes and shown once, listed by its prefix, and revoked; an
editor finds no page in the menu and one sentence at its URL."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from models.db import utcnow
from models.tokens import ApiToken
from services import tokens
from tests.admin.test_app_login import PASSWORD, log_in, new_app, readable
from tests.admin.test_members_page import ADA, ED, menu, people  # noqa: F401 - fixtures

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def tokens_page(email: str):
    at = log_in(new_app().run(), email, PASSWORD)
    at.switch_page("tokens/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "API tokens"
    return at


def test_an_admin_makes_a_token_sees_it_once_and_revokes_it(
    session: Session, people: None, menu: dict[str, str]  # noqa: F811
) -> None:
    at = tokens_page(ADA)
    assert menu["API tokens"] == "visible"
    at.text_input[0].input("ci-export")
    at.multiselect[0].set_value(["reports.read", "schedules.read"])
    at.get("form_submit_button")[0].click().run()
    assert not at.exception, at.exception
    [shown] = at.code
    token = shown.value
    assert token.startswith("herald_") and len(token) > 50
    assert at.success[0].value.startswith("Token 'ci-export' made. Copy it now")
    session.rollback()
    row = session.exec(select(ApiToken)).one()
    assert (row.name, row.scopes, row.created_by) == ("ci-export", ["reports.read", "schedules.read"], ADA)
    assert tokens.authenticate(session, token, utcnow()) is not None
    session.rollback()   # its note of the last use held SQLite's write lock
    frame = at.dataframe[0].value
    assert list(frame["Token"]) == [f"herald_{row.prefix}_…"] and list(frame["State"]) == ["active"]

    at.run()  # shown once
    assert not at.code
    at.selectbox(key="token_revoke_pick").select(row.id).run()
    at.button(key="token_revoke").click().run()
    assert readable(at.success[0].value) == f"Token herald_{row.prefix}_… (ci-export) revoked: the API refuses it within 2 seconds."
    session.rollback()
    assert tokens.authenticate(session, token, utcnow()) is None


def test_an_editor_has_no_tokens_page(people: None, menu: dict[str, str]) -> None:  # noqa: F811
    at = tokens_page(ED)
    assert menu["API tokens"] == "hidden"
    assert [i.value for i in at.info] == ["Only the tenant's admins manage its API tokens."]
