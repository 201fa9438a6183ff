"""The admin's data functions against what they wrap.

(1) Schedules page: `services.schedule_table.list_schedules` over 10,000 schedules of one tenant
    (PostgreSQL; their "Last 10" strips filled from 600,000 runs as herald keeps them), all of
    them and the admin's first page (`schedule_page`), each against the raw SQL it runs, on
    one plain psycopg connection. Goal: at most 300 ms, and at most 2x the raw SQL.
(2) Report preview: `services.documents.preview_report` of the demo report (PDF, page images,
    the CSV's first 20 rows) on the demo's SQLite data, against `herald export --format pdf`
    of the same report (`services.documents.export_report`, in-process). Goal: at most 1.3x.
(3) History page: one page of runs plus the outcomes chart over 1,000,000 runs and ~3,000,000
    deliveries (PostgreSQL), against the raw indexed SQL they wrap (bench/_history.py).
    Goal: at most 300 ms and at most 2x the raw SQL.

Each pair runs alternately, one after the other, after a warm-up; medians.

    python bench/admin.py [--schedules 10000] [--repeat 5] [--renders 21] [--only schedules|preview|history]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench._common import create_database, drop_database  # noqa: E402
from bench._history import bench_history, report  # noqa: E402

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def alternate(first: Callable[[], object], second: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """Run `first` and `second` one after the other `repeat` times (after one warm-up each)."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for function, into in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            function()
            into.append(time.perf_counter() - started)
    return times


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


# (1) The schedules page.

# What `list_schedules` reads for one tenant: its live schedules by id, each with its "Last 10"
# strip (`schedule.recent_runs`), the columns the table shows, JSON read as text as herald
# reads it; the tenant's reports; the schedules' recipients; the tenant's fallback recipients.
SCHEDULES_SQL = """
SELECT s.id, s.report_id, s.cron, s.timezone, s.active, s.next_run_at, s.last_status,
       s.last_error, s.last_fired_at, CAST(s.formats AS TEXT), CAST(s.channels AS TEXT),
       s.subject, s.paused_reason, s.paused_at, CAST(s.recent_runs AS TEXT)
FROM schedule s
WHERE s.tenant_id = %(tenant)s AND s.deleted_at IS NULL
ORDER BY s.id
"""
REPORTS_SQL = "SELECT id, slug, title FROM report WHERE tenant_id = %(tenant)s"
RECIPIENTS_SQL = """
SELECT sr.schedule_id, sr.channel, sr.address
FROM schedule_recipient sr JOIN schedule s ON s.id = sr.schedule_id
WHERE s.tenant_id = %(tenant)s AND s.deleted_at IS NULL
ORDER BY sr.id
"""
FALLBACK_SQL = "SELECT channel, address FROM tenant_recipient WHERE tenant_id = %(tenant)s ORDER BY id"
# One page of the table (`schedule_page`, the admin's): how many there are, then the page's
# schedules and their recipients.
COUNT_SQL = "SELECT count(*) FROM schedule WHERE tenant_id = %(tenant)s AND deleted_at IS NULL"
PAGE_SQL = SCHEDULES_SQL + "LIMIT %(limit)s OFFSET %(offset)s"
PAGE_RECIPIENTS_SQL = """
SELECT schedule_id, channel, address FROM schedule_recipient
WHERE schedule_id = ANY(%(ids)s) ORDER BY id
"""
RUNS_PER_SCHEDULE = 30


