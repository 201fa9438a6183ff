"""Dramatiq actors: thin wrappers that take ids, call a step of `pipeline`, pass ids on.

Every actor states its limits; Dramatiq's defaults (20 retries over a week) are wrong for
anything a person receives. Dramatiq declares an actor on the broker installed when its module
is imported, so this module installs herald's broker first if none is (`installed_broker`).
Actor names are part of every queued message: they stay as they are.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from periodiq import cron

from jobs.broker import installed_broker
from jobs.dispatch import dispatch_runs
from jobs.shards import query_queue
from jobs.tick import tick
from models.db import utcnow
from models.errors import RenderError
from models.settings import get_settings
from pipeline.carried import Carried
from pipeline.deliver import deliver_due
from pipeline.in_process import run_stages
from pipeline.render import render_run

log = logging.getLogger("herald.actors")
MINUTE_MS = 60_000
broker = installed_broker()

# A tick that has used this share of its time limit hands the rest to a continuation.
TICK_BUDGET_SHARE = 0.5


@dramatiq.actor(queue_name="tick", periodic=cron("* * * * *"), max_retries=0,
                time_limit=50_000)
def tick_actor() -> None:
    """Every minute (periodiq): claim due schedules, recover stale runs. Safe to run twice, and
    to run alongside its own continuation: each claims what the others have not locked."""
    budget_s = tick_actor.options["time_limit"] / 1000 * TICK_BUDGET_SHARE
    tick(utcnow(), dispatch_runs, budget_s=budget_s, hand_over=tick_actor.send,
         backlog=query_backlog(dramatiq.get_broker()))


def query_backlog(broker: dramatiq.Broker) -> bool:
    """Whether a query queue (or its delay queue: retries waiting their backoff) holds messages.
    Unknown for RabbitMQ: False, so QUEUED runs are re-enqueued after the usual delay."""
    names = [query_queue(shard) for shard in get_settings().shards]
    if isinstance(broker, RedisBroker):
        pipeline = broker.client.pipeline(transaction=False)
        for name in names:
            pipeline.llen(f"{broker.namespace}:{name}")
            pipeline.llen(f"{broker.namespace}:{dq_name(name)}")
        return any(pipeline.execute())
    if isinstance(broker, StubBroker):
        return any(broker.queues[q].qsize() for name in names for q in (name, dq_name(name))
                   if q in broker.queues)
    return False


# A run's message: query, render and deliver in one thread. Every worker takes every queue, so
# a message per stage would only come back to this same pool, at the cost of a Redis round trip,
# a transaction and a thread hand-over each. The query and the render have timeouts of their
# own (HERALD_QUERY_TIMEOUT_SECONDS, HERALD_RENDER_TIMEOUT_SECONDS): a message's limit is the
# delivery's, which a run to thousands of recipients needs.
RUN_LIMIT_MS = 30 * MINUTE_MS
RENDER_BACKOFF_MS = 5_000


@dramatiq.actor(queue_name=query_queue(get_settings().shards[0]), max_retries=3,
                min_backoff=5_000, max_backoff=60_000,
                time_limit=RUN_LIMIT_MS)
def query_stage(run_id: int) -> None:
    """Take the run, query the tenant's database, render and deliver (routed per message to
    the tenant's shard). A failed render is retried as a render stage's message of its own,
    so its retries do not query again."""
    try:
        run_stages(run_id, deliver)
    except RenderError:
        render_stage.send_with_options(args=(run_id,), delay=RENDER_BACKOFF_MS)


@dramatiq.actor(queue_name="render", max_retries=2, min_backoff=RENDER_BACKOFF_MS, max_backoff=60_000,
                time_limit=RUN_LIMIT_MS)
def render_stage(run_id: int) -> None:
    """Render the run's documents (a retry), then deliver them."""
    if render_run(run_id):
        deliver(run_id)


@dramatiq.actor(queue_name="deliver", max_retries=5, min_backoff=10_000, max_backoff=5 * MINUTE_MS,
                time_limit=RUN_LIMIT_MS)
def deliver_stage(run_id: int) -> None:
    """Deliver the run (a retry waiting its backoff, or a resend)."""
    deliver(run_id)


def deliver(run_id: int, carried: Carried | None = None) -> None:
    """Send to every recipient that may be sent to now; the rest (retries waiting their backoff)
    wait in the broker, as a deliver stage's message sent with a delay, not in this thread. The
    pass that finds nobody left ends the run."""
    retry_at = deliver_due(run_id, carried)
    if retry_at is not None:
        delay_ms = max(int((retry_at - utcnow()).total_seconds() * 1000), 0)
        deliver_stage.send_with_options(args=(run_id,), delay=delay_ms)
