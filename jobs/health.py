"""Whether a worker can do its job: its broker and herald's database answer.

The probes are `models.reachability`'s. `HealthCheck` asks both at most once per
`HEALTH_CACHE_SECONDS` (the workers' /health, `jobs.exposition`); the broker probe alone
tells an outage's log lines when the broker is back (`jobs.outage`).

A container's health check runs this module, which asks the worker's own /health:

    python -m jobs.health     # exit 0: the worker reaches both; 1: the sentence saying why not
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from models.reachability import broker_name, broker_problem, database_problem, reason
from models.settings import Settings, get_settings

HEALTH_CACHE_SECONDS = 5.0  # a health check every few seconds costs one probe of each


class HealthCheck:
    """The broker and the database, probed together at most once per `max_age_s`; concurrent
    callers share one probe."""

    def __init__(self, settings: Settings, max_age_s: float = HEALTH_CACHE_SECONDS) -> None:
        self.settings = settings
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._problems: list[str] = []

    def problems(self) -> list[str]:
        """A sentence per service that does not answer; empty when both do."""
        with self._lock:
            if time.monotonic() - self._checked_at > self.max_age_s:
                self._problems = self._probe()
                self._checked_at = time.monotonic()
            return list(self._problems)

    def _probe(self) -> list[str]:
        broker_url = self.settings.redis_url
        with ThreadPoolExecutor(max_workers=2) as pool:
            database = pool.submit(database_problem, self.settings.database_url)
            broker = pool.submit(broker_problem, broker_url) if broker_url else None
            found = [broker.result() if broker else None, database.result()]
        return [problem for problem in found if problem]

    def answer(self) -> tuple[int, str]:
        """The HTTP status and sentence /health answers with."""
        problems = self.problems()
        if problems:
            return 503, " ".join(problems)
        broker = f"{broker_name(self.settings.redis_url)} and " if self.settings.redis_url else ""
        return 200, f"ok: {broker}the database at DATABASE_URL answer."


def health_url(settings: Settings) -> str:
    """The worker's /health on this host (a worker listening on every address: on loopback)."""
    host = settings.metrics_host
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.metrics_port}/health"


def ask_worker(settings: Settings, timeout_s: float = 4.0) -> tuple[bool, str]:
    """(healthy, what the worker said, or why it said nothing)."""
    url = health_url(settings)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return True, response.read().decode()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode() or f"{url} answered {exc.code}."
    except OSError as exc:
        return False, (f"No worker answers at {url} ({reason(exc)}); is `dramatiq jobs` running "
                       f"with this HERALD_METRICS_PORT?")


def main() -> int:
    healthy, text = ask_worker(get_settings())
    print(text.strip(), file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