def populate_schedules(url: str, total: int) -> None:
    """Tenant 1 with 20 reports, `total` schedules (a tenth paused, one in fifty deleted), one
    or two recipients and `RUNS_PER_SCHEDULE` daily runs each; tenant 2 with as many again,
    which the page must not read."""
    from models.db import get_engine
    from models.schedules import fill_recent_runs

    with get_engine(url).begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO tenant (slug, name, timezone, active, created_at)
            VALUES ('acme', 'Acme', 'Europe/Moscow', true, now()), ('beta', 'Beta', 'UTC', true, now())"""))
        conn.execute(sa.text("""
            INSERT INTO report (tenant_id, slug, title, definition, created_at)
            SELECT t, 'report-' || i, 'Report ' || i, '{}'::json, now()
            FROM generate_series(1, 2) t, generate_series(1, 20) i"""))
        conn.execute(sa.text("""
            INSERT INTO schedule (tenant_id, report_id, cron, cadence, at_time, timezone, formats,
                                  channels, subject, params, active, next_run_at, last_fired_at,
                                  last_status, misfire_grace_seconds, created_by, created_at,
                                  deleted_at)
            SELECT t, (t - 1) * 20 + 1 + i % 20, (i % 60) || ' 9 * * *', 'daily', '09:' || lpad((i % 60)::text, 2, '0'),
                   'Europe/Moscow', '["pdf", "csv"]', '["email"]', 'Report {date}', '{}',
                   i % 10 <> 0, :now + (i % 1440) * interval '1 minute', :now - interval '1 day',
                   'success', 3600, 'ana@acme.example', now(),
                   CASE WHEN i % 50 = 0 THEN now() END
            FROM generate_series(1, 2) t, generate_series(1, :total) i"""), {"total": total, "now": NOW})
        conn.execute(sa.text("""
            INSERT INTO schedule_recipient (schedule_id, channel, address)
            SELECT id, 'email', 'team-' || id || '@acme.example' FROM schedule
            UNION ALL
            SELECT id, 'telegram', (100000 + id)::text FROM schedule WHERE id % 3 = 0"""))
        conn.execute(sa.text("""
            INSERT INTO report_run (schedule_id, tenant_id, scheduled_for, manual, test, status,
                                    attempts, created_at)
            SELECT s.id, s.tenant_id, :now - d * interval '1 day', false, false,
                   CASE WHEN (s.id + d) % 17 = 0 THEN 'failed' ELSE 'success' END, 1, now()
            FROM schedule s, generate_series(1, :runs) d"""), {"now": NOW, "runs": RUNS_PER_SCHEDULE})
        conn.execute(sa.text("""
            INSERT INTO tenant_recipient (tenant_id, channel, address)
            VALUES (1, 'email', 'ops@acme.example'), (1, 'telegram', '-100123')"""))
        conn.execute(sa.text("""
            INSERT INTO app_user (email, password_hash, active, failed_logins, created_at)
            VALUES ('ana@acme.example', 'x', true, 0, now())"""))
        conn.execute(sa.text("INSERT INTO membership (user_id, tenant_id, role) VALUES (1, 1, 'viewer')"))
        # Each schedule's "Last 10" strip, as herald keeps it (written as each run ends): the
        # runs above were inserted without herald, so the strips are filled from them as
        # migration 0016 filled them.
        fill_recent_runs(conn)
        conn.execute(sa.text("ANALYZE"))


def bench_schedules(total: int, repeat: int) -> dict[str, float] | None:
    try:
        from services.schedule_table import PAGE_SIZE, list_schedules, schedule_page
    except ImportError as exc:
        print(f"(1) skipped: services.schedule_table.list_schedules is not there yet ({exc}).")
        return None
    from sqlmodel import Session

    from models import migrate
    from models.db import get_engine
    from services.access import load_viewer

    name, url = create_database()
    try:
        migrate.upgrade(url)
        started = time.perf_counter()
        populate_schedules(url, total)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # filling the strips left a dead copy of each schedule
        print(f"(1) {total:,} schedules in the listed tenant, {total:,} in another; "
              f"populated in {time.perf_counter() - started:.1f} s", flush=True)
        raw_conn = psycopg.connect(url.replace("+psycopg", ""))
        tenant = {"tenant": 1}

        def raw() -> int:
            with raw_conn.cursor() as cur:
                rows = cur.execute(SCHEDULES_SQL, tenant).fetchall()
                cur.execute(REPORTS_SQL, tenant).fetchall()
                cur.execute(RECIPIENTS_SQL, tenant).fetchall()
                cur.execute(FALLBACK_SQL, tenant).fetchall()
            raw_conn.rollback()
            return len(rows)

        def raw_page() -> int:
            with raw_conn.cursor() as cur:
                cur.execute(COUNT_SQL, tenant).fetchone()
                rows = cur.execute(PAGE_SQL, {**tenant, "limit": PAGE_SIZE, "offset": 0}).fetchall()
                cur.execute(REPORTS_SQL, tenant).fetchall()
                cur.execute(PAGE_RECIPIENTS_SQL, {"ids": [r[0] for r in rows]}).fetchall()
                cur.execute(FALLBACK_SQL, tenant).fetchall()
            raw_conn.rollback()
            return len(rows)

        engine = get_engine(url)

        def herald() -> int:
            with Session(engine) as session:
                viewer = load_viewer(session, 1)
                return len(list_schedules(session, viewer, 1))

        def herald_page() -> int:
            with Session(engine) as session:
                viewer = load_viewer(session, 1)
                return len(schedule_page(session, viewer, 1, offset=0, limit=PAGE_SIZE).rows)

        listed, expected = herald(), raw()
        assert listed == expected, (listed, expected)
        assert herald_page() == raw_page() == PAGE_SIZE
        raw_times, herald_times = alternate(raw, herald, repeat)
        raw_page_times, page_times = alternate(raw_page, herald_page, max(repeat, 21))
        raw_conn.close()
        engine.dispose()
    finally:
        drop_database(name)
    return {"raw": ms(raw_times), "herald": ms(herald_times), "rows": listed,
            "raw_page": ms(raw_page_times), "page": ms(page_times), "page_rows": PAGE_SIZE}


# (2) The report preview.

def bench_preview(renders: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="herald-bench-admin-") as directory:
        return _bench_preview(Path(directory), renders)


def _bench_preview(directory: Path, renders: int) -> dict[str, float]:
    os.environ.update(DATABASE_URL=f"sqlite:///{directory / 'herald-demo.db'}", RENDER_PDF_STUB="false")
    from models.settings import get_settings

    get_settings.cache_clear()
    from herald.demo import new_login, seed_demo
    from models.base import Format
    from models.db import session_scope, utcnow
    from services.access import OPERATOR, load_viewer
    from services.documents import export_report, page_images, preview_report
    from services.reports import get_report
    from services.tenants import get_tenant
    from tests.seeding import add_user

    seed_demo(directory, new_login({}), utcnow())
    with session_scope() as session:
        tenant = get_tenant(session, OPERATOR, "demo")
        report_id = get_report(session, OPERATOR, tenant, "video-performance").id
        user_id = add_user(session, "bench@example.com", tenant, "viewer", "bench-password").user_id
    target = directory / "export.pdf"
    previews = []

    def export() -> None:
        with session_scope() as session:
            export_report(session, OPERATOR, "demo", "video-performance", Format.PDF, target, utcnow())

    def preview(images: bool = True) -> None:
        with session_scope() as session:
            previews.append(preview_report(session, load_viewer(session, user_id), report_id,
                                           images=images))

    # As the page shows it (an embedded PDF viewer), and with page images (without the viewer).
    export_times, viewer_times = alternate(export, lambda: preview(images=False), renders)
    export_times_2, preview_times = alternate(export, preview, renders)
    export_times += export_times_2
    last = previews[-1]
    assert last.pages and len(last.csv_rows) == 20, last.note
    pdf = target.read_bytes()
    images = timed(lambda: page_images(pdf), renders)
    png = timed(lambda: subprocess.run(["pdftoppm", "-png", "-r", "80", str(target),
                                        str(directory / "page")], check=True), max(5, renders // 3))
    return {"export": ms(export_times), "preview": ms(preview_times), "viewer": ms(viewer_times),
            "pages": len(last.pages),
            "images": ms(images), "pdftoppm_png": ms(png)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--renders", type=int, default=21)
    parser.add_argument("--only", choices=("schedules", "preview", "history"), help="run one part")
    args = parser.parse_args()

    if args.only in (None, "history"):
        history = bench_history(NOW, max(args.repeat, 11), alternate, ms)
        if history:
            report(history, max(args.repeat, 11))
        if args.only == "history":
            return
    listed = bench_schedules(args.schedules, args.repeat) if args.only != "preview" else None
    if listed:
        for label, herald, raw in (
                (f"list_schedules, all {listed['rows']:,} rows", listed["herald"], listed["raw"]),
                (f"schedule_page, the first {listed['page_rows']} (the admin's table)", listed["page"],
                 listed["raw_page"])):
            ratio = herald / raw
            print(f"  {label}: herald {herald:.1f} ms, raw SQL (the same statements; psycopg) "
                  f"{raw:.1f} ms; herald / raw = {ratio:.2f} (goal <= 2), herald <= 300 ms: "
                  f"{'met' if ratio <= 2 and herald <= 300 else 'NOT met'}", flush=True)

    if args.only == "schedules":
        return
    shown = bench_preview(args.renders)
    ratio = shown["viewer"] / shown["export"]
    print(f"(2) demo report (KPI, chart, 50-row table; {shown['pages']} pages), medians of {args.renders}")
    print(f"  herald export --format pdf (export_report):        {shown['export']:7.1f} ms")
    print(f"  preview as the page shows it (PDF for the embedded viewer + first 20 CSV rows): "
          f"{shown['viewer']:.1f} ms")
    print(f"  preview with page images instead (no viewer):      {shown['preview']:7.1f} ms "
          f"({shown['preview'] / shown['export']:.2f}x export)")
    print(f"    of which page images (pdftoppm -r 80, PPM -> PNG): {shown['images']:5.1f} ms "
          f"(pdftoppm -png -r 80 alone: {shown['pdftoppm_png']:.1f} ms)")
    print(f"  preview / export = {ratio:.2f} (goal <= 1.3): {'met' if ratio <= 1.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
