"""The members page's data functions: only a tenant's admins use them; adding, re-roling and
deactivating touch this tenant's membership and nothing else of the user (password, account,
other tenants); another tenant's member reads as not found; the last admin stays; every change
is recorded; the fallback recipients are validated like a schedule's. On SQLite and PostgreSQL."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, SQLModel, select

from models.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from models.settings import get_settings
from models.tenancy import Membership, User
from services import members, tenants
from services.access import OPERATOR, Viewer, load_viewer
from services.accounts import authenticate
from tests.seeding import count_rows

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ADA, ED, VERA, BEA = "ada@acme.example", "ed@acme.example", "vera@acme.example", "bea@beta.example"


@pytest.fixture
def world(session: Session) -> dict[str, int]:
    """acme (Ada admin, Ed editor, Vera viewer, a fallback e-mail) and beta (Bea admin)."""
    acme = tenants.add_tenant(session, OPERATOR, "acme", "Acme", emails=["ops@acme.example"])
    beta = tenants.add_tenant(session, OPERATOR, "beta", "Beta")
    ids = {"acme": acme.id, "beta": beta.id}
    for email, tenant, role in ((ADA, acme, "admin"), (ED, acme, "editor"),
                                (VERA, acme, "viewer"), (BEA, beta, "admin")):
        ids[email] = members.grant(session, OPERATOR, tenant.id, email, role, PASSWORD).user_id
    session.commit()
    return ids


def as_user(session: Session, world: dict[str, int], email: str) -> Viewer:
    return load_viewer(session, world[email])


def row_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {t.name: count_rows(session, t) for t in SQLModel.metadata.sorted_tables}


def user_state(session: Session, user_id: int) -> dict[str, Any]:
    """The user's account row and all their memberships, tenant -> role."""
    session.expire_all()
    user = session.get(User, user_id).model_dump()
    roles = {m.tenant_id: str(m.role) for m in
             session.exec(select(Membership).where(Membership.user_id == user_id))}
    return {"user": user, "roles": roles}


def table(rows) -> list[tuple[str, str]]:
    return [(r.email, r.role) for r in rows]


@pytest.mark.parametrize("email", [ED, VERA])
def test_viewers_and_editors_are_refused_everything(session: Session, world, email: str) -> None:
    who, acme = as_user(session, world, email), world["acme"]
    before = row_counts(session)
    recipient = tenants.list_fallback_recipients(session, as_user(session, world, ADA), acme)[0]
    calls = [
        lambda: members.list_members(session, who, acme, now=NOW),
        lambda: members.add_member(session, who, acme, "new@acme.example", "viewer", now=NOW),
        lambda: members.change_role(session, who, acme, world[VERA], "admin", now=NOW),
        lambda: members.deactivate(session, who, acme, world[VERA]),
        lambda: tenants.list_fallback_recipients(session, who, acme),
        lambda: tenants.add_fallback_recipient(session, who, acme, "email", "x@acme.example"),
        lambda: tenants.remove_fallback_recipient(session, who, acme, recipient.id),
        lambda: members.member_changes(session, who, acme),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied, match="to manage you need to be admin"):
            call()
    assert row_counts(session) == before


def test_an_admin_sees_the_members_with_their_logins_and_locks(session: Session, world) -> None:
    ada = as_user(session, world, ADA)
    authenticate(session, ED, PASSWORD, NOW - timedelta(hours=1))
    vera = session.get(User, world[VERA])
    vera.locked_until = NOW + timedelta(minutes=10)
    session.commit()

    rows = {r.email: r for r in members.list_members(session, ada, world["acme"], now=NOW)}
    assert list(rows) == [ADA, ED, VERA]  # by e-mail; Bea (beta) is not listed
    assert [r.role for r in rows.values()] == ["admin", "editor", "viewer"]
    assert rows[ADA].you and not rows[ED].you
    assert rows[ED].last_login_at == NOW - timedelta(hours=1) and rows[ADA].last_login_at is None
    assert rows[VERA].locked_until == NOW + timedelta(minutes=10)
    assert all(r.account_active for r in rows.values())
    later = members.list_members(session, ada, world["acme"], now=NOW + timedelta(minutes=11))
    assert all(r.locked_until is None for r in later)  # a lock that passed is not shown


