"""The tick's heartbeat: one row per host, overwritten by every tick that host runs."""

from __future__ import annotations

import socket
from datetime import datetime

from sqlmodel import Field, Session, SQLModel

from models.base import timestamp


class TickHeartbeat(SQLModel, table=True):
    """When a host's latest tick started and finished, how long it took, what it claimed."""

    __tablename__ = "tick_heartbeat"

    host: str = Field(primary_key=True, max_length=255)
    last_started_at: datetime = timestamp(nullable=False)
    last_finished_at: datetime = timestamp(nullable=False)
    duration_ms: int = Field(default=0)
    claimed: int = Field(default=0)


def host_name() -> str:
    """This machine's name, as the heartbeat row's key."""
    return socket.gethostname()[:255] or "unknown"


def record_tick(session: Session, *, host: str, started_at: datetime, finished_at: datetime,
                duration_ms: int, claimed: int) -> None:
    """Overwrite `host`'s heartbeat with one UPSERT (PostgreSQL and SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    table = TickHeartbeat.__table__
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    values = {"last_started_at": started_at, "last_finished_at": finished_at,
              "duration_ms": duration_ms, "claimed": claimed}
    statement = insert(table).values(host=host, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["host"], set_=values))
