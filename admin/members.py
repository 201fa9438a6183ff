"""The members page's data: the tenant's members, adding one, changing a role, deactivating a
membership, the tenant's fallback recipients, and the changes to them.

Every function takes a session and the logged-in `Viewer` and first requires them to be an
admin of the tenant (Action.MANAGE), listing included: who belongs to a tenant, and when they
last logged in, is for its admins. A user who is not a member of this tenant reads as
"No member N.", whether they exist elsewhere or not. Everything here changes memberships of
THIS tenant only: a user's password, account and other memberships are never touched (nothing
here sets a password), and the tenant always keeps an active admin. Each change is recorded
with the viewer as actor. Functions flush and leave the commit to the caller.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from admin.access import Action, Viewer, require
from admin.member_records import AddedMember, FallbackRecipient, MemberChange, MemberRow
from models import catalog
from models.audit import ChangeEvent, record_change
from models.base import Channel
from models.errors import Conflict, InvalidInput, NotFound
from models.recipients import normalise_chat_id, normalise_email
from models.settings import get_settings
from models.tenancy import Membership, Role, Tenant, TenantRecipient, User

FALLBACK = "fallback recipients"  # the subject of a change to them in `member_changes`


def list_members(session: Session, viewer: Viewer, tenant_id: int, *,
                 now: datetime) -> list[MemberRow]:
    """The tenant's members by e-mail; `now` decides whether a lock still holds."""
    require(viewer, tenant_id, Action.MANAGE)
    rows = session.execute(_member_query().where(Membership.tenant_id == tenant_id)
                           .order_by(User.email)).all()
    return [_row(viewer, row, now) for row in rows]


def add_member(session: Session, viewer: Viewer, tenant_id: int, email: str, role: str, *,
               now: datetime) -> AddedMember:
    """Give `email` a role in this tenant. An existing user (of any tenant) keeps their password
    and other memberships; a new one gets an account with a generated password, returned once."""
    require(viewer, tenant_id, Action.MANAGE)
    if not (email or "").strip():
        raise InvalidInput("The e-mail is empty; type the new member's e-mail address.")
    address, role = normalise_email(email.strip()), _role(role)
    user = session.exec(select(User).where(User.email == address)).first()
    current = user and _membership(session, tenant_id, user.id, missing_ok=True)
    if current:
        raise Conflict(f"{address} is already a member of this tenant as {current.role}; "
                       f"change their role in the members table instead.")
    grant = catalog.add_user(session, address, session.get(Tenant, tenant_id), role)
    new_account = grant.change == "created"
    record_change(session, tenant_id, "member", grant.user.id,
                  "added (new account)" if new_account else "added", viewer.email,
                  {"role": [None, role.value]})
    return AddedMember(member=_one(session, viewer, tenant_id, grant.user.id, now),
                       new_account=new_account, temporary_password=grant.generated_password)


def change_role(session: Session, viewer: Viewer, tenant_id: int, user_id: int, role: str, *,
                now: datetime) -> MemberRow:
    """Make a member viewer, editor or admin of this tenant; the last active admin stays one."""
    require(viewer, tenant_id, Action.MANAGE)
    role = _role(role)
    membership = _membership(session, tenant_id, user_id)
    old = Role(membership.role)
    if role != old:
        if old == Role.ADMIN:
            _keep_an_admin(session, tenant_id, user_id, f"make them {role}")
        membership.role = role
        session.flush()
        record_change(session, tenant_id, "member", user_id, "role changed", viewer.email,
                      {"role": [old.value, role.value]})
    return _one(session, viewer, tenant_id, user_id, now)


def deactivate(session: Session, viewer: Viewer, tenant_id: int, user_id: int) -> None:
    """End a member's access to this tenant by removing their membership. Their account,
    password and other tenants stay as they are; adding them again restores access."""
    require(viewer, tenant_id, Action.MANAGE)
    membership = _membership(session, tenant_id, user_id)
    old = Role(membership.role)
    if old == Role.ADMIN:
        _keep_an_admin(session, tenant_id, user_id, "deactivate them")
    session.delete(membership)
    session.flush()
    record_change(session, tenant_id, "member", user_id, "deactivated", viewer.email,
                  {"role": [old.value, None]})


