"""Calling herald from a Python shell, on either broker: the same sends as the CLI and the
admin, and the actors themselves.

    >>> from jobs.shell import drain, send_now
    >>> run_id = send_now(1)         # a manual run of schedule 1, sent as `herald send-now` sends it
    >>> drain()                      # embedded only: run what is queued, here, until nothing is left
    >>> from jobs.actors import query_stage
    >>> query_stage.send(run_id)     # one actor by hand (a run already ended is left alone)

`send_now`, `send_test` and `resend_failed` are `services.runs`' own, as herald's operator (the
change audit says "cli"), with each run's first message sent to the installed broker. With
REDIS_URL (redis:// or amqp://) a message goes to that broker and a running `dramatiq jobs`
takes it. Without it the broker is dramatiq's in-process StubBroker: messages wait in memory
until `drain()` runs them with a real dramatiq Worker in this process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.errors import QueueJoinTimeout

from jobs.broker import installed_broker
from jobs.dispatch import enqueue_runs
from jobs.worker import WORKER_STOP_TIMEOUT_MS, WORKER_THREADS, in_process_worker
from models.db import session_scope, utcnow
from models.errors import HeraldError
from services import runs
from services.access import OPERATOR


def send_now(schedule_id: int) -> int:
    """A manual run of the schedule, its query stage sent to the broker; returns the run's id."""
    with session_scope() as session:
        return runs.send_now(session, OPERATOR, schedule_id, now=utcnow(), dispatch=enqueue_runs).run_id


def send_test(schedule_id: int, emails: Sequence[str] = (), chats: Sequence[str] = ()) -> int:
    """A test run of the schedule to these addresses and chats only; returns the run's id."""
    with session_scope() as session:
        return runs.send_test(session, OPERATOR, schedule_id, now=utcnow(), emails=emails,
                              chats=chats, dispatch=enqueue_runs).run_id


def resend_failed(run_id: int) -> list[tuple[str, str]]:
    """The run's failed deliveries sent again; returns (channel, recipient) of each."""
    with session_scope() as session:
        return list(runs.resend_failed(session, OPERATOR, run_id, now=utcnow(),
                                       dispatch=enqueue_runs).resent)


def drain(timeout_s: float | None = None, threads: int = WORKER_THREADS) -> None:
    """Run the in-process broker's messages, and the ones they send on, in this process; return
    once every queue is empty. Raises the error of a message that failed for good meanwhile
    (its retries used up), and HeraldError when `timeout_s` passes first."""
    broker = installed_broker()
    if not isinstance(broker, StubBroker):
        raise HeraldError("drain() runs the in-process broker's messages, but REDIS_URL is set: "
                          "a running `dramatiq jobs` takes them; start one if none is running.")
    dead_before = {queue: len(messages) for queue, messages in broker.dead_letters_by_queue.items()}
    worker = in_process_worker(broker, threads)
    try:
        _wait_until_empty(broker, timeout_s)
    finally:
        worker.stop(timeout=WORKER_STOP_TIMEOUT_MS)
    failed = [message for queue, messages in broker.dead_letters_by_queue.items()
              for message in messages[dead_before.get(queue, 0):]]
    if failed:
        raise failed[0]._exception or HeraldError(
            f"The {failed[0].actor_name} message for {failed[0].args} failed; see the log above.")


def _wait_until_empty(broker: StubBroker, timeout_s: float | None) -> None:
    """Join every queue until a pass finds none holding a message (a message being processed
    may send another to a queue already joined)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while any(queue.unfinished_tasks for queue in broker.queues.values()):
        for name in sorted(broker.queues):
            if name in broker.delay_queues:
                continue  # joined with its queue
            remaining_ms = None if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
            try:
                broker.join(name, timeout=remaining_ms, fail_fast=False)
            except QueueJoinTimeout:
                waiting = sum(broker.queues[q].unfinished_tasks for q in (name, dq_name(name)))
                raise HeraldError(f"{waiting} messages on {name} were not done after {timeout_s} s "
                                  f"(retries wait their backoff); call drain() again to wait "
                                  f"longer.") from None
