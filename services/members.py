"""A tenant's members: listing them, adding one (a new account, or an existing user of any
tenant), changing a role, deactivating a membership, and the changes to them.

Every function first requires an admin of the tenant (Action.MANAGE), listing included: who
belongs to a tenant, and when they last logged in, is for its admins. A user who is not a
member of this tenant reads as "No member N.", whether they exist elsewhere or not. Everything
here changes memberships of THIS tenant only: an existing user's password, account and other
memberships are never touched, and the tenant always keeps an active admin. Each change is
recorded with who made it. Functions flush and leave the commit to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, select

from models.audit import ChangeEvent, record_change
from models.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from models.recipients import normalise_email
from models.tenancy import Membership, Role, User
from services.access import Action, Operator, Who, require
from services.accounts import create_user, find_user


class MemberRow(NamedTuple):
    """One member of the tenant as the members table shows them."""

    user_id: int
    email: str
    role: str                        # viewer, editor or admin (in this tenant)
    account_active: bool             # the user's account as a whole; False: they cannot log in
    last_login_at: datetime | None   # None: never logged in (or not since this was recorded)
    locked_until: datetime | None    # set only while failed logins lock the account
    you: bool                        # the member is the one asking


@dataclass(frozen=True)
class Grant:
    """What `grant` did: "created" the user, "added" an existing one to the tenant, "role
    changed" (from `previous_role`), or "unchanged". A new account's generated password is
    returned only here (kept out of the repr, so it reaches no log) to be handed over once."""

    user_id: int
    email: str
    role: Role
    change: str
    previous_role: Role | None = None
    generated_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AddedMember:
    """What `add_member` did, with the new member's row."""

    member: MemberRow
    new_account: bool
    temporary_password: str | None = field(default=None, repr=False)


class MemberChange(NamedTuple):
    """One recorded change to a member or to the tenant's fallback recipients."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str                     # the member's e-mail, or "fallback recipients"
    changes: dict[str, list[Any]]    # each field to [old, new]


FALLBACK = "fallback recipients"  # the subject of a change to them in `member_changes`


def list_members(session: Session, who: Who, tenant_id: int, *,
                 now: datetime) -> list[MemberRow]:
    """The tenant's members by e-mail; `now` decides whether a lock still holds."""
    require(who, tenant_id, Action.MANAGE)
    rows = session.execute(_member_query().where(Membership.tenant_id == tenant_id)
                           .order_by(User.email)).all()
    return [_row(who, row, now) for row in rows]


def add_member(session: Session, who: Who, tenant_id: int, email: str, role: str, *,
               now: datetime) -> AddedMember:
    """Make `email` a member of this tenant with `role` (the admin's Add member): refused for
    someone who already is one. An existing user keeps their password and other memberships; a
    new one gets an account with a generated password, returned once."""
    require(who, tenant_id, Action.MANAGE)
    if not (email or "").strip():
        raise InvalidInput("The e-mail is empty; type the new member's e-mail address.")
    address = normalise_email(email.strip())
    user = find_user(session, address)
    current = user and _membership(session, tenant_id, user.id, missing_ok=True)
    if current:
        raise Conflict(f"{address} is already a member of this tenant as {current.role}; "
                       f"change their role in the members table instead.")
    done = grant(session, who, tenant_id, address, role)
    return AddedMember(member=_one(session, who, tenant_id, done.user_id, now),
                       new_account=done.change == "created",
                       temporary_password=done.generated_password)


def grant(session: Session, who: Who, tenant_id: int, email: str, role: str,
          password: str | None = None) -> Grant:
    """Give `email` `role` in this tenant (`herald user add`): a new account (with `password`,
    else a generated one), a membership for an existing user, or their new role. An existing
    user's password is never changed here: giving one for them is refused. Recorded."""
    require(who, tenant_id, Action.MANAGE)
    if password is not None and not isinstance(who, Operator):
        raise PermissionDenied("Only herald's operator chooses a password (`herald user add "
                               "--password-stdin`); a new member gets a generated one, shown once.")
    address, role = normalise_email(email), _role(role)
    user = find_user(session, address)
    if user is not None and password is not None:
        raise InvalidInput(f"User {address} already exists; `herald user add` does not change "
                           f"passwords, so leave out --password-stdin to add them to this tenant.")
    created, generated = user is None, None
    if created:
        user, generated = create_user(session, address, password)
    membership = _membership(session, tenant_id, user.id, missing_ok=True)
    if membership is None:
        session.add(Membership(user_id=user.id, tenant_id=tenant_id, role=role))
        session.flush()
        record_change(session, tenant_id, "member", user.id,
                      "added (new account)" if created else "added", who.actor,
                      {"role": [None, role.value]})
        return Grant(user.id, user.email, role, "created" if created else "added",
                     generated_password=generated)
    previous = Role(membership.role)
    if previous == role:
        return Grant(user.id, user.email, role, "unchanged")
    _set_role(session, who, tenant_id, membership, role)
    return Grant(user.id, user.email, role, "role changed", previous_role=previous)


