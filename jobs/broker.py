"""The one place the Dramatiq broker is built: Redis, RabbitMQ, or in-process.

Imported by `jobs/__init__.py` before any actor module, as Dramatiq requires.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from periodiq import PeriodiqMiddleware

from jobs.shards import query_queue
from models.settings import Settings

# A dead worker's messages come back after ~heartbeat + maintenance (measured
# 18 s with these values, 573 s with Dramatiq's defaults; ENVIRONMENT.md).
REDIS_HEARTBEAT_TIMEOUT_MS = 10_000
REDIS_MAINTENANCE_CHANCE = 100_000  # per million commands
PERIODIQ_SKIP_DELAY_S = 30


def build_broker(settings: Settings) -> dramatiq.Broker:
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
    broker.add_middleware(PeriodiqMiddleware(skip_delay=PERIODIQ_SKIP_DELAY_S))
    for shard in settings.shards:
        broker.declare_queue(query_queue(shard))
    return broker


def install_broker(settings: Settings, extra: list[Middleware] | None = None) -> dramatiq.Broker:
    broker = build_broker(settings)
    for middleware in extra or []:
        broker.add_middleware(middleware)
    dramatiq.set_broker(broker)
    return broker
