"""One-click unsubscribe (RFC 8058): the signed token in an e-mail's List-Unsubscribe URL, good
for one (schedule, address) and nothing else; the key that signs it; the opt-outs it leaves.

The key is made on first use and kept in herald's database, which every process that signs
(the workers) or checks (the API) already shares: nothing to configure, and whoever could
forge a token can already change the schedule itself. A token does not expire: the link in
an old e-mail keeps working.
"""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlalchemy as sa
from itsdangerous import BadData, URLSafeSerializer
from sqlmodel import Field, Session, SQLModel, select

from models.base import Channel, created_at, parent
from models.db import insert_ignoring_conflicts, utcnow

PURPOSE = "unsubscribe"


class SigningKey(SQLModel, table=True):
    """A secret herald signs with, one per purpose."""

    __tablename__ = "signing_key"

    purpose: str = Field(primary_key=True, max_length=64)
    secret: str = Field(max_length=128)
    created_at: datetime = created_at()


class ScheduleOptOut(SQLModel, table=True):
    """An address that unsubscribed from a schedule: a tenant-wide fallback address is left out
    of that schedule's runs; the History marks the deliveries made to it before."""

    __tablename__ = "schedule_opt_out"
    __table_args__ = (sa.UniqueConstraint("schedule_id", "channel", "address"),)

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = parent("schedule.id", index=False)  # the unique index leads with it
    channel: Channel = Field(sa_type=sa.String(16))
    address: str = Field(max_length=320)
    created_at: datetime = created_at()


def _serializer(session: Session) -> URLSafeSerializer:
    """Signs with the unsubscribe key, made now if this is the first token (the first of two
    processes making it at once wins; both then use that one)."""
    kept = select(SigningKey.secret).where(SigningKey.purpose == PURPOSE)
    secret = session.exec(kept).first()
    if secret is None:
        session.execute(insert_ignoring_conflicts(session, SigningKey.__table__, "purpose").values(
            purpose=PURPOSE, secret=secrets.token_urlsafe(48), created_at=utcnow()))
        secret = session.exec(kept).one()
    return URLSafeSerializer(secret, salt="herald.unsubscribe")


def unsubscribe_tokens(session: Session, schedule_id: int, addresses: list[str]) -> dict[str, str]:
    """{address: its token} for the schedule's e-mail `addresses`."""
    serializer = _serializer(session)
    return {address: serializer.dumps([schedule_id, address]) for address in addresses}


def read_unsubscribe_token(session: Session, token: str) -> tuple[int, str] | None:
    """The (schedule id, address) a token herald signed stands for; None for any other string."""
    try:
        value = _serializer(session).loads(token)
    except BadData:
        return None
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)
            and isinstance(value[1], str)):
        return value[0], value[1]
    return None


def opted_out(session: Session, schedule_id: int, channel: Channel) -> set[str]:
    return set(session.exec(select(ScheduleOptOut.address).where(
        ScheduleOptOut.schedule_id == schedule_id, ScheduleOptOut.channel == channel)))
