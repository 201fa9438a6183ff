"""The Members page as a tenant admin and an editor meet it (Streamlit's AppTest, logged in
through the form, on SQLite; the data functions it calls are tested on both backends in
test_members_data.py).

One seam: `streamlit.navigation` is wrapped by a recorder that notes each page's title and
visibility, then calls the real function, because AppTest does not expose the navigation
menu; everything else is the app as it runs.
"""

from __future__ import annotations

import pandas as pd
import pytest
import streamlit
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from tests.admin.test_app_login import PASSWORD, log_in, new_app, readable, shown
from tests.seeding import add_tenant, add_user

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

ADA, ED, BEA = "ada@acme.example", "ed@acme.example", "bea@beta.example"
NOT_ADMIN = "Only the tenant's admins manage its members."


@pytest.fixture
def people(session: Session) -> None:
    """Acme: Ada admin, Ed editor, a fallback e-mail. Beta: Bea admin, Ada viewer."""
    acme = add_tenant(session, "acme", "Acme", emails=["ops@acme.example"])
    beta = add_tenant(session, "beta", "Beta")
    add_user(session, ADA, acme, "admin", PASSWORD)
    add_user(session, ADA, beta, "viewer")
    add_user(session, ED, acme, "editor", PASSWORD)
    add_user(session, BEA, beta, "admin", PASSWORD)
    session.commit()


