"""The per-credential rate limit: at most HERALD_API_RATE_LIMIT requests a minute for each API
token (or JWT subject), with bursts up to that many, answered 429 with `Retry-After` beyond.

It is a generic cell rate algorithm (GCRA): one number per credential, the instant its
allowance is next fully used ("theoretical arrival time"). Each request moves it one interval
(a minute / the limit) later; a request that would move it more than a minute past now is
refused, and told when the next one fits. The number is kept in Redis when REDIS_URL is a
Redis URL, so the limit holds across every API process sharing it; updated by one script, so
concurrent requests cannot both take the last slot. Without Redis (the embedded demo, a
RabbitMQ broker) or while Redis does not answer, each process counts on its own: a limit a
little looser, never an API that stops answering because its limiter did.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

import redis
from fastapi import HTTPException

from models.settings import Settings
from services.access import ApiClient

log = logging.getLogger("herald.api")
WINDOW_MS = 60_000
RETRY_REDIS_AFTER_S = 10.0   # after Redis failed to answer, count in-process this long

# KEYS[1]: the credential's key; ARGV[1]: the interval (ms). Returns 0, or the ms to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > 60000 then return math.max(1, next_tat - now - 60000) end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now))
return 0
"""


class RateLimit:
    """`check(caller)` returns, or raises the 429 for a caller past their limit."""

    def __init__(self, settings: Settings) -> None:
        self.per_minute = settings.api_rate_limit
        # Whole milliseconds: Redis's Lua formats numbers with 14 digits, exact for integers.
        self.interval_ms = math.ceil(WINDOW_MS / self.per_minute) if self.per_minute else 0
        self.prefix = f"{settings.redis_namespace}:api-rate:"
        url = settings.redis_url
        self._redis = (redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
                       if url and url.startswith(("redis://", "rediss://", "unix://")) else None)
        self._script = self._redis.register_script(_GCRA) if self._redis is not None else None
        self._redis_down_until = 0.0
        self._local: dict[str, int] = {}   # credential -> its theoretical arrival time (ms)
        self._lock = threading.Lock()

    def check(self, caller: ApiClient) -> None:
        if not self.per_minute:
            return
        credential = (f"token:{caller.token_id}" if caller.token_id is not None else
                      "jwt:" + hashlib.sha256(f"{caller.tenant_id}:{caller.actor}".encode()).hexdigest()[:32])
        wait_ms = self._wait_in_redis(credential)
        if wait_ms is None:
            wait_ms = self._wait_here(credential)
        if wait_ms > 0:
            raise HTTPException(429, f"These credentials made more than {self.per_minute} requests "
                                     f"in a minute (HERALD_API_RATE_LIMIT); wait the Retry-After "
                                     f"seconds and send again.",
                                headers={"Retry-After": str(max(1, math.ceil(wait_ms / 1000)))})

    def _wait_in_redis(self, credential: str) -> float | None:
        if self._script is None or time.monotonic() < self._redis_down_until:
            return None
        try:
            return float(self._script(keys=[self.prefix + credential], args=[self.interval_ms]))
        except (redis.RedisError, OSError) as exc:
            self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            log.warning("Redis at REDIS_URL does not answer (%s); counting API requests in this "
                        "process for %.0f s", type(exc).__name__, RETRY_REDIS_AFTER_S)
            return None

    def _wait_here(self, credential: str) -> float:
        now = time.time_ns() // 1_000_000
        with self._lock:
            arrival = max(self._local.get(credential, now), now) + self.interval_ms
            if arrival - now > WINDOW_MS:
                return arrival - now - WINDOW_MS
            self._local[credential] = arrival
            if len(self._local) > 100_000:   # forget the credentials whose allowance is back
                self._local = {k: v for k, v in self._local.items() if v > now}
            return 0.0