def test_a_new_user_gets_an_account_and_a_one_time_password(session: Session, world) -> None:
    ada = as_user(session, world, ADA)
    added = members.add_member(session, ada, world["acme"], "  nina@ACME.example ", "editor",
                               now=NOW)
    session.commit()
    assert added.new_account and added.member.email == "nina@acme.example"
    assert added.member.role == "editor" and added.member.last_login_at is None
    assert added.temporary_password and added.temporary_password not in repr(added)
    # The generated password logs the new member in, to this tenant only.
    user_id = authenticate(session, "nina@acme.example", added.temporary_password, NOW)
    assert load_viewer(session, user_id).roles == {world["acme"]: "editor"}
    assert ("nina@acme.example", "editor") in table(members.list_members(session, ada,
                                                                        world["acme"], now=NOW))


def test_another_tenants_user_keeps_their_password_and_memberships(session: Session, world) -> None:
    # Given Bea, admin of beta, with a password of her own
    ada, acme = as_user(session, world, ADA), world["acme"]
    before = user_state(session, world[BEA])
    # When Ada adds her to acme as a viewer, then makes her an editor, then deactivates her
    added = members.add_member(session, ada, acme, BEA, "viewer", now=NOW)
    assert not added.new_account and added.temporary_password is None
    members.change_role(session, ada, acme, world[BEA], "editor", now=NOW)
    session.commit()
    after_adding = user_state(session, world[BEA])
    members.deactivate(session, ada, acme, world[BEA])
    session.commit()
    # Then her account, password and beta membership never changed: only acme's membership did
    assert after_adding["user"] == before["user"]
    assert after_adding["roles"] == {world["beta"]: "admin", acme: "editor"}
    assert user_state(session, world[BEA]) == before
    assert authenticate(session, BEA, PASSWORD, NOW) == world[BEA]


