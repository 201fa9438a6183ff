"""Idempotency keys: the `Idempotency-Key` an API caller sent with a request that sends, and the
response that request got. A retry with the same key gets that response back and sends nothing
again (`services.idempotency`). Kept for a day (`KEPT`), then purged by the tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from models.base import created_at, parent

KEPT = timedelta(hours=24)


class IdempotentRequest(SQLModel, table=True):
    """One key of one caller (an API token or a JWT's subject) of one tenant."""

    __tablename__ = "idempotent_request"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "caller", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = parent("tenant.id", index=False)  # the unique constraint leads with it
    caller: str = Field(max_length=320)
    key: str = Field(max_length=255)
    fingerprint: str = Field(max_length=64)   # SHA-256 of the method, path and body, hex
    status_code: int | None = None            # None while the first request is under way
    response: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    created_at: datetime = created_at()


def purge_idempotency_keys(session: Session, now: datetime) -> int:
    """Delete the keys older than `KEPT`; returns how many went."""
    result = session.execute(sa.delete(IdempotentRequest)
                             .where(IdempotentRequest.created_at < now - KEPT))
    return result.rowcount or 0
