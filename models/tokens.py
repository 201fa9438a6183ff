"""API tokens: a tenant's credentials for herald's HTTP API, each with its scopes.

Only a hash of the secret is kept; the token itself is shown once, when it is made. A token
is `herald_<prefix>_<secret>`: the prefix finds its row and names it in lists and logs, the
secret is checked against the hash.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from models.base import created_at, json_column, parent, timestamp


class Scope(StrEnum):
    """What a token (or an identity provider's JWT) lets its holder do in its tenant."""

    REPORTS_READ = "reports.read"
    REPORTS_WRITE = "reports.write"
    SCHEDULES_READ = "schedules.read"
    SCHEDULES_WRITE = "schedules.write"


class ApiToken(SQLModel, table=True):
    """One API token of one tenant."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id")
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16, unique=True)
    secret_hash: str = Field(max_length=64)  # SHA-256 of the secret, hex: the secret is random
    scopes: list[str] = json_column(list)
    created_by: str = Field(max_length=320)
    created_at: datetime = created_at()
    expires_at: datetime | None = timestamp()
    last_used_at: datetime | None = timestamp()
    revoked_at: datetime | None = timestamp()
    revoked_by: str | None = Field(default=None, max_length=320)