def change_role(session: Session, who: Who, tenant_id: int, user_id: int, role: str, *,
                now: datetime) -> MemberRow:
    """Make a member viewer, editor or admin of this tenant; the last active admin stays one."""
    require(who, tenant_id, Action.MANAGE)
    membership = _membership(session, tenant_id, user_id)
    _set_role(session, who, tenant_id, membership, _role(role))
    return _one(session, who, tenant_id, user_id, now)


def _set_role(session: Session, who: Who, tenant_id: int, membership: Membership, role: Role) -> None:
    old = Role(membership.role)
    if role == old:
        return
    if old == Role.ADMIN:
        _keep_an_admin(session, tenant_id, membership.user_id, f"make them {role}")
    membership.role = role
    session.flush()
    record_change(session, tenant_id, "member", membership.user_id, "role changed", who.actor,
                  {"role": [old.value, role.value]})


def deactivate(session: Session, who: Who, tenant_id: int, user_id: int) -> None:
    """End a member's access to this tenant by removing their membership. Their account,
    password and other tenants stay as they are; adding them again restores access."""
    require(who, tenant_id, Action.MANAGE)
    membership = _membership(session, tenant_id, user_id)
    old = Role(membership.role)
    if old == Role.ADMIN:
        _keep_an_admin(session, tenant_id, user_id, "deactivate them")
    session.delete(membership)
    session.flush()
    record_change(session, tenant_id, "member", user_id, "deactivated", who.actor,
                  {"role": [old.value, None]})


def member_changes(session: Session, who: Who, tenant_id: int,
                   limit: int = 50) -> list[MemberChange]:
    """The last `limit` changes to the tenant's members and fallback recipients, newest first."""
    require(who, tenant_id, Action.MANAGE)
    is_member = sa.and_(ChangeEvent.object_type == "member", User.id == ChangeEvent.object_id)
    rows = session.execute(
        sa.select(ChangeEvent, User.email).outerjoin(User, is_member)
        .where(ChangeEvent.tenant_id == tenant_id,
               ChangeEvent.object_type.in_(("member", "tenant")))
        .order_by(ChangeEvent.id.desc()).limit(limit)).all()
    return [MemberChange(id=event.id, at=event.created_at, actor=event.actor, action=event.action,
                         subject=email or _subject(event), changes=dict(event.changes))
            for event, email in rows]


def _subject(event: ChangeEvent) -> str:
    """What a change of the tenant itself is about: its fallback recipients, or the tenant."""
    return FALLBACK if event.action.startswith("fallback") else "the tenant"


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"Unknown role {value!r}; use viewer, editor or admin.") from None


def _membership(session: Session, tenant_id: int, user_id: int,
                missing_ok: bool = False) -> Membership | None:
    """The user's membership of this tenant, locked until the transaction ends; a user who is
    not a member reads as not found, wherever else they belong."""
    membership = session.exec(
        select(Membership).where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
        .with_for_update().execution_options(populate_existing=True)).first()
    if membership is None and not missing_ok:
        raise NotFound(f"No member {user_id}.")
    return membership


def _keep_an_admin(session: Session, tenant_id: int, user_id: int, what: str) -> None:
    """Refuse to take admin away from `user_id` when no other active admin would be left.

    The tenant's admin memberships are locked first, so two admins demoting each other at
    once cannot both succeed (the second waits, then sees the first's change)."""
    admins = session.execute(
        sa.select(Membership.user_id).join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant_id, Membership.role == Role.ADMIN.value,
               User.active)
        .order_by(Membership.id).with_for_update(of=Membership)).scalars().all()
    if not set(admins) - {user_id}:
        email = session.get(User, user_id).email
        raise InvalidInput(f"{email} is this tenant's last active admin; make another member "
                           f"admin first, then {what}.")


def _member_query() -> sa.Select:
    return (sa.select(Membership.user_id, Membership.role, User.email, User.active,
                      User.last_login_at, User.locked_until)
            .join(User, User.id == Membership.user_id))


def _one(session: Session, who: Who, tenant_id: int, user_id: int,
         now: datetime) -> MemberRow:
    row = session.execute(_member_query().where(Membership.tenant_id == tenant_id,
                                                Membership.user_id == user_id)).one()
    return _row(who, row, now)


def _row(who: Who, row: sa.Row, now: datetime) -> MemberRow:
    locked = row.locked_until if row.locked_until is not None and now < row.locked_until else None
    return MemberRow(user_id=row.user_id, email=row.email, role=str(row.role),
                     account_active=row.active, last_login_at=row.last_login_at,
                     locked_until=locked, you=row.user_id == getattr(who, "user_id", None))
