"""Admin sessions: one row per login to the admin, shared by the browser's tabs through a
cookie, and ended on the server (`services/admin_sessions.py` says when); and the failed
logins that slow down the next ones (`services/login_throttle.py`).

Only a SHA-256 of the session's secret is kept: first of the one-time code the login hands
its tab, then, once the browser has swapped that code for its cookie, of the cookie's token.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import created_at, parent, timestamp


class Ended(StrEnum):
    """Why an admin session ended."""

    LOGOUT = "logout"      # the user logged out (in any tab)
    IDLE = "idle"          # no interaction for HERALD_ADMIN_IDLE_MINUTES
    PASSWORD = "password"  # the account's password changed (in another session, or by `herald`)
    GONE = "gone"          # the account was deactivated
    ACCESS = "access"      # a download or a refreshing page found the tenant's membership gone


class AdminSession(SQLModel, table=True):
    """One login to the admin, live until `ended_at`."""

    __tablename__ = "admin_session"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = parent("app_user.id")
    # SHA-256, hex: of the login's one-time code until `claimed_at`, then of the cookie's token.
    secret_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = created_at()
    claimed_at: datetime | None = timestamp()  # when the browser took its cookie (None: not yet)
    last_seen_at: datetime = timestamp(nullable=False)  # the last interaction: idle counts from it
    ended_at: datetime | None = timestamp()
    ended_why: Ended | None = Field(default=None, sa_type=sa.String(16))


class LoginFailure(SQLModel, table=True):
    """One failed login to the admin: the address typed, from which client, when. A success
    deletes its address's rows from that client; rows older than a day are deleted."""

    __tablename__ = "login_failure"
    __table_args__ = (sa.Index("ix_login_failure_email_client", "email", "client", "at"),
                      sa.Index("ix_login_failure_client", "client", "at"))

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)  # normalised; "" when what was typed is not an address
    client: str = Field(max_length=64)  # the client's IP address as the admin saw it
    at: datetime = timestamp(nullable=False, index=True)
