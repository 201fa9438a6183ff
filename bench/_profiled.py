"""`dramatiq bench._profiled`: herald's worker (`jobs`), with each message profiled.

`bench/herd.py --profile DIR` runs its workers through this module. Every worker thread keeps
a cProfile profile of its CPU time (time.thread_time: waiting is not counted) that is on only
while the thread processes a message, and every process
times each SQL statement it sends to the control database (by its text, parameters apart);
both are written into DIR (HERALD_PROFILE_DIR) every couple of seconds, as
`<pid>-<thread>.prof` and `<pid>-statements.json`, so a herd can kill its workers at the end
and still read them.
"""

from __future__ import annotations

import cProfile
import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import dramatiq
import sqlalchemy as sa
from dramatiq.middleware import Middleware

from jobs.worker import boot

DIRECTORY = Path(os.environ["HERALD_PROFILE_DIR"])
DUMP_EVERY_S = 2.0


class Profiled(Middleware):
    """A cProfile profile per worker thread, on while it processes a message."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.dumped = time.monotonic()

    def profile(self) -> cProfile.Profile:
        if not hasattr(self.local, "profile"):
            # CPU time of this thread: waiting (for the database, the GIL, Chromium) is not counted
            self.local.profile = cProfile.Profile(time.thread_time)
            self.local.dumped = time.monotonic()
        return self.local.profile

    def before_process_message(self, broker, message) -> None:
        self.profile().enable()

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        profile = self.profile()
        profile.disable()
        now = time.monotonic()
        if now - self.local.dumped > DUMP_EVERY_S:
            self.local.dumped = now
            profile.dump_stats(DIRECTORY / f"{os.getpid()}-{threading.get_ident()}.prof")
            with self.lock:
                if now - self.dumped > DUMP_EVERY_S:
                    self.dumped = now
                    (DIRECTORY / f"{os.getpid()}-statements.json").write_text(json.dumps(self.statements))

    after_skip_message = after_process_message

    def time_statements(self) -> None:
        started = threading.local()

        @sa.event.listens_for(sa.Engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany) -> None:
            started.at = time.perf_counter()

        @sa.event.listens_for(sa.Engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany) -> None:
            if conn.engine.url.username and conn.engine.url.username.endswith("_reader"):
                statement = "[tenant data source] " + statement
            figures = self.statements[" ".join(statement.split())[:300]]
            figures[0] += 1
            figures[1] += time.perf_counter() - started.at


broker: dramatiq.Broker = boot()
_profiled = Profiled()
_profiled.time_statements()
broker.add_middleware(_profiled)
