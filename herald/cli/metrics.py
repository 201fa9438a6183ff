"""`herald metrics`: a Prometheus exporter of figures read from herald's database at each scrape.

Workers expose their own counters on their port (9191, see `jobs.exposition`); this
exporter adds what only the database knows (due work, stuck runs, the tick's age) and
queue depths from Redis. In embedded mode (no broker) it also serves the herald counters
and histograms of its own process (`services.health.process_metrics`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated
from wsgiref.simple_server import WSGIServer

import sqlalchemy as sa
import typer
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from herald.cli.common import reports_errors
from models.db import session_scope, utcnow
from models.errors import HeraldError
from models.settings import get_settings


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    """A gauge without labels; no sample when `value` is None (unknown)."""
    gauge = GaugeMetricFamily(name, documentation)
    if value is not None:
        gauge.add_metric([], value)
    return gauge


class DatabaseCollector(Collector):
    """Gauges from `services.health.check_health`, read afresh at every scrape.

    A database that cannot be read gives `herald_database_up 0` and nothing else, so the
    scrape itself still succeeds and the outage can be alerted on.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from services.health import check_health, read_broker_info, read_render_browsers_or_none

        now, settings = utcnow(), get_settings()
        broker, browsers = read_broker_info(settings, now), read_render_browsers_or_none(settings)
        try:
            with session_scope(self.url) as session:
                report = check_health(session, now, broker, settings, browsers)
        except sa.exc.SQLAlchemyError:
            yield _gauge("herald_database_up", "1 when herald's database could be read at this scrape.", 0)
            return
        yield _gauge("herald_database_up", "1 when herald's database could be read at this scrape.", 1)
        yield _gauge("herald_healthy", "1 when `herald health --live` finds no problem.",
                     int(report.healthy))
        yield _gauge("herald_attention", "Attention items `herald health` lists (a channel "
                     "failing, schedules on a channel that is not configured).", len(report.attention))
        yield _gauge("herald_schedules", "Schedules (active or paused, not deleted).", report.schedules)
        yield _gauge("herald_schedules_due_not_claimed",
                     "Active schedules due for more than 2 minutes but not claimed by a tick.",
                     report.due_not_claimed)
        yield _gauge("herald_runs_stuck", "Runs queued past the requeue delay or with an expired lease.",
                     len(report.stuck_runs))
        yield _gauge("herald_last_tick_age_seconds",
                     "Seconds since the last tick started (absent: no tick has run yet).",
                     report.last_tick_ago_seconds)
        duration = report.last_tick_duration_ms
        yield _gauge("herald_last_tick_duration_seconds", "How long the last tick took.",
                     None if duration is None else duration / 1000)
        deliveries = GaugeMetricFamily("herald_deliveries_last_24h",
                                       "Deliveries created in the last 24 hours, by channel and status.",
                                       labels=["channel", "status"])
        for channel in report.failures:
            for status in ("sent", "failed", "pending"):
                deliveries.add_metric([channel.channel, status], getattr(channel, status))
        yield deliveries
        yield from _queue_gauges(report.broker)
        if report.render_browsers is not None:
            browsers = GaugeMetricFamily("herald_render_browsers", "Render processes whose Chromium "
                                         "started (ok) or did not (failed), as they last reported.",
                                         labels=["state"])
            failed = sum(not b.ok for b in report.render_browsers)
            browsers.add_metric(["ok"], len(report.render_browsers) - failed)
            browsers.add_metric(["failed"], failed)
            yield browsers


def _queue_gauges(broker) -> Iterator[GaugeMetricFamily]:
    """Messages per Dramatiq queue in Redis; nothing without a broker or when Redis is unreadable."""
    if broker is None:
        return
    yield _gauge("herald_broker_up", "1 when the broker's queues could be read at this scrape.",
                 int(broker.error is None))
    if broker.error is not None:
        return
    queues = GaugeMetricFamily("herald_queue_messages", "Messages in a Dramatiq queue: ready, "
                               "delayed (retries, backoff) or dead-lettered.", labels=["queue", "state"])
    for name, depth in broker.queues.items():
        for state in ("ready", "delayed", "dead"):
            queues.add_metric([name, state], getattr(depth, state))
    yield queues
    yield _gauge("herald_broker_processes", "Processes whose broker wrote a heartbeat lately "
                 "(workers and enqueuers).", broker.processes_seen)


def exporter_registry(url: str | None = None) -> CollectorRegistry:
    """The database gauges; in embedded mode (no REDIS_URL) this process's herald metrics too."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(url))
    if get_settings().redis_url is None:
        from services.health import process_metrics

        registry.register(process_metrics())
    return registry


def start_exporter(host: str, port: int, url: str | None = None) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on a background thread; stop it with `server.shutdown()`."""
    try:
        return start_http_server(port, host, exporter_registry(url))
    except OSError as exc:
        raise HeraldError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); "
                          f"free the port or choose another with --port.") from None


@reports_errors
def metrics_command(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve /metrics on.")] = 9300,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every address of "
                                            "this host, for a Prometheus elsewhere).")] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics read from herald's database until interrupted."""
    _server, thread = start_exporter(host, port)
    typer.echo(f"herald metrics at http://{host}:{port}/metrics")
    thread.join()
