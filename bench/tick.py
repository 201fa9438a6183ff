"""Tick wall time for 1,000 due schedules among 10,000 and among 1,000,000 (PostgreSQL).

The claim's cost should follow what is due, not what exists. Each size gets a
fresh database; the tick claims, creates runs and enqueues real messages on
Redis (a private namespace, deleted afterwards). Median of several repetitions.

    python bench/tick.py [--sizes 10000,1000000] [--due 1000] [--repeat 5]
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


def bench_size(total: int, due: int, repeat: int, namespace: str) -> list[float]:
    name, url = create_database()
    os.environ.update(DATABASE_URL=url, REDIS_URL=REDIS_URL, HERALD_REDIS_NAMESPACE=namespace,
                      HERALD_TICK_BATCH_SIZE="500")
    from models import migrate
    from models.settings import get_settings

    get_settings.cache_clear()
    try:
        migrate.upgrade(url)
        started = time.perf_counter()
        populate(url, total, due)
        print(f"  populated {total:,} schedules in {time.perf_counter() - started:.1f} s", flush=True)
        from jobs.actors import dispatch_runs
        from jobs.tick import tick

        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            report = tick(NOW, dispatch_runs)
            times.append(time.perf_counter() - started)
            assert len(report.queued) == due, (len(report.queued), due)
            reset(url)
        return times
    finally:
        from models.db import get_engine

        get_engine(url).dispose()
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    namespace = f"herald-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update(REDIS_URL=REDIS_URL, HERALD_REDIS_NAMESPACE=namespace)
    import jobs  # noqa: F401  (installs the Redis broker before the actors are used)

    medians = {}
    try:
        for total in (int(s) for s in args.sizes.split(",")):
            print(f"{args.due:,} due among {total:,} schedules", flush=True)
            times = bench_size(total, args.due, args.repeat, namespace)
            medians[total] = statistics.median(times)
            print(f"  tick (claim + create runs + enqueue on Redis): median {medians[total] * 1000:.0f} ms "
                  f"(runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)", flush=True)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)
    sizes = sorted(medians)
    if len(sizes) >= 2:
        ratio = medians[sizes[-1]] / medians[sizes[0]]
        print(f"ratio {sizes[-1]:,} / {sizes[0]:,}: {ratio:.2f} (goal <= 1.5); "
              f"goal <= 1 s for {args.due:,} due: {'met' if max(medians.values()) <= 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
