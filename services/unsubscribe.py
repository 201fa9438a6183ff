"""One-click unsubscribe (RFC 8058): what the List-Unsubscribe link of a delivered e-mail does.

The link's signed token is the whole credential, for one (schedule, address) and nothing else
(`models.unsubscribe`). Following it (GET) only shows what it would do. Confirming it (POST,
as a mail provider's "Unsubscribe" button does) removes the address from the schedule's own
recipients, and records an opt-out, so that a tenant-wide fallback address is left out of that
schedule, and only that one. Doing it again changes nothing. Each unsubscribe is a change of
the schedule, in its change list, by the address itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from models.audit import record_change
from models.base import Channel
from models.db import insert_ignoring_conflicts
from models.errors import NotFound
from models.reports import Report
from models.schedules import Schedule, ScheduleRecipient
from models.tenancy import Tenant
from models.unsubscribe import ScheduleOptOut, read_unsubscribe_token

NOT_FOUND = "This unsubscribe link is not one herald made; use the link in the e-mail as it came."


@dataclass(frozen=True)
class Subscription:
    """Who would be, or was, unsubscribed from what."""

    address: str
    report_title: str
    tenant_name: str
    subscribed: bool   # still receives the schedule's e-mails


def look_up(session: Session, token: str) -> Subscription:
    """What the link stands for; NotFound for a token herald did not sign."""
    schedule, address = _target(session, token)
    return _subscription(session, schedule, address)


def unsubscribe(session: Session, token: str, now: datetime) -> Subscription:
    """Unsubscribe the link's address from the link's schedule (idempotent)."""
    schedule, address = _target(session, token)
    if schedule.deleted_at is None:
        own = _own(session, schedule.id)
        kept = [a for a in own if a != address]
        if kept != own:
            session.execute(sa.delete(ScheduleRecipient).where(
                ScheduleRecipient.schedule_id == schedule.id,
                ScheduleRecipient.channel == Channel.EMAIL, ScheduleRecipient.address == address))
        added = session.execute(
            insert_ignoring_conflicts(session, ScheduleOptOut.__table__, "schedule_id", "channel",
                                      "address")
            .values(schedule_id=schedule.id, channel=Channel.EMAIL.value, address=address,
                    created_at=now).returning(ScheduleOptOut.id)).first()
        if kept != own or added is not None:
            changes = {"opted out": [None, address]}
            if kept != own:
                changes["email"] = [own, kept]
            record_change(session, schedule.tenant_id, "schedule", schedule.id, "unsubscribed",
                          f"{address} (unsubscribe link)", changes)
    return _subscription(session, schedule, address)


def _target(session: Session, token: str) -> tuple[Schedule, str]:
    found = read_unsubscribe_token(session, token)
    schedule = session.get(Schedule, found[0]) if found else None
    if schedule is None:
        raise NotFound(NOT_FOUND)
    return schedule, found[1]


def _own(session: Session, schedule_id: int) -> list[str]:
    return list(session.exec(select(ScheduleRecipient.address).where(
        ScheduleRecipient.schedule_id == schedule_id, ScheduleRecipient.channel == Channel.EMAIL)
        .order_by(ScheduleRecipient.id)))


def _subscription(session: Session, schedule: Schedule, address: str) -> Subscription:
    title = session.get(Report, schedule.report_id).title
    tenant = session.get(Tenant, schedule.tenant_id).name
    out = session.exec(select(ScheduleOptOut.id).where(
        ScheduleOptOut.schedule_id == schedule.id, ScheduleOptOut.channel == Channel.EMAIL,
        ScheduleOptOut.address == address)).first()
    subscribed = schedule.deleted_at is None and out is None
    return Subscription(address=address, report_title=title, tenant_name=tenant, subscribed=subscribed)
