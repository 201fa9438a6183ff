"""Tenants: adding one (its data source connected to and checked), its refresh grant, its
spread, and its tenant-wide fallback recipients.

Adding a tenant is the operator's (`herald tenant add`); the rest needs the tenant's admin
role. Every change is recorded in the change audit with who made it. Functions flush and
leave the commit to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session, select

from models.audit import diff, record_change
from models.base import Channel
from models.cron import parse_timezone
from models.definition import SLUG_RULE, is_slug
from models.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from models.recipients import normalise_chat_id, normalise_email, normalise_recipients
from models.schedules import Schedule
from models.settings import get_settings
from models.spread import parse_spread, respread
from models.tenancy import Tenant, TenantRecipient
from models.text import require_one_line
from services.access import Action, Operator, Who, require
from tenantdb import check_datasource, parse_datasource


class FallbackRecipient(NamedTuple):
    """A tenant-wide fallback recipient: used by a schedule that names nobody on its channel."""

    id: int
    channel: str
    address: str


def redact_url(url: str | None) -> str | None:
    """A database URL with its password masked, for output and logs."""
    if not url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        return "(unparseable URL)"


def get_tenant(session: Session, who: Who, slug: str, action: Action = Action.READ) -> Tenant:
    """The tenant with this slug, if they may `action` there; another's reads as missing."""
    tenant = session.exec(select(Tenant).where(Tenant.slug == slug)).first()
    if tenant is None or who.role_in(tenant.id) is None:
        raise NotFound(f"No tenant {slug!r}; create it with `herald tenant add {slug} --name ...`.")
    require(who, tenant.id, action)
    return tenant


def add_tenant(
    session: Session, who: Who, slug: str, name: str, timezone: str = "UTC",
    datasource_url: str | None = None, emails: Sequence[str] = (), chats: Sequence[str] = (),
) -> Tenant:
    """Create a tenant with its tenant-wide fallback recipients (the operator's alone)."""
    if not isinstance(who, Operator):
        raise PermissionDenied("Tenants are added by herald's operator; run `herald tenant add`.")
    if not is_slug(slug or ""):
        raise InvalidInput(f"Tenant slug {slug!r} is not valid; {SLUG_RULE}.")
    require_one_line(name, "tenant name")
    if not name.strip():
        raise InvalidInput("The tenant name is empty; set name to the tenant's display name.")
    parse_timezone(timezone)
    if datasource_url:
        parse_datasource(datasource_url)
    recipients = normalise_recipients(emails, chats, get_settings().max_recipients)
    if session.exec(select(Tenant.id).where(Tenant.slug == slug)).first() is not None:
        raise Conflict(f"A tenant with slug {slug!r} already exists; choose another slug.")
    if datasource_url:  # last: it connects, and checks the role may only read
        check_datasource(datasource_url)
    tenant = Tenant(slug=slug, name=name.strip(), timezone=timezone, datasource_url=datasource_url)
    session.add(tenant)
    session.flush()
    session.add_all(TenantRecipient(tenant_id=tenant.id, channel=channel, address=address)
                    for channel, address in recipients)
    session.flush()
    record_change(session, tenant.id, "tenant", tenant.id, "created", who.actor,
                  diff({}, tenant_to_dict(session, tenant, with_id=False)))
    return tenant


def grant_refresh(session: Session, who: Who, tenant: Tenant, url: str | None) -> None:
    """Let the tenant's reports refresh materialized views through `url` (checked: PostgreSQL,
    reachable, not a superuser), or take that away with None. The change is recorded."""
    from tenantdb.refresh import check_refresh_source

    require(who, tenant.id, Action.MANAGE)
    if url is not None:
        check_refresh_source(url)
    before = redact_url(tenant.refresh_url)
    tenant.refresh_url = url
    session.flush()
    record_change(session, tenant.id, "tenant", tenant.id, "refresh granted" if url else "refresh revoked",
                  who.actor, diff({"refresh": before}, {"refresh": redact_url(url)}))


