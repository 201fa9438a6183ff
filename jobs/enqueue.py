"""Sending one actor many messages at once: a few Redis round trips per thousand messages.

`RedisBroker.enqueue` runs dramatiq's `dispatch` Lua script once per message, whose
"enqueue" command is two writes: the message into the hash `<ns>:<queue>.msgs` under a
fresh id, and that id onto the list `<ns>:<queue>`. Here the same two writes are made
for a whole chunk at once (one HSET and one RPUSH per queue, in one MULTI/EXEC, so a
worker never pops an id whose message is not there yet), on one pipeline round trip.
The broker's middleware still sees `before_enqueue` and `after_enqueue` for every
message, as with `broker.enqueue`. Other brokers (the stub broker of `herald demo` and
the tests, RabbitMQ) get one `broker.enqueue` per message.

This relies on dramatiq 2.x's Redis layout (pinned in pyproject.toml); the test suite runs
real workers on messages sent here, so a change of layout fails there.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

CHUNK = 2000
Call = tuple[str, tuple[Any, ...]]  # (queue name, the actor's arguments)


def send_many(broker: dramatiq.Broker, actor: dramatiq.Actor, calls: Sequence[Call]) -> None:
    """Enqueue on `broker` one message to `actor` per call, each to its own queue, no delay."""
    if not isinstance(broker, RedisBroker):
        for queue_name, args in calls:
            broker.enqueue(actor.message(*args).copy(queue_name=queue_name))
        return
    for start in range(0, len(calls), CHUNK):
        _send_chunk(broker, actor.actor_name, calls[start:start + CHUNK])


def _send_chunk(broker: RedisBroker, actor_name: str, calls: Sequence[Call]) -> None:
    by_queue: dict[str, tuple[dict[str, bytes], list[str]]] = defaultdict(lambda: ({}, []))
    messages = []
    for queue_name, args in calls:
        redis_id = str(uuid.uuid4())
        message = dramatiq.Message(queue_name=queue_name, actor_name=actor_name, args=args, kwargs={},
                                   options={"redis_message_id": redis_id})
        broker.emit_before("enqueue", message, None)
        bodies, ids = by_queue[queue_name]
        bodies[redis_id] = message.encode()
        ids.append(redis_id)
        messages.append(message)
    pipeline = broker.client.pipeline(transaction=True)
    for queue_name, (bodies, ids) in by_queue.items():
        queue = f"{broker.namespace}:{queue_name}"
        pipeline.hset(f"{queue}.msgs", mapping=bodies)
        pipeline.rpush(queue, *ids)
    pipeline.execute()
    for message in messages:
        broker.emit_after("enqueue", message, None)
