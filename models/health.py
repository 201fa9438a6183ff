"""Health records the working parts leave for `herald health` and the admin: the tick's
heartbeat (one row per host, overwritten by every tick that host runs) and each render
process's browser status (a Redis key per process that expires unless refreshed).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from sqlmodel import Field, Session, SQLModel

from models.base import timestamp
from models.db import utcnow

log = logging.getLogger("herald.health")


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


# --- the render browsers' status, in Redis ------------------------------------------------------

RENDER_BROWSER_TTL_SECONDS = 300   # a record outlives its process by at most this
RENDER_BROWSER_REFRESH_SECONDS = 60  # renders refresh the record at most this often


@dataclass(frozen=True)
class RenderBrowserStatus:
    """One render process's Chromium: its version once launched, or why it did not launch."""

    host: str
    pid: int
    ok: bool
    version: str | None   # Chromium's, e.g. "131.0.6778.33"; None when the launch failed
    error: str | None     # one sentence when the launch failed
    at: datetime          # when it launched, or failed to
    seen_at: datetime     # the latest launch, failure or render (refreshed at most once a minute)


def render_browser_key(namespace: str, host: str, pid: int) -> str:
    return f"{namespace}:render-browser:{host}:{pid}"


class RenderBrowserBeacon:
    """Publishes this process's browser status to Redis so the admin can show it.

    Cheap and harmless: without a Redis URL it does nothing, a render refreshes the record
    at most once a minute, and a Redis error is logged once and never reaches the render.
    """

    def __init__(self, redis_url: str | None, namespace: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.enabled = bool(redis_url) and not redis_url.startswith(("amqp://", "amqps://"))
        self.redis_url, self.namespace, self.clock = redis_url, namespace, clock
        self._client = None
        self._last: RenderBrowserStatus | None = None
        self._warned = False
        self._lock = threading.Lock()

    def launched(self, version: str) -> None:
        at = self.clock()
        self._write(RenderBrowserStatus(host_name(), os.getpid(), True, version, None, at, at))

    def failed(self, error: str) -> None:
        at = self.clock()
        self._write(RenderBrowserStatus(host_name(), os.getpid(), False, None, error, at, at))

    def rendered(self) -> None:
        """A render finished: keep the record alive (one write a minute at most)."""
        last, now = self._last, self.clock()
        if last is None or (now - last.seen_at).total_seconds() < RENDER_BROWSER_REFRESH_SECONDS:
            return
        self._write(replace(last, seen_at=now))

    def _write(self, status: RenderBrowserStatus) -> None:
        if not self.enabled:
            return
        import redis

        with self._lock:
            self._last = status
            try:
                if self._client is None:
                    self._client = redis.Redis.from_url(self.redis_url, socket_timeout=2,
                                                        socket_connect_timeout=2)
                self._client.set(render_browser_key(self.namespace, status.host, status.pid),
                                 json.dumps(asdict(status), default=datetime.isoformat),
                                 ex=RENDER_BROWSER_TTL_SECONDS)
            except (redis.RedisError, OSError, ValueError) as exc:  # never fails the render
                if not self._warned:
                    self._warned = True
                    log.warning("the render browser's status could not be written to Redis (%s); "
                                "the admin will not show it", type(exc).__name__)


def read_render_browsers(redis_url: str, namespace: str) -> list[RenderBrowserStatus]:
    """Every render process's latest record, by host and pid; RedisError when unreadable."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = sorted(client.scan_iter(match=render_browser_key(namespace, "*", "*"), count=500))
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    statuses = []
    for value in values:
        if value is None:  # expired between SCAN and MGET
            continue
        data = json.loads(value)
        data["at"], data["seen_at"] = (datetime.fromisoformat(data[k]) for k in ("at", "seen_at"))
        statuses.append(RenderBrowserStatus(**data))
    return sorted(statuses, key=lambda s: (s.host, s.pid))
