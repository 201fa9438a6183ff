"""A broker outage in a worker's log: one sentence per backoff, not a line per queue every 3 s.

While the broker does not answer, each of dramatiq's consumer threads (one per queue and
delay queue) logs CRITICAL "Consumer encountered a connection error" and INFO "Restarting
consumer in 3.00 seconds." at every attempt (dramatiq/worker.py ConsumerThread.run): on
herald's queues, 16 lines every 3 s; and a WARNING every second for each message it cannot
acknowledge. `BrokerOutageLog` sits on the worker's log handler, drops those lines, and on
the first connection error starts a watch that asks the broker itself
(`models.reachability.broker_problem`) after a growing wait (5, 10, 20, 40, then every 60 s),
logging one sentence each time it still does not answer and one when it is back.
Dramatiq's consumers keep reconnecting on their own every 3 s meanwhile; the watch only
speaks for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("herald.worker")

CONSUMER_LOGGERS = "dramatiq.worker.ConsumerThread("
# dramatiq's own format strings (pinned dramatiq 2.x; tests/jobs/test_worker_health.py sees a change)
CONNECTION_ERRORS = ("Consumer encountered a connection error: %s",
                     "Failed to post_process_message(%s) due to a connection error: %s")
RESTARTING = "Restarting consumer in %0.2f seconds."
FIRST_WAIT_S = 5.0
MAX_WAIT_S = 60.0


class BrokerOutageLog(logging.Filter):
    """A filter for the worker's log handler: dramatiq's per-queue connection errors out, a
    watch's sentences in. `probe()` returns None when the broker answers, else a sentence."""

    def __init__(self, probe: Callable[[], str | None], name: str, first_wait_s: float = FIRST_WAIT_S,
                 max_wait_s: float = MAX_WAIT_S) -> None:
        super().__init__()
        self.probe = probe
        self.broker_name = name
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._watch: threading.Thread | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CONSUMER_LOGGERS) or not isinstance(record.msg, str):
            return True
        if record.msg.startswith(CONNECTION_ERRORS):
            self._start_watch()
            return False
        return record.msg != RESTARTING

    def _start_watch(self) -> None:
        with self._lock:
            if self._watch is None:
                self._watch = threading.Thread(target=self._watch_broker, name="broker-outage",
                                               daemon=True)
                self._watch.start()

    def _watch_broker(self) -> None:
        """Ask the broker until it answers: a sentence per failed try, one when it is back (none
        at all when it answers at once: a dropped connection that the consumers remake)."""
        started, wait, told = time.monotonic(), self.first_wait_s, False
        try:
            while (problem := self.probe()) is not None:
                log.error("%s; retrying in %d s.", problem.rstrip("."), wait)
                told = True
                time.sleep(wait)
                wait = min(wait * 2, self.max_wait_s)
            if told:
                log.info("%s answers again, after %d s.", self.broker_name, time.monotonic() - started)
        finally:
            with self._lock:
                self._watch = None
