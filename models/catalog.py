"""Writes to tenants, reports and users: validate everything first, then write."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import Session, select

from models.audit import SYSTEM, diff, record_change
from models.cron import parse_timezone
from models.db import utcnow
from models.definition import SLUG_RULE, ReportDefinition, is_slug
from models.errors import Conflict, InvalidInput, NotFound
from models.recipients import normalise_email, normalise_recipients
from models.reports import Report
from models.settings import get_settings
from models.tenancy import Membership, Role, Tenant, TenantRecipient, User
from models.text import require_one_line
from tenantdb import check_datasource, check_report, parse_datasource

_hasher = PasswordHasher()
MIN_PASSWORD = 8  # characters


def redact_url(url: str | None) -> str | None:
    """A database URL with its password masked, for output and logs."""
    if not url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def get_tenant(session: Session, slug: str) -> Tenant:
    tenant = session.exec(select(Tenant).where(Tenant.slug == slug)).first()
    if tenant is None:
        raise NotFound(f"No tenant {slug!r}; create it with `herald tenant add {slug} --name ...`.")
    return tenant


def get_report(session: Session, tenant: Tenant, slug: str) -> Report:
    report = session.exec(
        select(Report).where(Report.tenant_id == tenant.id, Report.slug == slug)
    ).first()
    if report is None:
        raise NotFound(
            f"Tenant {tenant.slug!r} has no report {slug!r}; add it with "
            f"`herald report add --tenant {tenant.slug} FILE.yaml`."
        )
    return report


def add_tenant(
    session: Session, slug: str, name: str, timezone: str = "UTC",
    datasource_url: str | None = None, emails: Sequence[str] = (), chats: Sequence[str] = (),
) -> Tenant:
    """Create a tenant with its tenant-wide fallback recipients."""
    _check_slug(slug, "tenant")
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
    return tenant


def _check_slug(slug: str, what: str) -> None:
    if not is_slug(slug or ""):
        raise InvalidInput(f"{what.capitalize()} slug {slug!r} is not valid; {SLUG_RULE}.")


def save_report(session: Session, tenant: Tenant, definition: ReportDefinition,
                actor: str = SYSTEM) -> tuple[Report, bool]:
    """Create the report, or update the one with the same slug. Returns (report, created).

    When the tenant has a data source, it first describes each query (no rows are read),
    so SQL that is not one SELECT, or lacks a column its section shows, is refused here.
    The change (title and definition, old → new) is recorded with `actor`.
    """
    if definition.refresh and not tenant.refresh_url:
        raise InvalidInput(f"The report refreshes {', '.join(definition.refresh)} before its queries, "
                           f"and tenant {tenant.slug!r} granted no refresh data source; grant one with "
                           f"`herald tenant grant-refresh {tenant.slug} --url <the views' owner's "
                           f"PostgreSQL URL>`, or remove refresh:.")
    if tenant.datasource_url:
        check_report(tenant.datasource_url, definition)
    data = definition.model_dump(mode="json", exclude_none=True)
    for key, default in (("send_if", "always"), ("refresh", [])):  # unused options stay unwritten
        if data.get(key) == default:
            del data[key]
    report = session.exec(
        select(Report).where(Report.tenant_id == tenant.id, Report.slug == definition.slug)
    ).first()
    created = report is None
    before = {} if report is None else {"title": report.title, "definition": report.definition}
    changes = diff(before, {"title": definition.title, "definition": data})
    if report is None:
        report = Report(tenant_id=tenant.id, slug=definition.slug, title=definition.title,
                        definition=data)
        session.add(report)
    else:
        report.title, report.definition, report.updated_at = definition.title, data, utcnow()
    session.flush()
    if changes:
        record_change(session, tenant.id, "report", report.id, "created" if created else "updated",
                      actor, changes)
    return report, created


def grant_refresh(session: Session, tenant: Tenant, url: str | None, actor: str = SYSTEM) -> None:
    """Let the tenant's reports refresh materialized views through `url` (checked: PostgreSQL,
    reachable, not a superuser), or take that away with None. The change is recorded."""
    from tenantdb.refresh import check_refresh_source

    if url is not None:
        check_refresh_source(url)
    before = redact_url(tenant.refresh_url)
    tenant.refresh_url = url
    session.flush()
    record_change(session, tenant.id, "tenant", tenant.id, "refresh granted" if url else "refresh revoked",
                  actor, diff({"refresh": before}, {"refresh": redact_url(url)}))


def set_spread(session: Session, tenant: Tenant, seconds: int, actor: str = SYSTEM) -> int:
    """Spread the tenant's schedules over `seconds` after their slots (those with a window of
    their own keep it); each moves to its own second at its next slot. Returns how many moved."""
    from models.schedules import Schedule
    from models.spread import parse_spread, respread

    parse_spread(seconds)
    before, tenant.spread_seconds = tenant.spread_seconds, seconds
    following = session.exec(select(Schedule).where(
        Schedule.tenant_id == tenant.id, Schedule.spread_seconds.is_(None),
        Schedule.deleted_at.is_(None))).all()
    for schedule in following:
        respread(schedule, tenant)
    session.flush()
    record_change(session, tenant.id, "tenant", tenant.id, "spread changed", actor,
                  diff({"spread_seconds": before}, {"spread_seconds": seconds}))
    return len(following)


def tenant_recipients(session: Session, tenant_id: int) -> list[TenantRecipient]:
    return list(session.exec(
        select(TenantRecipient).where(TenantRecipient.tenant_id == tenant_id)
        .order_by(TenantRecipient.id)
    ))


def tenant_to_dict(session: Session, tenant: Tenant) -> dict[str, Any]:
    recipients = tenant_recipients(session, tenant.id)
    return {
        "id": tenant.id, "slug": tenant.slug, "name": tenant.name, "timezone": tenant.timezone,
        "datasource": redact_url(tenant.datasource_url), "active": tenant.active,
        "refresh": redact_url(tenant.refresh_url), "spread_seconds": tenant.spread_seconds,
        "email": [r.address for r in recipients if r.channel == "email"],
        "telegram": [r.address for r in recipients if r.channel == "telegram"],
    }


@dataclass(frozen=True)
class UserGrant:
    """What `add_user` did: "created" the user, "added" an existing one to the tenant,
    "role changed" (from `previous_role`), or "unchanged"."""

    user: User
    role: Role
    change: str
    previous_role: Role | None = None
    generated_password: str | None = None


def add_user(
    session: Session, email: str, tenant: Tenant, role: str, password: str | None = None
) -> UserGrant:
    """Give a user a role in a tenant, creating the user when the e-mail is new.

    An existing user's password is never changed: giving one for them is refused.
    """
    email = normalise_email(email)
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput(f"Unknown role {role!r}; use viewer, editor or admin.") from None
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        return _create_user(session, email, tenant, role, password)
    if password is not None:
        raise InvalidInput(
            f"User {email} already exists; `herald user add` does not change passwords, "
            f"so leave out --password-stdin to add them to this tenant."
        )
    return _grant_role(session, user, tenant, role)


def _create_user(
    session: Session, email: str, tenant: Tenant, role: Role, password: str | None
) -> UserGrant:
    """A new user with `password` (or a generated one) and a membership of `tenant`."""
    if password is not None:
        check_password(password)
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(12)
    user = User(email=email, password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=role))
    session.flush()
    return UserGrant(user, role, "created", generated_password=generated)


def _grant_role(session: Session, user: User, tenant: Tenant, role: Role) -> UserGrant:
    """Make an existing user a member of `tenant` with `role`; their password stays as it is."""
    membership = session.exec(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant.id)
    ).first()
    if membership is None:
        session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=role))
        session.flush()
        return UserGrant(user, role, "added")
    previous = Role(membership.role)
    if previous == role:
        return UserGrant(user, role, "unchanged")
    membership.role = role
    session.flush()
    return UserGrant(user, role, "role changed", previous_role=previous)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"The password is shorter than {MIN_PASSWORD} characters; choose a "
                           f"longer one.")


def set_password(user: User, password: str, now: datetime) -> None:
    """Give `user` a new password (not the current one), lift any lockout, and end their other
    admin sessions: those logged in before `now`."""
    check_password(password)
    if verify_password(user, password):
        raise InvalidInput("The new password is the same as the current one; choose a "
                           "different one.")
    user.password_hash = _hasher.hash(password)
    user.password_changed_at = now
    user.failed_logins, user.locked_until = 0, None


def reset_password(session: Session, email: str, password: str | None,
                   now: datetime) -> tuple[str, str | None]:
    """An operator's reset (`herald user set-password`): `password`, or a generated one.
    Returns the user's address and the generated password (shown once), if any."""
    address = normalise_email(email)
    user = session.exec(select(User).where(User.email == address)).first()
    if user is None:
        raise NotFound(f"No user has the e-mail {address}; check the address, or create the "
                       f"user with `herald user add`.")
    generated = secrets.token_urlsafe(12) if password is None else None
    set_password(user, password or generated, now)
    session.flush()
    return address, generated


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def count_rows(session: Session, model: type) -> int:
    return session.exec(select(sa.func.count()).select_from(model)).one()
