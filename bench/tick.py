"""Tick wall time for N due schedules among 10,000 to 1,000,000 (PostgreSQL), against a baseline.

The claim's cost should follow what is due, not what exists, and stay close to what the
database and Redis need for the same work. Each size gets a fresh database; the tick
claims, plans, creates runs, advances the schedules and enqueues real messages on Redis
(a private namespace, emptied between repetitions). The baseline, measured in the same
run on the same rows, is one `INSERT … SELECT` of the same runs plus a pipelined enqueue
of the same messages. Each step starts vacuumed and checkpointed. Medians of several
repetitions.

    python bench/tick.py [--sizes 10000,1000000] [--due 1000] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench._common import create_database, drop_database  # noqa: E402

REDIS_URL = os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOW = datetime(2026, 3, 2, 12, 0, 20, tzinfo=UTC)




def populate(url: str, total: int, due: int) -> None:
    """`due` schedules due now (hourly crons at 60 different minutes), the rest later."""
    from models.db import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO tenant (slug, name, timezone, active, created_at)
            SELECT 't' || i, 'Tenant ' || i, 'UTC', true, now() FROM generate_series(1, 100) i"""))
        conn.execute(sa.text("""
            INSERT INTO report (tenant_id, slug, title, definition, created_at)
            SELECT id, 'r', 'R', '{}'::json, now() FROM tenant"""))
        # Due: "M * * * *" whose latest fire (M past 11:00 or 12:00) is at or before NOW.
        conn.execute(sa.text("""
            INSERT INTO schedule (tenant_id, report_id, cron, timezone, formats, channels, params, active,
                                  next_run_at, misfire_grace_seconds, created_at)
            SELECT 1 + i % 100, 1 + i % 100, (i % 60) || ' * * * *', 'UTC', '["pdf"]', '["email"]', '{}', true,
                   CASE WHEN i % 60 = 0 THEN :now_hour ELSE :now_hour - interval '1 hour'
                        + (i % 60) * interval '1 minute' END,
                   3600, now()
            FROM generate_series(1, :due) i"""), {"due": due, "now_hour": NOW.replace(minute=0, second=0)})
        conn.execute(sa.text("""
            INSERT INTO schedule (tenant_id, report_id, cron, timezone, formats, channels, params, active,
                                  next_run_at, misfire_grace_seconds, created_at)
            SELECT 1 + i % 100, 1 + i % 100, '0 9 * * *', 'UTC', '["pdf"]', '["email"]', '{}', i % 10 <> 0,
                   :tomorrow + (i % 40000) * interval '1 minute', 3600, now()
            FROM generate_series(1, :rest) i"""), {"rest": total - due, "tomorrow": NOW + timedelta(days=1)})
        conn.execute(sa.text("ANALYZE"))


def reset(url: str) -> None:
    """Put the due schedules back as they were before the tick."""
    from models.db import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(sa.text("""
            UPDATE schedule s SET next_run_at = r.scheduled_for, last_fired_at = NULL
            FROM report_run r WHERE r.schedule_id = s.id"""))
        conn.execute(sa.text("DELETE FROM report_run"))


def settle(url: str) -> None:
    """Each timed step starts from the same state: the last reset's dead rows vacuumed and
    every dirty page written (a checkpoint falling inside a step added up to 3 s)."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def baseline(url: str) -> int:
    """The same runs in one INSERT … SELECT, and the same messages in a pipelined enqueue."""
    from jobs.dispatch import enqueue_runs
    from models.db import get_engine

    with get_engine(url).begin() as conn:
        created = conn.execute(sa.text("""
            INSERT INTO report_run (schedule_id, tenant_id, scheduled_for, manual, test, status,
                                    queued_at, attempts, created_at)
            SELECT id, tenant_id, next_run_at, false, false, 'queued', :now, 0, :now
            FROM schedule WHERE active AND next_run_at <= :now
            RETURNING id, tenant_id"""), {"now": NOW}).all()
    enqueue_runs([(r.id, r.tenant_id) for r in created])
    return len(created)


def empty_queues(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{namespace}*"))
    if keys:
        client.delete(*keys)


def bench_size(total: int, due: int, repeat: int, namespace: str,
               profile: bool) -> tuple[list[float], list[float]]:
    name, url = create_database()
    os.environ.update(DATABASE_URL=url, REDIS_URL=REDIS_URL, HERALD_REDIS_NAMESPACE=namespace)
    from models import migrate
    from models.settings import get_settings

    get_settings.cache_clear()
    try:
        migrate.upgrade(url)
        started = time.perf_counter()
        populate(url, total, due)
        print(f"  populated {total:,} schedules in {time.perf_counter() - started:.1f} s", flush=True)
        from jobs.dispatch import dispatch_runs
        from jobs.tick import tick

        times, base = [], []
        for _ in range(repeat):
            settle(url)
            if profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.enable()
            started = time.perf_counter()
            report = tick(NOW, dispatch_runs)
            times.append(time.perf_counter() - started)
            if profile:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            assert len(report.queued) == due, (len(report.queued), due)
            reset(url)
            empty_queues(namespace)
            settle(url)
            started = time.perf_counter()
            assert baseline(url) == due
            base.append(time.perf_counter() - started)
            reset(url)
            empty_queues(namespace)
        return times, base
    finally:
        from models.db import get_engine

        get_engine(url).dispose()
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each tick")
    args = parser.parse_args()
    namespace = f"herald-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(REDIS_URL=REDIS_URL, HERALD_REDIS_NAMESPACE=namespace)
    import jobs  # noqa: F401  (installs the Redis broker before the actors are used)

    medians = {}
    try:
        for total in (int(s) for s in args.sizes.split(",")):
            print(f"{args.due:,} due among {total:,} schedules", flush=True)
            times, base = bench_size(total, args.due, args.repeat, namespace, args.profile)
            medians[total] = statistics.median(times)
            floor = statistics.median(base)
            print(f"  tick (claim + plan + create runs + enqueue on Redis): median "
                  f"{medians[total] * 1000:.0f} ms (runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)\n"
                  f"  baseline (INSERT … SELECT + pipelined enqueue): median {floor * 1000:.0f} ms "
                  f"(runs: {', '.join(f'{t * 1000:.0f}' for t in base)} ms)\n"
                  f"  ratio tick / baseline: {medians[total] / floor:.2f} (goal <= 2); "
                  f"{args.due / medians[total]:,.0f} due schedules/s", flush=True)
    finally:
        empty_queues(namespace)
    sizes = sorted(medians)
    if len(sizes) >= 2:
        ratio = medians[sizes[-1]] / medians[sizes[0]]
        print(f"ratio {sizes[-1]:,} / {sizes[0]:,} schedules: {ratio:.2f} (goal <= 1.5)")
    print(f"goal <= 10 s for {args.due:,} due: {'met' if max(medians.values()) <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
