"""An amqp:// REDIS_URL selects RabbitMQ; runs reach their shard queues there too."""

from __future__ import annotations

import os
import time
import uuid

import dramatiq
import pytest

from jobs.broker import build_broker
from models.settings import get_settings
from tests.conftest import service_missing

AMQP_URL = os.environ.get("HERALD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def rabbit_broker(monkeypatch: pytest.MonkeyPatch):
    shard = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", AMQP_URL)
    monkeypatch.setenv("HERALD_SHARDS", shard)
    get_settings.cache_clear()
    try:
        broker = build_broker(get_settings())
        broker.get_queue_message_counts(f"query.{shard}")
    except Exception as exc:  # pika raises several connection error types
        service_missing("RabbitMQ", exc)
    previous = dramatiq.get_broker()
    dramatiq.set_broker(broker)
    yield broker, shard
    dramatiq.set_broker(previous)
    for queue in (f"query.{shard}", f"query.{shard}.DQ", f"query.{shard}.XQ"):
        broker.channel.queue_delete(queue)
    broker.close()
    get_settings.cache_clear()


def test_runs_are_enqueued_on_rabbitmq(rabbit_broker) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from jobs.dispatch import dispatch_runs

    broker, shard = rabbit_broker
    assert isinstance(broker, RabbitmqBroker)
    dispatch_runs([(1, 7), (2, 8), (3, 9)])
    # RabbitMQ's queue counts trail publishes by a moment.
    deadline = time.monotonic() + 10
    while (ready := broker.get_queue_message_counts(f"query.{shard}")[0]) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready == 3
