"""The limits of `herald api` that are not the export bound (`api.reports`): the request body's
size (`BodyLimit`) and the per-credential rate limit (`RateLimit`).

The per-credential rate limit: at most HERALD_API_RATE_LIMIT requests a minute for each API
token (or JWT subject), with bursts up to that many, answered 429 with `Retry-After` beyond.

It is a generic cell rate algorithm (GCRA): one number per credential, the instant its
allowance is next fully used ("theoretical arrival time"). Each request moves it one interval
(a minute / the limit) later; a request that would move it more than a minute past now is
refused, and told when the next one fits. The number is kept in Redis when REDIS_URL is a
Redis URL, so the limit holds across every API process sharing it; updated by one script, so
concurrent requests cannot both take the last slot.

A busy client does not cost a Redis round trip per request: a process takes its slots in
leases, one slot at first, twice as many each time a lease is used up within a second, at most
a twentieth of the minute's allowance; a lease not used within a second is dropped (its slots
stay counted). So a client that asks now and then is counted exactly, and one that spreads a
burst over several processes gets at most a lease more per process than its limit.

Without Redis (the embedded demo, a RabbitMQ broker) or while Redis does not answer, each
process counts on its own: a limit a little looser, never an API that stops answering because
its limiter did.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from fastapi import HTTPException
from redis.commands.core import AsyncScript
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.settings import Settings
from services.access import ApiClient

log = logging.getLogger("herald.api")
WINDOW_MS = 60_000
LEASE_S = 1.0                 # a lease's slots are used within this long, or dropped
RETRY_REDIS_AFTER_S = 10.0    # after Redis failed to answer, count in-process this long

# KEYS[1]: the credential's key; ARGV[1]: the interval (ms), ARGV[2]: the slots wanted.
# Returns {slots granted, ms to wait when none}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + 60000 - tat) / interval)
if room < 1 then return {0, math.max(1, tat + interval - 60000 - now)} end
local granted = math.min(tonumber(ARGV[2]), room)
local next_tat = tat + granted * interval
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return {granted, 0}
"""


@dataclass
class _Lease:
    left: int         # slots still to use
    until: float      # monotonic instant it is dropped
    size: int         # the slots it was taken with


class RateLimit:
    """`await check(caller)` returns, or raises the 429 for a caller past their limit."""

    def __init__(self, settings: Settings) -> None:
        self.per_minute = settings.api_rate_limit
        # Whole milliseconds: Redis's Lua formats numbers with 14 digits, exact for integers.
        self.interval_ms = math.ceil(WINDOW_MS / self.per_minute) if self.per_minute else 0
        self.largest_lease = max(1, self.per_minute // 20)
        self.prefix = f"{settings.redis_namespace}:api-rate:"
        url = settings.redis_url
        self._url = url if url and url.startswith(("redis://", "rediss://", "unix://")) else None
        self._script: AsyncScript | None = None   # made in the event loop, at the first check
        self._redis_down_until = 0.0
        self._leases: dict[str, _Lease] = {}
        self._local: dict[str, int] = {}   # credential -> its theoretical arrival time (ms)

    async def check(self, caller: ApiClient) -> None:
        if not self.per_minute:
            return
        credential = (f"token:{caller.token_id}" if caller.token_id is not None else
                      "jwt:" + hashlib.sha256(f"{caller.tenant_id}:{caller.actor}".encode()).hexdigest()[:32])
        now = time.monotonic()
        lease = self._leases.get(credential)
        if lease is not None and lease.left > 0 and now < lease.until:
            lease.left -= 1
            return
        used_up = lease is not None and lease.left == 0 and now < lease.until
        want = min(lease.size * 2, self.largest_lease) if used_up else 1
        taken = await self._take_in_redis(credential, want)
        granted, wait_ms = taken if taken is not None else self._take_here(credential, want)
        if granted:
            if len(self._leases) > 100_000:
                self._leases = {k: v for k, v in self._leases.items() if v.until > now}
            self._leases[credential] = _Lease(granted - 1, now + LEASE_S, granted)
            return
        raise HTTPException(429, f"These credentials made more than {self.per_minute} requests in "
                                 f"a minute (HERALD_API_RATE_LIMIT); wait the Retry-After seconds "
                                 f"and send again.",
                            headers={"Retry-After": str(max(1, math.ceil(wait_ms / 1000)))})

    async def _take_in_redis(self, credential: str, want: int) -> tuple[int, int] | None:
        if self._url is None or time.monotonic() < self._redis_down_until:
            return None
        if self._script is None:
            client = aioredis.Redis.from_url(self._url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._script = client.register_script(_GCRA)
        try:
            granted, wait_ms = await self._script(keys=[self.prefix + credential],
                                                  args=[self.interval_ms, want])
            return int(granted), int(wait_ms)
        except (redis.RedisError, OSError) as exc:
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            log.warning("Redis at REDIS_URL does not answer (%s); counting API requests in this "
                        "process for %.0f s", type(exc).__name__, RETRY_REDIS_AFTER_S)
            return None

    def _take_here(self, credential: str, want: int) -> tuple[int, int]:
        """The script's arithmetic, in this process."""
        now = time.time_ns() // 1_000_000
        arrival = max(self._local.get(credential, now), now)
        room = (now + WINDOW_MS - arrival) // self.interval_ms
        if room < 1:
            return 0, max(1, arrival + self.interval_ms - WINDOW_MS - now)
        granted = min(want, room)
        self._local[credential] = arrival + granted * self.interval_ms
        if len(self._local) > 100_000:   # forget the credentials whose allowance is back
            self._local = {k: v for k, v in self._local.items() if v > now}
        return granted, 0


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body larger than `max_bytes` is answered 413 (a declared
    Content-Length before anything is read, a chunked body once it has grown past the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, int(declared))
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def noted(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, noted)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send, received)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        from api.problems import problem

        answer = problem(413, f"The body is more than {self.max_bytes:,} bytes ({size:,} or more); "
                              f"herald takes at most {self.max_bytes:,} (HERALD_API_MAX_BODY_BYTES).")
        await answer(scope, receive, send)