def set_spread(session: Session, who: Who, tenant: Tenant, seconds: int) -> int:
    """Spread the tenant's schedules over `seconds` after their slots (those with a window of
    their own keep it); each moves to its own second at its next slot. Returns how many moved."""
    require(who, tenant.id, Action.MANAGE)
    parse_spread(seconds)
    before, tenant.spread_seconds = tenant.spread_seconds, seconds
    following = session.exec(select(Schedule).where(
        Schedule.tenant_id == tenant.id, Schedule.spread_seconds.is_(None),
        Schedule.deleted_at.is_(None))).all()
    for schedule in following:
        respread(schedule, tenant)
    session.flush()
    record_change(session, tenant.id, "tenant", tenant.id, "spread changed", who.actor,
                  diff({"spread_seconds": before}, {"spread_seconds": seconds}))
    return len(following)


def tenant_recipients(session: Session, tenant_id: int) -> list[TenantRecipient]:
    return list(session.exec(
        select(TenantRecipient).where(TenantRecipient.tenant_id == tenant_id)
        .order_by(TenantRecipient.id)
    ))


def tenant_to_dict(session: Session, tenant: Tenant, with_id: bool = True) -> dict[str, Any]:
    recipients = tenant_recipients(session, tenant.id)
    data = {
        "id": tenant.id, "slug": tenant.slug, "name": tenant.name, "timezone": tenant.timezone,
        "datasource": redact_url(tenant.datasource_url), "active": tenant.active,
        "refresh": redact_url(tenant.refresh_url), "spread_seconds": tenant.spread_seconds,
        "email": [r.address for r in recipients if r.channel == "email"],
        "telegram": [r.address for r in recipients if r.channel == "telegram"],
    }
    if not with_id:
        del data["id"]
    return data


# --- fallback recipients: used by a schedule that names nobody on a channel --------------------

def list_fallback_recipients(session: Session, who: Who, tenant_id: int) -> list[FallbackRecipient]:
    """The tenant's fallback recipients, in the order they were added."""
    require(who, tenant_id, Action.MANAGE)
    return [FallbackRecipient(r.id, str(r.channel), r.address)
            for r in tenant_recipients(session, tenant_id)]


def add_fallback_recipient(session: Session, who: Who, tenant_id: int, channel: str,
                           address: str) -> FallbackRecipient:
    """Add an e-mail address or a Telegram chat id (validated as a schedule's recipients are)
    to the tenant's fallback recipients, at most HERALD_MAX_RECIPIENTS of them."""
    require(who, tenant_id, Action.MANAGE)
    try:
        channel = Channel(channel)
    except ValueError:
        raise InvalidInput(f"Unknown channel {channel!r}; use email or telegram.") from None
    if not (address or "").strip():
        what = "e-mail address" if channel == Channel.EMAIL else "Telegram chat id"
        raise InvalidInput(f"The {what} is empty; type the fallback recipient's {what}.")
    address = (normalise_email if channel == Channel.EMAIL else normalise_chat_id)(address.strip())
    existing = tenant_recipients(session, tenant_id)
    if any(r.channel == channel and r.address == address for r in existing):
        raise Conflict(f"{address} is already a fallback recipient of this tenant.")
    limit = get_settings().max_recipients
    if len(existing) >= limit:
        raise InvalidInput(f"The tenant already has {limit} fallback recipients, the most allowed; "
                           f"remove one first, or use a mailing list or a Telegram group.")
    recipient = TenantRecipient(tenant_id=tenant_id, channel=channel, address=address)
    session.add(recipient)
    session.flush()
    record_change(session, tenant_id, "tenant", tenant_id, "fallback added", who.actor,
                  {channel.value: [None, address]})
    return FallbackRecipient(recipient.id, channel.value, address)


def remove_fallback_recipient(session: Session, who: Who, tenant_id: int, recipient_id: int) -> None:
    """Remove one of the tenant's fallback recipients; schedules that relied on it send to the
    remaining ones on its channel (or to nobody there)."""
    require(who, tenant_id, Action.MANAGE)
    recipient = session.get(TenantRecipient, recipient_id)
    if recipient is None or recipient.tenant_id != tenant_id:
        raise NotFound(f"No fallback recipient {recipient_id}.")
    channel, address = str(recipient.channel), recipient.address
    session.delete(recipient)
    session.flush()
    record_change(session, tenant_id, "tenant", tenant_id, "fallback removed", who.actor,
                  {channel: [address, None]})
