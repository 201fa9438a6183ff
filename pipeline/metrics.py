"""herald's own Prometheus metrics: run and delivery outcomes, stage durations, artifact bytes.

Outcomes are counted from the committed state changes (`pipeline.lifecycle.on_committed_change`),
so a redelivered message, a retry or a second worker never counts an outcome twice; a
resent run counts again when it reaches its new end state.

Where they are exposed:
- Workers (`dramatiq jobs` on Redis or RabbitMQ): `jobs.broker` points prometheus_client's
  multiprocess directory at dramatiq's (`dramatiq_prom_db`) before this module is imported,
  so these values are written to the files dramatiq's Prometheus middleware aggregates
  and appear beside `dramatiq_*` on its exposition port (9191). Counters and histograms
  sum across processes; herald defines no gauges here (those need a multiprocess mode).
- Embedded mode (no broker): the `herald metrics` exporter (`herald.cli.metrics`) serves
  them from `REGISTRY`, next to the gauges it reads from the database; with a broker it
  serves the gauges only, the workers' port has the rest.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from models.runs import FINAL_RUN_STATES, DeliveryStatus
from pipeline.lifecycle import StateChange, on_committed_change

REGISTRY = CollectorRegistry(auto_describe=True)  # herald's metrics only; not the default registry

# Seconds: a query or render of a report takes from tens of milliseconds to minutes.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# periodiq drops a tick more than 30 s late, so the lag of a tick that ran stays under it.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60)

RUNS = Counter("herald_runs", "Runs that reached a final state, by that state "
               "(invalid: a schedule flagged as unplannable, no run made).",
               ["status"], registry=REGISTRY)
DELIVERIES = Counter("herald_deliveries", "Deliveries that reached a final state (sent, failed).",
                     ["channel", "status"], registry=REGISTRY)
QUERY_SECONDS = Histogram("herald_query_seconds", "Time to run a report's section queries.",
                          buckets=STAGE_BUCKETS, registry=REGISTRY)
RENDER_SECONDS = Histogram("herald_render_seconds", "Time to render one document.", ["format"],
                           buckets=STAGE_BUCKETS, registry=REGISTRY)
SEND_SECONDS = Histogram("herald_send_seconds", "Time of one send attempt to one recipient.",
                         ["channel"], buckets=SEND_BUCKETS, registry=REGISTRY)
TICK_LAG_SECONDS = Histogram("herald_tick_lag_seconds",
                             "How late the tick ran after the start of the minute it serves.",
                             buckets=LAG_BUCKETS, registry=REGISTRY)
TICK_SECONDS = Histogram("herald_tick_seconds", "Time one tick took.", buckets=STAGE_BUCKETS,
                         registry=REGISTRY)
SHARED_RENDERS = Counter("herald_shared_renders", "Runs whose documents were another run's render "
                         "(same documents, due in the same minute), not rendered again.",
                         registry=REGISTRY)
ARTIFACT_BYTES = Counter("herald_artifact_bytes", "Bytes of artifacts stored, by kind "
                         "(pdf, csv, query-result).", ["kind"], registry=REGISTRY)

DELIVERY_OUTCOMES = frozenset({DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value})
RUN_OUTCOMES = frozenset(s.value for s in FINAL_RUN_STATES)


def count_outcome(change: StateChange) -> None:
    """Count a committed run or delivery outcome; moves between unfinished states count nothing."""
    if change.kind == "run" and change.new in RUN_OUTCOMES:
        RUNS.labels(change.new).inc()
    elif change.kind == "delivery" and change.new in DELIVERY_OUTCOMES:
        DELIVERIES.labels(change.channel, change.new).inc()


def observe_tick(now: datetime, seconds: float, flagged: int) -> None:
    """A tick that served the minute `now` falls in took `seconds`; it flagged `flagged` schedules."""
    TICK_LAG_SECONDS.observe((now - now.replace(second=0, microsecond=0)).total_seconds())
    TICK_SECONDS.observe(seconds)
    if flagged:
        RUNS.labels("invalid").inc(flagged)


on_committed_change(count_outcome)
