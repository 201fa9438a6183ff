"""Booting a worker process: logging first, then the broker, then the actors (Dramatiq declares
actors on the broker installed when they are imported, and prometheus_client must see the
workers' metrics directory before herald's metrics are defined: `jobs.broker`).

`dramatiq jobs` and `periodiq jobs` boot through `jobs/__init__.py`; `herald demo` and
`jobs.shell.drain` run workers in their own process with `in_process_worker`.
"""

from __future__ import annotations

import logging
import sys

import dramatiq
from dramatiq.middleware import Middleware

from jobs.broker import install_broker
from models.logs import configure_logging
from models.settings import get_settings

WORKER_THREADS = 2
WORKER_STOP_TIMEOUT_MS = 30_000  # a render or send in progress may finish
_booted: set[int] = set()  # id() of the brokers whose process-boot hooks have run here


def imported_by_worker_command(module: str) -> bool:
    """Whether the `dramatiq` or `periodiq` command is importing `module` as its broker module:
    both call `dramatiq.cli.import_object` with its name (in every worker process too)."""
    cli = sys.modules.get("dramatiq.cli")
    if cli is None:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is cli.import_object.__code__ and frame.f_locals.get("modname") == module:
            return True
        frame = frame.f_back
    return False


def boot() -> dramatiq.Broker:
    """Make this process a worker: herald's log format and level (a broker outage one sentence
    per backoff, `jobs.outage`), the broker from the settings (with the workers' metrics and
    health), and the actors declared on it. Returns the broker."""
    settings = get_settings()
    handler = configure_logging(settings)
    if settings.redis_url is not None:
        handler.addFilter(outage_log(settings.redis_url))
    broker = install_broker(settings, worker=True)
    import jobs.actors  # noqa: F401 - declares the actors on `broker`

    return broker


def outage_log(broker_url: str) -> logging.Filter:
    """The filter that turns dramatiq's per-queue connection errors into `jobs.outage`'s
    sentences about the broker at `broker_url`."""
    from jobs.outage import BrokerOutageLog
    from models.reachability import broker_name, broker_problem

    return BrokerOutageLog(lambda: broker_problem(broker_url), broker_name(broker_url))


class CloseBrowsers(Middleware):
    """Each worker thread closes its Chromium as it stops, so none outlives the worker."""

    def before_worker_thread_shutdown(self, broker: dramatiq.Broker, thread: object) -> None:
        from renderers.pdf import printer

        printer().close()


def in_process_worker(broker: dramatiq.Broker, threads: int = WORKER_THREADS) -> dramatiq.Worker:
    """A started dramatiq Worker in this process, booted as a `dramatiq jobs` process boots its
    own (TimeLimit's watchdog, ...), each thread closing its browser when it stops."""
    import jobs.actors  # noqa: F401 - the actors, declared on the installed broker

    if id(broker) not in _booted:
        broker.add_middleware(CloseBrowsers())
        broker.emit_after("process_boot")
        _booted.add(id(broker))
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    return worker
