"""Handing committed runs to the workers: each run's first message goes to its tenant's shard
queue, many at once (`dispatch_runs`, `enqueue_runs`); embedded (no REDIS_URL), the whole
pipeline runs in this process instead.

Sending one actor many messages at once costs a few Redis round trips per thousand messages.

`RedisBroker.enqueue` runs dramatiq's `dispatch` Lua script once per message, whose
"enqueue" command is two writes: the message into the hash `<ns>:<queue>.msgs` under a
fresh id, and that id onto the list `<ns>:<queue>`. Here the same two writes are made
for a whole chunk at once (one HSET and one RPUSH per queue, in one MULTI/EXEC, so a
worker never pops an id whose message is not there yet), on one pipeline round trip.
The broker's middleware still sees `before_enqueue` and `after_enqueue` for every
message, as with `broker.enqueue` (only middleware that implement them are called). With
dramatiq's stock JSON encoder, the bodies are written by orjson: the same JSON, ten times
faster. Other brokers (the stub broker of `herald demo` and the tests, RabbitMQ) get one
`broker.enqueue` per message.

This relies on dramatiq 2.x's Redis layout (pinned in pyproject.toml); the test suite runs
real workers on messages sent here, so a change of layout fails there.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import dramatiq.errors
import orjson
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware
from pika.exceptions import AMQPError
from redis.exceptions import RedisError

from jobs.broker import installed_broker
from jobs.shards import query_queue, shard_for
from models.errors import BrokerUnavailable
from models.reachability import broker_name, broker_problem, reason
from models.settings import get_settings

CHUNK = 2000
Call = tuple[str, tuple[Any, ...]]  # (queue name, the actor's arguments)
QueuedRun = tuple[int, int]          # (run id, tenant id) of a committed QUEUED run


def dispatch_runs(runs: Sequence[QueuedRun]) -> None:
    """Send each run's query stage to its tenant's shard queue. In the embedded mode (no
    REDIS_URL) there are no workers: the whole pipeline runs here, one run after the other."""
    if get_settings().redis_url is None:
        from pipeline.in_process import run_in_process

        for run_id, _tenant_id in runs:
            run_in_process(run_id)
        return
    enqueue_runs(runs)


def check_broker() -> None:
    """Raise BrokerUnavailable unless the broker answers now (`models.reachability`). Embedded
    (no REDIS_URL) there is none to ask."""
    url = get_settings().redis_url
    problem = broker_problem(url) if url else None
    if problem:
        raise BrokerUnavailable(problem.rstrip("."))


def enqueue_runs(runs: Sequence[QueuedRun]) -> None:
    """Send each run's query stage to its tenant's shard queue on the installed broker, whatever
    it is: `herald demo` runs Dramatiq workers on the in-process broker and enqueues this way."""
    if not runs:
        return
    broker = installed_broker()
    from jobs.actors import query_stage  # declared on `broker`

    shards = get_settings().shards
    queues = {}  # tenant id -> its shard's queue (rendezvous hashing costs a hash per shard)
    calls = []
    for run_id, tenant_id in runs:
        if tenant_id not in queues:
            queues[tenant_id] = query_queue(shard_for(tenant_id, shards))
        calls.append((queues[tenant_id], (run_id,)))
    try:
        send_many(broker, query_stage, calls)
    except (RedisError, OSError, dramatiq.errors.BrokerError, AMQPError) as exc:
        raise BrokerUnavailable(f"{broker_name(get_settings().redis_url or '')} does not answer "
                                f"({reason(exc)})") from None


def send_many(broker: dramatiq.Broker, actor: dramatiq.Actor, calls: Sequence[Call]) -> None:
    """Enqueue on `broker` one message to `actor` per call, each to its own queue, no delay."""
    if not isinstance(broker, RedisBroker):
        for queue_name, args in calls:
            broker.enqueue(actor.message(*args).copy(queue_name=queue_name))
        return
    for start in range(0, len(calls), CHUNK):
        _send_chunk(broker, actor.actor_name, calls[start:start + CHUNK])


def _send_chunk(broker: RedisBroker, actor_name: str, calls: Sequence[Call]) -> None:
    encoder = dramatiq.get_encoder()
    encode = orjson.dumps if type(encoder) is dramatiq.JSONEncoder else encoder.encode
    before, after = _hooks(broker, "before_enqueue"), _hooks(broker, "after_enqueue")
    timestamp = current_millis()
    by_queue: dict[str, tuple[dict[str, bytes], list[str]]] = defaultdict(lambda: ({}, []))
    messages = []
    for queue_name, args in calls:
        # A new message's id is new in Redis too: it serves as its `redis_message_id`.
        message_id = str(uuid.uuid4())
        data = {"queue_name": queue_name, "actor_name": actor_name, "args": args, "kwargs": {},
                "options": {"redis_message_id": message_id}, "message_id": message_id,
                "message_timestamp": timestamp}
        if before or after:
            message = dramatiq.Message(**data)
            messages.append(message)
            for hook in before:
                hook(broker, message, None)
        bodies, ids = by_queue[queue_name]
        bodies[message_id] = encode(data)
        ids.append(message_id)
    pipeline = broker.client.pipeline(transaction=True)
    for queue_name, (bodies, ids) in by_queue.items():
        queue = f"{broker.namespace}:{queue_name}"
        pipeline.hset(f"{queue}.msgs", mapping=bodies)
        pipeline.rpush(queue, *ids)
    pipeline.execute()
    for message in messages:
        for hook in after:
            hook(broker, message, None)


def _hooks(broker: dramatiq.Broker, name: str) -> list[Callable[..., None]]:
    """The middleware methods `broker.emit_before/after` would call that do something (the base
    class's are no-ops): at 100,000 messages, calling every no-op costs seconds."""
    return [getattr(m, name) for m in broker.middleware
            if getattr(type(m), name) is not getattr(Middleware, name)]
