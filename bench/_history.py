"""Part (3) of `bench/admin.py`: the History page's data over a million runs.

One PostgreSQL database holds 1,000,000 runs (acme 800,000: 1,000 daily schedules over 800
days; beta 200,000) and about 3,000,000 deliveries (three per run that got as far as sending).
The page's data is one page of runs (`services.history.runs_page`, with the deliveries counted per
run) plus the chart (`services.history.outcomes_per_day`), timed against the raw indexed SQL they
wrap, on one plain psycopg connection. Goal: at most 300 ms and at most 2x the raw SQL, for the
page as it opens (the last 30 days). Other filters are timed for information.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
import sqlalchemy as sa

from bench._common import create_database, drop_database

ZONE = "Europe/Berlin"

# What one page of the History page reads, as plain SQL: the runs (newest first, one more than
# the page to know whether there is a next one), then their deliveries counted by status.
PAGE_SQL = """
SELECT r.id, r.schedule_id, rep.title, r.scheduled_for, r.status, r.manual, r.test, r.attempts, r.error
FROM report_run r JOIN schedule s ON s.id = r.schedule_id JOIN report rep ON rep.id = s.report_id
WHERE r.tenant_id = %(tenant)s AND r.scheduled_for >= %(start)s AND r.scheduled_for < %(end)s
{extra}
ORDER BY r.scheduled_for DESC, r.id DESC LIMIT 51
"""
COUNTS_SQL = """
SELECT run_id, status, count(*) FROM delivery WHERE run_id = ANY(%(ids)s) GROUP BY run_id, status
"""
# The chart: the same filtered runs counted per local day and status.
CHART_SQL = """
SELECT (r.scheduled_for AT TIME ZONE %(zone)s)::date AS day, r.status, count(*)
FROM report_run r
WHERE r.tenant_id = %(tenant)s AND r.scheduled_for >= %(start)s AND r.scheduled_for < %(end)s
{extra}
GROUP BY day, r.status ORDER BY day, r.status
"""


class Case(NamedTuple):
    """One way the page is opened: its filters, and the same filter as raw SQL."""

    name: str
    filters: dict[str, Any]
    extra_sql: str
    params: dict[str, Any]


def cases(now: datetime) -> list[Case]:
    month = {"start": now - timedelta(days=30), "end": now + timedelta(days=1)}
    return [
        Case("as it opens: last 30 days", month, "", {}),
        Case("failed only, last 30 days", {**month, "status": "failed"},
             "AND r.status = %(status)s", {"status": "failed"}),
        Case("one schedule, last 30 days", {**month, "schedule_id": 7},
             "AND r.schedule_id = %(schedule)s", {"schedule": 7}),
        Case("recipient 'boss-7@', last 30 days", {**month, "recipient": "boss-7@"},
             "AND EXISTS (SELECT 1 FROM delivery d WHERE d.run_id = r.id "
             "AND lower(d.recipient) LIKE %(like)s)", {"like": "%boss-7@%"}),
        Case("all time (800 days)", {"start": now - timedelta(days=900), "end": now + timedelta(days=1)},
             "", {}),
    ]


def populate_history(url: str, now: datetime, days: int = 800) -> dict[str, int]:
    """acme (1,000 daily schedules) and beta (250), one run per schedule and day for `days`
    days up to `now`, and three deliveries per run that was not missed."""
    from models.db import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO tenant (slug, name, timezone, active, created_at)
            VALUES ('acme', 'Acme', :zone, true, now()), ('beta', 'Beta', 'UTC', true, now())"""),
                     {"zone": ZONE})
        conn.execute(sa.text("""
            INSERT INTO report (tenant_id, slug, title, definition, created_at)
            SELECT t, 'report-' || i, 'Report ' || i, '{}'::json, now()
            FROM generate_series(1, 2) t, generate_series(1, 20) i"""))
        conn.execute(sa.text("""
            INSERT INTO schedule (tenant_id, report_id, cron, cadence, at_time, timezone, formats,
                                  channels, subject, params, active, next_run_at, last_status,
                                  misfire_grace_seconds, created_by, created_at)
            SELECT t, (t - 1) * 20 + 1 + i % 20, (i % 60) || ' 7 * * *', 'daily', '07:00', :zone,
                   '["pdf"]', '["email", "telegram"]', 'Report {date}', '{}', true,
                   :now + interval '1 day', 'success', 3600, 'ana@acme.example', now()
            FROM generate_series(1, 2) t, generate_series(1, CASE WHEN t = 1 THEN 1000 ELSE 250 END) i
            ORDER BY t, i"""), {"zone": ZONE, "now": now})
        # Oldest day first, so ids grow with the slot as they do in production.
        conn.execute(sa.text("""
            INSERT INTO report_run (schedule_id, tenant_id, scheduled_for, manual, test, status,
                                    queued_at, started_at, finished_at, attempts, error, created_at)
            SELECT s.id, s.tenant_id, slot, s.id % 97 = 0, false, outcome.status,
                   slot, slot + interval '2 s', slot + interval '9 s', 1,
                   CASE WHEN outcome.status = 'failed' THEN 'every delivery failed' END, slot
            FROM generate_series(:days - 1, 0, -1) d
            CROSS JOIN schedule s
            CROSS JOIN LATERAL (SELECT date_trunc('day', CAST(:now AS timestamptz)) - d * interval '1 day'
                                       + (s.id % 60) * interval '1 minute' AS slot) at
            CROSS JOIN LATERAL (SELECT CASE (s.id * 7 + d * 13) % 50
                                       WHEN 0 THEN 'failed' WHEN 1 THEN 'failed'
                                       WHEN 2 THEN 'partial' WHEN 3 THEN 'partial'
                                       WHEN 4 THEN 'missed' ELSE 'success' END AS status) outcome
            ORDER BY d DESC, s.id"""), {"days": days, "now": now})
        conn.execute(sa.text("""
            INSERT INTO delivery (run_id, channel, recipient, status, attempts, parts, error,
                                  created_at, started_at, finished_at, duration_ms,
                                  provider_message_id)
            SELECT r.id, k.channel, k.who || '-' || r.schedule_id || CASE WHEN k.channel = 'email'
                       THEN '@acme.example' ELSE '' END,
                   CASE WHEN r.status = 'failed' OR (r.status = 'partial' AND k.n = 2)
                        THEN 'failed' ELSE 'sent' END,
                   1, '{}',
                   CASE WHEN r.status = 'failed' OR (r.status = 'partial' AND k.n = 2)
                        THEN '550 5.1.1 <' || k.who || '-' || r.schedule_id || '@acme.example>: mailbox unavailable' END,
                   r.started_at, r.started_at, r.finished_at, 420,
                   CASE WHEN r.status = 'success' THEN '<' || r.id || '.' || k.n || '@herald>' END
            FROM report_run r
            CROSS JOIN (VALUES (1, 'email', 'team'), (2, 'email', 'boss'), (3, 'telegram', '1000'))
                 AS k(n, channel, who)
            WHERE r.status <> 'missed'
            ORDER BY r.id, k.n"""))
        conn.execute(sa.text("""
            INSERT INTO app_user (email, password_hash, active, failed_logins, created_at)
            VALUES ('ana@acme.example', 'x', true, 0, now())"""))
        conn.execute(sa.text("INSERT INTO membership (user_id, tenant_id, role) VALUES (1, 1, 'viewer')"))
        runs = conn.execute(sa.text("SELECT count(*) FROM report_run")).scalar_one()
        deliveries = conn.execute(sa.text("SELECT count(*) FROM delivery")).scalar_one()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as raw:
        raw.execute("VACUUM ANALYZE")
    return {"runs": runs, "deliveries": deliveries}


