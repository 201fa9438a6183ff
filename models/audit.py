"""Who changed what: one row per change to a schedule, report or tenant, old → new.

Written by the data functions that change things (the admin's and the CLI's alike), so
"why did it (not) send?" has an answer beside the schedule's runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, select

from models.base import created_at, json_column, parent

SYSTEM = "system"  # the actor of a change made by code that names no person (the demo, fixtures)
CLI = "cli"        # the actor of a change made with the `herald` command


class ChangeEvent(SQLModel, table=True):
    """One change: `changes` maps each field to [old, new]."""

    __tablename__ = "change_event"
    __table_args__ = (sa.Index("ix_change_event_object", "tenant_id", "object_type", "object_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id", index=False)  # a composite index leads with it
    object_type: str = Field(max_length=16)        # schedule | report | tenant
    object_id: int
    action: str = Field(max_length=32)             # created, updated, paused, resumed, deleted, …
    actor: str = Field(max_length=320)             # the user's e-mail, or "cli"
    changes: dict[str, Any] = json_column(dict)
    created_at: datetime = created_at()


class Change(NamedTuple):
    """One recorded change as plain data: who, when, what (`changes` maps each field to
    [old, new])."""

    id: int
    at: datetime
    actor: str
    action: str
    changes: dict[str, list[Any]]


def record_change(session: Session, tenant_id: int, object_type: str, object_id: int, action: str,
                  actor: str, changes: dict[str, list[Any]]) -> ChangeEvent:
    """Add one change row (flushed with the change it describes, in the same transaction)."""
    event = ChangeEvent(tenant_id=tenant_id, object_type=object_type, object_id=object_id,
                        action=action, actor=actor, changes=changes)
    session.add(event)
    session.flush()
    return event


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for each field of `new` whose value differs from `old`'s."""
    return {name: [old.get(name), value] for name, value in new.items() if old.get(name) != value}


def list_changes(session: Session, tenant_id: int, object_type: str, object_id: int,
                 limit: int = 100) -> list[Change]:
    """An object's changes, newest (last written) first."""
    return [Change(id=e.id, at=e.created_at, actor=e.actor, action=e.action, changes=dict(e.changes))
            for e in session.exec(
                select(ChangeEvent).where(ChangeEvent.tenant_id == tenant_id,
                                          ChangeEvent.object_type == object_type,
                                          ChangeEvent.object_id == object_id)
                .order_by(ChangeEvent.id.desc()).limit(limit))]