@pytest.fixture
def menu(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The navigation of the last run: each page's title -> "visible" or "hidden"."""
    shown_pages: dict[str, str] = {}
    real = streamlit.navigation

    def recording(pages, *args, **kwargs):
        shown_pages.clear()
        shown_pages.update({p.title: p.visibility for p in pages})
        return real(pages, *args, **kwargs)

    monkeypatch.setattr(streamlit, "navigation", recording)
    return shown_pages


def members_page(email: str, password: str = PASSWORD) -> AppTest:
    at = log_in(new_app().run(), email, password)
    assert not at.exception, at.exception
    at.switch_page("members/page.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Members"
    return at


def members_table(at: AppTest) -> list[tuple[str, str]]:
    frame: pd.DataFrame = at.main.dataframe[0].value
    return list(zip(frame["Email"], frame["Role"], strict=True))


def field(widgets, label: str):
    """The one widget of `widgets` (e.g. `at.text_input`) labelled `label`."""
    found = [w for w in widgets if w.label == label]
    assert len(found) == 1, [w.label for w in widgets]
    return found[0]


def pick(at: AppTest, email: str) -> AppTest:
    """Pick a member in the Member box."""
    box = field(at.selectbox, "Member")
    box.select(next(o for o in box.options if o.startswith(email + " ("))).run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if readable(b.label) == label).click().run()
    assert not at.exception, at.exception
    return at


def test_an_admin_adds_a_member_who_then_logs_in(people, menu) -> None:
    at = members_page(ADA)
    assert menu["Members"] == "visible"
    assert members_table(at) == [(f"{ADA} (you)", "admin"), (ED, "editor")]
    frame = at.main.dataframe[0].value  # nobody is locked out, and Ed never logged in
    assert list(frame["Password changes locked until"]) == ["—", "—"] and frame["Last login"][1] == "never"

    field(at.text_input, "E-mail").input("nina@acme.example")
    field(at.selectbox, "Role").select("editor")
    click(at, "Add member")
    assert [readable(s.value) for s in at.success] == [
        "nina@acme.example is now editor of Acme, with a new account. Hand them this password "
        "privately; it is shown only now:"]
    password = at.code[0].value
    assert members_table(at) == [(f"{ADA} (you)", "admin"), (ED, "editor"),
                                 ("nina@acme.example", "editor")]
    changes = at.table[0].value.map(readable)  # newest first: Ada's, then the operator's setup
    assert list(changes["Action"])[0] == "added (new account)"
    assert list(changes["Who"])[0] == ADA and list(changes["Member"])[0] == "nina@acme.example"
    assert set(list(changes["Who"])[1:]) == {"cli"}

    at.run()  # the password is shown only once
    assert not at.code and not at.success and field(at.text_input, "E-mail").value == ""

    nina = members_page("nina@acme.example", password)
    assert [i.value for i in nina.info] == [NOT_ADMIN]  # an editor: the page is not for her
    assert menu["Members"] == "hidden" and menu["Schedules"] == "visible"


def test_an_editor_finds_no_members_page_and_is_told_why(people, menu) -> None:
    at = log_in(new_app().run(), ED)
    assert menu["Members"] == "hidden"
    assert menu["Schedules"] == menu["Reports"] == "visible"
    at.switch_page("members/page.py").run()  # by its URL
    assert not at.exception
    assert [i.value for i in at.info] == [NOT_ADMIN]
    assert ED not in shown(at.main) and not at.main.dataframe and not at.text_input


def test_the_menu_follows_the_role_in_the_chosen_tenant(people, menu) -> None:
    at = members_page(ADA)
    at.sidebar.selectbox[0].select("beta").run()  # Ada is a viewer of Beta
    assert menu["Members"] == "hidden"
    assert [i.value for i in at.info] == [NOT_ADMIN] and BEA not in shown(at.main)


def test_deactivating_asks_first_then_removes_the_member(people) -> None:
    at = members_page(ADA)
    pick(at, ED)
    click(at, "Deactivate")
    assert "Deactivate ed@acme.example in Acme? They lose access" in shown(at.main)
    click(at, "Cancel")
    assert (ED, "editor") in members_table(at)

    click(at, "Deactivate")
    click(at, f"Deactivate {ED}")
    assert [readable(s.value) for s in at.success] == [f"{ED} no longer has access to Acme."]
    assert members_table(at) == [(f"{ADA} (you)", "admin")]
    assert field(at.selectbox, "Member").value is None
    assert list(at.table[0].value["Action"])[0] == "deactivated"  # newest first; the setup after


def test_the_last_admin_is_told_why_they_stay_admin(people) -> None:
    at = members_page(ADA)
    field(pick(at, ADA).selectbox, "New role").select("viewer")
    click(at, "Change role")
    assert [readable(e.value) for e in at.error] == [
        f"{ADA} is this tenant's last active admin; make another member admin first, then make "
        f"them viewer."]
    assert members_table(at)[0] == (f"{ADA} (you)", "admin")

    field(pick(at, ED).selectbox, "New role").select("admin")
    click(at, "Change role")
    assert [readable(s.value) for s in at.success] == [f"{ED} is now admin of Acme."]
    assert members_table(at) == [(f"{ADA} (you)", "admin"), (ED, "admin")]
    box = field(at.selectbox, "Member")
    assert box.options[box.index] == f"{ED} (admin)"  # still picked


def test_fallback_recipients_are_added_and_removed(people) -> None:
    at = members_page(ADA)
    assert "email: ops@acme.example" in [t.value for t in at.main.text]
    field(at.selectbox, "Channel").select("telegram")
    field(at.text_input, "Address or chat id").input("@ops")
    click(at, "Add recipient")
    assert [readable(e.value) for e in at.error] == [
        "Telegram chat id '@ops' is not numeric; use the chat's numeric id, e.g. 123456789 or "
        "-1001234567890 for a group."]

    field(at.text_input, "Address or chat id").input("-1001234567890")
    click(at, "Add recipient")
    assert [readable(s.value) for s in at.success] == [
        "-1001234567890 is now a fallback recipient on telegram."]
    assert [t.value for t in at.main.text] == ["email: ops@acme.example",
                                               "telegram: -1001234567890"]
    assert field(at.text_input, "Address or chat id").value == ""

    click(at, "Remove")  # the first one: ops@acme.example
    assert [t.value for t in at.main.text] == ["telegram: -1001234567890"]
    assert list(at.table[0].value["Action"])[:2] == ["fallback removed", "fallback added"]
