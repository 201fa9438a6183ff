"""Tenants, their fallback recipients, admin users and who may see which tenant."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import Channel, created_at, parent, timestamp


class Tenant(SQLModel, table=True):
    """An organisation whose reports herald delivers, with its own data source."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    # SQLAlchemy URL of the tenant's own database; may carry a password, never logged.
    datasource_url: str | None = Field(default=None, sa_type=sa.Text)
    # A second URL, granted explicitly, that may only refresh reports' materialized views.
    refresh_url: str | None = Field(default=None, sa_type=sa.Text)
    active: bool = Field(default=True)
    # Spread each schedule's runs over this many seconds after its slot (0: off; models.spread).
    spread_seconds: int = Field(default=0)
    created_at: datetime = created_at()


class TenantRecipient(SQLModel, table=True):
    """A tenant-wide fallback recipient, used when a schedule names none for a channel."""

    __tablename__ = "tenant_recipient"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id", index=False)  # the unique index leads with it
    channel: Channel = Field(sa_type=sa.String(16))
    address: str = Field(max_length=320)


class Role(StrEnum):
    """What a member may do in a tenant: read, change schedules, or manage members too."""

    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


class User(SQLModel, table=True):
    """A person who logs in to the admin."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    password_hash: str = Field(sa_type=sa.Text)
    active: bool = Field(default=True)
    created_at: datetime = created_at()
    # Failed logins since the last success, and until when the account is locked out:
    # kept here so a restart of the admin does not reset them.
    failed_logins: int = Field(default=0)
    locked_until: datetime | None = timestamp()
    last_login_at: datetime | None = timestamp()
    # When the password last changed: admin sessions logged in before it end.
    password_changed_at: datetime | None = timestamp()


class Membership(SQLModel, table=True):
    """A user's role in one tenant; admin users see only their tenants' objects."""

    __table_args__ = (sa.UniqueConstraint("user_id", "tenant_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = parent("app_user.id", index=False)  # the unique index leads with it
    tenant_id: int = parent("tenant.id")
    role: Role = Field(sa_type=sa.String(16))