def list_fallback_recipients(session: Session, viewer: Viewer,
                             tenant_id: int) -> list[FallbackRecipient]:
    """The tenant's fallback recipients, in the order they were added."""
    require(viewer, tenant_id, Action.MANAGE)
    return [FallbackRecipient(r.id, str(r.channel), r.address)
            for r in catalog.tenant_recipients(session, tenant_id)]


def add_fallback_recipient(session: Session, viewer: Viewer, tenant_id: int, channel: str,
                           address: str) -> FallbackRecipient:
    """Add an e-mail address or a Telegram chat id (validated as a schedule's recipients are)
    to the tenant's fallback recipients, at most HERALD_MAX_RECIPIENTS of them."""
    require(viewer, tenant_id, Action.MANAGE)
    try:
        channel = Channel(channel)
    except ValueError:
        raise InvalidInput(f"Unknown channel {channel!r}; use email or telegram.") from None
    if not (address or "").strip():
        what = "e-mail address" if channel == Channel.EMAIL else "Telegram chat id"
        raise InvalidInput(f"The {what} is empty; type the fallback recipient's {what}.")
    address = (normalise_email if channel == Channel.EMAIL else normalise_chat_id)(address.strip())
    existing = catalog.tenant_recipients(session, tenant_id)
    if any(r.channel == channel and r.address == address for r in existing):
        raise Conflict(f"{address} is already a fallback recipient of this tenant.")
    limit = get_settings().max_recipients
    if len(existing) >= limit:
        raise InvalidInput(f"The tenant already has {limit} fallback recipients, the most allowed; "
                           f"remove one first, or use a mailing list or a Telegram group.")
    recipient = TenantRecipient(tenant_id=tenant_id, channel=channel, address=address)
    session.add(recipient)
    session.flush()
    record_change(session, tenant_id, "tenant", tenant_id, "fallback added", viewer.email,
                  {channel.value: [None, address]})
    return FallbackRecipient(recipient.id, channel.value, address)


def remove_fallback_recipient(session: Session, viewer: Viewer, tenant_id: int,
                              recipient_id: int) -> None:
    """Remove one of the tenant's fallback recipients; schedules that relied on it send to the
    remaining ones on its channel (or to nobody there)."""
    require(viewer, tenant_id, Action.MANAGE)
    recipient = session.get(TenantRecipient, recipient_id)
    if recipient is None or recipient.tenant_id != tenant_id:
        raise NotFound(f"No fallback recipient {recipient_id}.")
    channel, address = str(recipient.channel), recipient.address
    session.delete(recipient)
    session.flush()
    record_change(session, tenant_id, "tenant", tenant_id, "fallback removed", viewer.email,
                  {channel: [address, None]})


def member_changes(session: Session, viewer: Viewer, tenant_id: int,
                   limit: int = 50) -> list[MemberChange]:
    """The last `limit` changes to the tenant's members and fallback recipients, newest first."""
    require(viewer, tenant_id, Action.MANAGE)
    is_member = sa.and_(ChangeEvent.object_type == "member", User.id == ChangeEvent.object_id)
    rows = session.execute(
        sa.select(ChangeEvent, User.email).outerjoin(User, is_member)
        .where(ChangeEvent.tenant_id == tenant_id,
               ChangeEvent.object_type.in_(("member", "tenant")))
        .order_by(ChangeEvent.id.desc()).limit(limit)).all()
    return [MemberChange(id=event.id, at=event.created_at, actor=event.actor, action=event.action,
                         subject=email or FALLBACK, changes=dict(event.changes))
            for event, email in rows]


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


def _one(session: Session, viewer: Viewer, tenant_id: int, user_id: int,
         now: datetime) -> MemberRow:
    row = session.execute(_member_query().where(Membership.tenant_id == tenant_id,
                                                Membership.user_id == user_id)).one()
    return _row(viewer, row, now)


def _row(viewer: Viewer, row: sa.Row, now: datetime) -> MemberRow:
    locked = row.locked_until if row.locked_until is not None and now < row.locked_until else None
    return MemberRow(user_id=row.user_id, email=row.email, role=str(row.role),
                     account_active=row.active, last_login_at=row.last_login_at,
                     locked_until=locked, you=row.user_id == viewer.user_id)