def test_refused_additions_say_why_and_write_nothing(session: Session, world,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ada, acme = as_user(session, world, ADA), world["acme"]
    before = row_counts(session)
    refusals = [
        (InvalidInput, "", "viewer", "The e-mail is empty; type the new member's e-mail address."),
        (InvalidInput, "not-an-address", "viewer",
         "'not-an-address' is not a valid e-mail address"),
        (InvalidInput, "new@acme.example", "owner",
         "Unknown role 'owner'; use viewer, editor or admin."),
        (Conflict, "ed@ACME.example", "admin",
         "ed@acme.example is already a member of this tenant as editor; change their role in "
         "the members table instead."),
    ]
    for error, email, role, sentence in refusals:
        with pytest.raises(error) as caught:
            members.add_member(session, ada, acme, email, role, now=NOW)
        assert str(caught.value).startswith(sentence)
    assert row_counts(session) == before


def test_another_tenants_member_reads_as_not_found(session: Session, world) -> None:
    ada, acme = as_user(session, world, ADA), world["acme"]
    for user_id in (world[BEA], 9999):
        with pytest.raises(NotFound, match=f"^No member {user_id}.$"):
            members.change_role(session, ada, acme, user_id, "viewer", now=NOW)
        with pytest.raises(NotFound, match=f"^No member {user_id}.$"):
            members.deactivate(session, ada, acme, user_id)
    with pytest.raises(NotFound, match="No such tenant among yours"):
        members.list_members(session, ada, world["beta"], now=NOW)
    assert user_state(session, world[BEA])["roles"] == {world["beta"]: "admin"}


def test_the_last_active_admin_stays_an_admin(session: Session, world) -> None:
    ada, acme = as_user(session, world, ADA), world["acme"]
    last = f"{ADA} is this tenant's last active admin; make another member admin first, then"
    with pytest.raises(InvalidInput, match=f"^{last} make them editor.$"):
        members.change_role(session, ada, acme, world[ADA], "editor", now=NOW)
    with pytest.raises(InvalidInput, match=f"^{last} deactivate them.$"):
        members.deactivate(session, ada, acme, world[ADA])

    # An admin whose account is deactivated cannot manage: they do not count.
    members.change_role(session, ada, acme, world[ED], "admin", now=NOW)
    session.get(User, world[ED]).active = False
    session.commit()
    with pytest.raises(InvalidInput, match=last):
        members.deactivate(session, ada, acme, world[ADA])

    members.change_role(session, ada, acme, world[VERA], "admin", now=NOW)
    members.change_role(session, ada, acme, world[ADA], "viewer", now=NOW)  # Vera is admin now
    session.commit()
    assert user_state(session, world[ADA])["roles"] == {acme: "viewer"}


def test_each_change_is_recorded_with_who_did_it(session: Session, world) -> None:
    ada, acme = as_user(session, world, ADA), world["acme"]
    added = members.add_member(session, ada, acme, "nina@acme.example", "viewer", now=NOW)
    members.add_member(session, ada, acme, BEA, "viewer", now=NOW)
    members.change_role(session, ada, acme, added.member.user_id, "editor", now=NOW)
    members.change_role(session, ada, acme, added.member.user_id, "editor", now=NOW)  # no change
    members.deactivate(session, ada, acme, world[BEA])
    recipient = tenants.add_fallback_recipient(session, ada, acme, "telegram", " -1001234 ")
    tenants.remove_fallback_recipient(session, ada, acme, recipient.id)
    session.commit()

    changes = members.member_changes(session, ada, acme)
    made_by_ada = changes[:6]
    assert [(c.subject, c.action, c.changes) for c in made_by_ada] == [
        ("fallback recipients", "fallback removed", {"telegram": ["-1001234", None]}),
        ("fallback recipients", "fallback added", {"telegram": [None, "-1001234"]}),
        (BEA, "deactivated", {"role": ["viewer", None]}),
        ("nina@acme.example", "role changed", {"role": ["viewer", "editor"]}),
        (BEA, "added", {"role": [None, "viewer"]}),
        ("nina@acme.example", "added (new account)", {"role": [None, "viewer"]}),
    ]
    assert {c.actor for c in made_by_ada} == {ADA}
    # Before them, the operator's setup (`herald tenant add`, `herald user add`) is listed too.
    assert {c.actor for c in changes[6:]} == {"cli"}
    assert [c.action for c in members.member_changes(session, as_user(session, world, BEA),
                                                     world["beta"])] == ["added (new account)", "created"]
    assert all("password" not in str(c) for c in changes)


def test_fallback_recipients_are_validated_and_kept_per_tenant(
        session: Session, world, monkeypatch: pytest.MonkeyPatch) -> None:
    ada, bea, acme = as_user(session, world, ADA), as_user(session, world, BEA), world["acme"]
    added = tenants.add_fallback_recipient(session, ada, acme, "email", "Boss@ACME.example")
    tenants.add_fallback_recipient(session, ada, acme, "telegram", "123456789")
    fallback = tenants.list_fallback_recipients(session, ada, acme)
    assert [(r.channel, r.address) for r in fallback] == [
        ("email", "ops@acme.example"), ("email", "Boss@acme.example"), ("telegram", "123456789")]

    refusals = [
        ("email", "boss@", "'boss@' is not a valid e-mail address"),
        ("telegram", "@mychannel", "Telegram chat id '@mychannel' is not numeric; use the chat's "
                                   "numeric id, e.g. 123456789 or -1001234567890 for a group."),
        ("fax", "123", "Unknown channel 'fax'; use email or telegram."),
        ("email", " ",
         "The e-mail address is empty; type the fallback recipient's e-mail address."),
        ("email", "ops@acme.example",
         "ops@acme.example is already a fallback recipient of this tenant."),
    ]
    before = row_counts(session)
    for channel, address, sentence in refusals:
        with pytest.raises((InvalidInput, Conflict)) as caught:
            tenants.add_fallback_recipient(session, ada, acme, channel, address)
        assert str(caught.value).startswith(sentence)

    monkeypatch.setenv("HERALD_MAX_RECIPIENTS", "3")
    get_settings.cache_clear()
    with pytest.raises(InvalidInput, match="^The tenant already has 3 fallback recipients, the "
                                           "most allowed; remove one first, or use a mailing"):
        tenants.add_fallback_recipient(session, ada, acme, "email", "more@acme.example")
    assert row_counts(session) == before

    with pytest.raises(NotFound, match=f"^No fallback recipient {added.id}.$"):
        tenants.remove_fallback_recipient(session, bea, world["beta"], added.id)
    tenants.remove_fallback_recipient(session, ada, acme, added.id)
    session.commit()
    assert [r.address for r in tenants.list_fallback_recipients(session, ada, acme)] == [
        "ops@acme.example", "123456789"]


def test_nothing_here_sets_a_password_for_a_tenant_admin(session: Session, world) -> None:
    # A tenant admin can never choose or change anyone's password: the one function that takes
    # one (`grant`, `herald user add`) takes it from herald's operator only, for a new account.
    takes = [name for name, function in inspect.getmembers(members, inspect.isfunction)
             if function.__module__ == members.__name__
             and any("password" in p for p in inspect.signature(function).parameters)]
    assert takes == ["grant"]
    before = row_counts(session)
    with pytest.raises(PermissionDenied, match="^Only herald's operator chooses a password"):
        members.grant(session, as_user(session, world, ADA), world["acme"], "new@acme.example",
                      "viewer", "chosen-password-1")
    assert row_counts(session) == before