def bench_history(now: datetime, repeat: int,
                  alternate: Callable[..., tuple[list[float], list[float]]],
                  ms: Callable[[list[float]], float]) -> list[dict[str, Any]] | None:
    """Populate a throwaway database, then time each case: herald's page data vs raw SQL."""
    try:
        from services.history import outcomes_per_day, runs_page
        from services.history_records import RunFilters
    except ImportError as exc:
        print(f"(3) skipped: the history functions are not there ({exc}).")
        return None
    from sqlmodel import Session

    from models import migrate
    from models.db import get_engine
    from services.access import load_viewer

    name, url = create_database()
    try:
        migrate.upgrade(url)
        started = time.perf_counter()
        counts = populate_history(url, now)
        print(f"(3) {counts['runs']:,} runs and {counts['deliveries']:,} deliveries "
              f"(the listed tenant has 80% of them); populated in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        raw_conn = psycopg.connect(url.replace("+psycopg", ""))
        engine = get_engine(url)
        results = []
        for case in cases(now):
            params = {"tenant": 1, "zone": ZONE, **case.params,
                      "start": case.filters["start"], "end": case.filters["end"]}

            def raw(case: Case = case, params: dict[str, Any] = params) -> int:
                with raw_conn.cursor() as cur:
                    rows = cur.execute(PAGE_SQL.format(extra=case.extra_sql), params).fetchall()
                    cur.execute(COUNTS_SQL, {"ids": [r[0] for r in rows[:50]]}).fetchall()
                    cur.execute(CHART_SQL.format(extra=case.extra_sql), params).fetchall()
                raw_conn.rollback()
                return min(len(rows), 50)

            def herald(case: Case = case) -> int:
                with Session(engine) as session:
                    viewer = load_viewer(session, 1)
                    filters = RunFilters(**case.filters)
                    page = runs_page(session, viewer, 1, filters)
                    outcomes_per_day(session, viewer, 1, filters)
                    return len(page.rows)

            shown, expected = herald(), raw()
            assert shown == expected, (case.name, shown, expected)
            raw_times, herald_times = alternate(raw, herald, repeat)
            results.append({"case": case.name, "rows": shown, "raw": ms(raw_times),
                            "herald": ms(herald_times)})
        plan = explain(raw_conn, cases(now)[0], now)
        results.append({"plan": plan})
        raw_conn.close()
        engine.dispose()
    finally:
        drop_database(name)
    return results


def explain(conn: psycopg.Connection, case: Case, now: datetime) -> str:
    """The plan of the page query as it opens: it must walk the (tenant, slot, id) index
    backwards and stop after a page, not sort the tenant's runs."""
    params = {"tenant": 1, "start": case.filters["start"], "end": case.filters["end"]}
    with conn.cursor() as cur:
        lines = [r[0] for r in cur.execute("EXPLAIN " + PAGE_SQL.format(extra=""), params)]
    conn.rollback()
    plan = "\n".join(lines)
    assert "ix_report_run_tenant_slot" in plan and "Sort" not in plan.split("Limit", 1)[1], plan
    return plan


def report(results: list[dict[str, Any]], repeat: int) -> None:
    print(f"  medians of {repeat}; herald = runs_page (a page of 50) + outcomes_per_day")
    for row in results:
        if "plan" in row:
            continue
        ratio = row["herald"] / row["raw"]
        print(f"  {row['case']:36} raw {row['raw']:7.1f} ms   herald {row['herald']:7.1f} ms   "
              f"{ratio:4.2f}x   ({row['rows']} rows)")
    first = results[0]
    ratio = first["herald"] / first["raw"]
    print(f"  as it opens: herald / raw = {ratio:.2f} (goal <= 2); herald {first['herald']:.0f} ms "
          f"(goal <= 300): {'met' if ratio <= 2 and first['herald'] <= 300 else 'NOT met'}")
    print("  page query plan (as it opens):")
    for line in results[-1]["plan"].splitlines():
        print(f"    {line}")
