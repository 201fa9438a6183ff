"""Who changed what: one row per change to a schedule, report or tenant, old → new.

Written by the data functions that change things (the admin's and the CLI's alike), so
"why did it (not) send?" has an answer beside the schedule's runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at, json_column, parent


class ChangeEvent(SQLModel, table=True):
    """One change: `changes` maps each field to [old, new]."""

    __tablename__ = "change_event"
    __table_args__ = (sa.Index("ix_change_event_object", "tenant_id", "object_type", "object_id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id")
    object_type: str = Field(max_length=16)        # schedule | report | tenant
    object_id: int
    action: str = Field(max_length=32)             # created, updated, paused, resumed, deleted, …
    actor: str = Field(max_length=320)             # the user's e-mail, or "cli"
    changes: dict[str, Any] = json_column(dict)
    created_at: datetime = created_at()
