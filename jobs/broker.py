"""The one place the Dramatiq broker is built: Redis, RabbitMQ, or in-process.

Installed before any actor module is imported, as Dramatiq requires: by a worker's boot
(`jobs.worker.boot`), or by the first message a process sends (`installed_broker`).

A worker's broker (Redis, RabbitMQ) gets dramatiq's Prometheus middleware. How dramatiq 2
sets it up: every worker process writes prometheus_client's multiprocess files into one
directory, `dramatiq_prom_db` (default `$TMPDIR/dramatiq-prometheus`; created when the
middleware module is imported, never emptied by dramatiq, so give each deployment its
own and clear it when the service starts); the middleware points PROMETHEUS_MULTIPROC_DIR
there only at process boot, after this package is imported. The `dramatiq` command then
forks one extra process that serves every worker's figures, summed, on
HERALD_METRICS_HOST:HERALD_METRICS_PORT (127.0.0.1:9191; `jobs.exposition`, with /health
beside /metrics). `periodiq` serves nothing.
prometheus_client picks its storage when it is first imported, so the directory is set
here, before `pipeline.metrics` is: herald's counters and histograms then land in the same
files and the same exposition.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from periodiq import PeriodiqMiddleware

from jobs.shards import query_queue
from models.settings import Settings, get_settings

# A dead worker's messages come back after ~heartbeat + maintenance (measured
# 18 s with these values, 573 s with Dramatiq's defaults; ENVIRONMENT.md).
REDIS_HEARTBEAT_TIMEOUT_MS = 10_000
REDIS_MAINTENANCE_CHANCE = 100_000  # per million commands
PERIODIQ_SKIP_DELAY_S = 30


def build_broker(settings: Settings, worker: bool = False) -> dramatiq.Broker:
    """The broker REDIS_URL names (an amqp:// URL: RabbitMQ; none: in-process), with the query
    shards' queues declared; a `worker`'s real broker also gets the Prometheus middleware."""
    url = settings.redis_url
    if url is None:
        broker: dramatiq.Broker = StubBroker()
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, namespace=settings.redis_namespace,
                             heartbeat_timeout=REDIS_HEARTBEAT_TIMEOUT_MS,
                             maintenance_chance=REDIS_MAINTENANCE_CHANCE)
    if url is not None and worker:
        broker.add_middleware(worker_metrics())
    broker.add_middleware(PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY_S))
    for shard in settings.shards:
        broker.declare_queue(query_queue(shard))
    return broker


def worker_metrics() -> Middleware:
    """dramatiq's Prometheus middleware, with herald's metrics sent to the same directory and
    herald's server (/metrics and /health, `jobs.exposition`) forked instead of dramatiq's.

    Only worker processes boot it (`after_process_boot`); periodiq carries it unused.
    """
    from dramatiq.middleware.prometheus import DB_PATH

    from jobs.exposition import WorkerMetrics

    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
        os.environ[name] = DB_PATH  # as the middleware sets them, only earlier
    return WorkerMetrics()


def install_broker(settings: Settings, worker: bool = False) -> dramatiq.Broker:
    """Build the broker and make it Dramatiq's, for the actors declared from now on."""
    broker = build_broker(settings, worker)
    dramatiq.set_broker(broker)
    return broker


def installed_broker() -> dramatiq.Broker:
    """Dramatiq's broker: the one a worker, the demo or a test installed, else herald's from the
    settings, installed now (a process that only sends builds it when it first sends)."""
    if dramatiq.broker.global_broker is None:
        return install_broker(get_settings())
    return dramatiq.get_broker()
