"""Calling herald's actors from a Python shell, on either broker.

    >>> from jobs.actors import query_stage
    >>> from jobs.shell import drain, queue_run
    >>> run_id = queue_run(1)        # a manual run of schedule 1, queued as `herald send-now` makes it
    >>> query_stage.send(run_id)     # the query stage; it sends the render and deliver stages on
    >>> drain()                      # embedded only: run what is queued, here, until nothing is left

Importing `jobs` (which `jobs.actors` and this module do) builds the broker from the settings,
once per process. With REDIS_URL (redis:// or amqp://) a message goes to that broker and a
running `dramatiq jobs` takes it. Without it the broker is dramatiq's in-process StubBroker:
messages wait in memory until `drain()` runs them with a real dramatiq Worker in this process.
"""

from __future__ import annotations

import time

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.errors import QueueJoinTimeout
from dramatiq.middleware import Middleware

from jobs.outbox import create_manual_run
from models.db import session_scope, utcnow
from models.errors import HeraldError
from models.scheduling import get_schedule

WORKER_THREADS = 2
WORKER_STOP_TIMEOUT_MS = 30_000  # a render or send in progress may finish
_booted: set[int] = set()  # id() of the brokers whose process-boot hooks have run here


class CloseBrowsers(Middleware):
    """Each worker thread closes its Chromium as it stops, so none outlives the worker."""

    def before_worker_thread_shutdown(self, broker: dramatiq.Broker, thread: object) -> None:
        from renderers.pdf import printer

        printer().close()


def queue_run(schedule_id: int) -> int:
    """A manual run of the schedule, queued and not yet sent: give its id to `query_stage.send`."""
    with session_scope() as session:
        return create_manual_run(session, get_schedule(session, schedule_id), utcnow()).id


def in_process_worker(broker: dramatiq.Broker, threads: int = WORKER_THREADS) -> dramatiq.Worker:
    """A started dramatiq Worker in this process, booted as a `dramatiq jobs` process boots its
    own (TimeLimit's watchdog, ...), each thread closing its browser when it stops."""
    if id(broker) not in _booted:
        broker.add_middleware(CloseBrowsers())
        broker.emit_after("process_boot")
        _booted.add(id(broker))
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    return worker


def drain(timeout_s: float | None = None, threads: int = WORKER_THREADS) -> None:
    """Run the in-process broker's messages, and the ones they send on, in this process; return
    once every queue is empty. Raises the error of a message that failed for good meanwhile
    (its retries used up), and HeraldError when `timeout_s` passes first."""
    broker = dramatiq.get_broker()
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
