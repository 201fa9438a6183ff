"""The herd: thousands of reports due in the same minute, end to end through `dramatiq jobs`.

One tick claims every due schedule and enqueues its run on Redis; real `dramatiq jobs`
worker processes (1, 2, 4 of them, 4 threads each as docker-compose.yml runs them) take
each run through query → render → deliver and send one e-mail per run to a local SMTP
server (the tests' aiosmtpd `MailSink`, in this process). The tenant's data source is a
PostgreSQL database of its own, read as a SELECT-only role; the report is the demo's (a
KPI, a bar chart, a 50-row table), PDF only. Each herd gets a fresh control database,
Redis namespace and worker metrics directory, and fresh (cold) workers.

The PDF stub (`RENDER_PDF_STUB=true`: the HTML and its chart are still made, only the
print is skipped) runs every schedule; the real Chromium renderer a sample. A baseline
herd on 1 process x 1 thread per mode gives each stage's cost without threads competing
for the GIL. Stage times come from the workers' own Prometheus files: dramatiq's
`dramatiq_message_duration_milliseconds` per actor (the whole stage, bookkeeping included)
and herald's `herald_query_seconds`, `herald_render_seconds`, `herald_send_seconds` (the
timed work inside it). CPU is read from /proc: the workers' process tree (Chromium
included), PostgreSQL and the whole machine; the last two count whatever else runs there.

    python bench/herd.py [--schedules 1000] [--processes 1,2,4] [--threads 4] [--real-sample 100]
                         [--baseline 60] [--tenants 1] [--minute-ticks] [--fan-out 50]
                         [--real-only] [--profile] [--distinct-charts]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bench._common import (  # noqa: E402
    clear_redis_namespace,
    cpu_snapshot,
    create_database,
    create_reader,
    drop_database,
    free_port,
    kill_group,
    log_tail,
    start_workers,
)
from tests.delivery.servers import MailSink  # noqa: E402

REDIS_URL = os.environ.get("HERALD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SENDER = "Acme Reports <reports@acme.example>"
STAGES = ("query_stage", "render_stage", "deliver_stage")
INNER = {"queries": ("herald_query_seconds", {}),  # the work the stages time inside themselves
         "render": ("herald_render_seconds", {"format": "pdf"}),
         "send": ("herald_send_seconds", {"channel": "email"})}


@dataclass(frozen=True)
class Setup:
    """What every herd shares."""

    datasource: str          # the reader's URL of the tenant's database
    datasource_db: str
    namespace: str           # Redis
    log_level: str           # the workers'
    tenants: int
    stall_s: float
    minute_ticks: bool
    fan_out: int             # distinct params among the schedules (0: each its own)
    profile: bool            # workers profiled (bench/_profiled.py), the profile printed
    distinct_charts: bool    # each schedule's chart its own (DISTINCT_CHART_SQL)


@dataclass
class Herd:
    """What one herd measured."""

    mode: str
    processes: int
    threads: int
    runs: int
    tick_s: float
    wall_s: float                  # the tick's start to the last delivery's finish
    used: dict[str, float]         # CPU s of workers (browsers included), postgres, machine; sessions
    stage_ms: dict[str, float]     # actor: ms of its messages in all (dramatiq's histogram)
    inner_ms: dict[str, float]     # queries, render, send: ms in all of the work the stages time
    launches: int                  # Chromium launches (one per worker thread that printed)
    renders: int                   # PDFs rendered, from the workers' herald_render_seconds

    @property
    def per_minute(self) -> float:
        return self.runs / self.wall_s * 60



def make_datasource() -> tuple[str, str]:
    """The tenant's own database with the demo's videos: (its name, the reader's URL)."""
    from herald.demo import write_demo_videos_postgres

    name, url = create_database()
    write_demo_videos_postgres(url)
    return name, create_reader(name)


# --distinct-charts: the chart's numbers depend on the schedule's campaign, so no two runs draw
# the same chart (a drawing is kept per spec: renderers/charts.py), as no two runs print the
# same PDF. The demo report's own chart shows every campaign, the same for every schedule.
DISTINCT_CHART_SQL = ("SELECT platform, sum(views) + abs(hashtext(:campaign)) % 100000 AS views "
                      "FROM videos GROUP BY platform")


def populate(url: str, datasource: str, schedules: int, tenants: int, slot, fan_out: int = 0,
             distinct_charts: bool = False) -> None:
    """Tenants with the demo report, and `schedules` daily schedules due at `slot`, spread over
    the tenants, each to one e-mail address of its own. Schedule i asks for campaign
    "Campaign {i % fan_out}": `fan_out` distinct (report, params), which share renders; without
    it, every schedule its own campaign, so no two runs make the same documents. Rows
    set-based, as bench/tick.py."""
    from herald.demo import DEMO_REPORT
    from models import migrate
    from models.db import get_engine, session_scope
    from models.definition import load_definition, parse_definition
    from tests.seeding import add_tenant, save_report

    migrate.upgrade(url)
    definition = load_definition(DEMO_REPORT)
    if distinct_charts:
        data = definition.model_dump(exclude_none=True)
        data["sections"] = [{**s, "sql": DISTINCT_CHART_SQL} if s["kind"] == "chart" else s
                            for s in data["sections"]]
        definition = parse_definition(data)
    with session_scope(url) as session:
        for i in range(tenants):
            tenant = add_tenant(session, f"t{i}", f"Tenant {i}", "UTC", datasource)
            save_report(session, tenant, definition)
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO schedule (tenant_id, report_id, cron, timezone, formats, channels, params,
                                  active, next_run_at, misfire_grace_seconds, created_at)
            SELECT r.tenant_id, r.id, :cron, 'UTC', '["pdf"]', '["email"]',
                   json_build_object('campaign', 'Campaign ' || i % :distinct),
                   true, :slot, 3600, now()
            FROM generate_series(0, :n - 1) i JOIN report r ON r.tenant_id = 1 + i % :tenants"""),
            {"cron": f"{slot.minute} {slot.hour} * * *", "slot": slot, "n": schedules,
             "tenants": tenants, "distinct": fan_out or schedules})
        conn.execute(sa.text("""
            INSERT INTO schedule_recipient (schedule_id, channel, address)
            SELECT id, 'email', 'reader' || id || '@acme.example' FROM schedule"""))
        conn.execute(sa.text("ANALYZE"))


def worker_env(setup: Setup, url: str, smtp_port: int, metrics: Path, stub: bool) -> dict[str, str]:
    metrics.mkdir()
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL,
            "HERALD_REDIS_NAMESPACE": setup.namespace, "MAIL_SMTP_HOST": "127.0.0.1",
            "MAIL_SMTP_PORT": str(smtp_port), "MAIL_FROM": SENDER,
            "RENDER_PDF_STUB": "true" if stub else "false", "HERALD_LOG_LEVEL": setup.log_level,
            "dramatiq_prom_db": str(metrics), "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "prometheus_multiproc_dir": str(metrics),
            "dramatiq_prom_host": "127.0.0.1", "dramatiq_prom_port": str(free_port())}


def progress(url: str) -> tuple[int, int]:
    """(runs in a final state, deliveries sent)."""
    from models.db import get_engine
    from models.runs import FINAL_RUN_STATES

    with get_engine(url).connect() as conn:
        return conn.execute(sa.text("""
            SELECT (SELECT count(*) FROM report_run WHERE status = ANY(:final)),
                   (SELECT count(*) FROM delivery WHERE status = 'sent')"""),
            {"final": [s.value for s in FINAL_RUN_STATES]}).one()


def wait_until_done(setup: Setup, url: str, runs: int, sink: MailSink, workers: subprocess.Popen,
                    log: Path) -> None:
    """Until every run is final and the sink has every sent message; fails on a stall or a dead
    worker. With `minute_ticks`, ticks again every minute, as periodiq would."""
    from jobs.dispatch import dispatch_runs
    from jobs.tick import tick
    from models.db import utcnow

    last, moved, ticked = None, time.monotonic(), time.monotonic()
    while True:
        final, sent = progress(url)
        received = len(sink.mails)
        if final >= runs and received >= sent:
            return
        if workers.poll() is not None:
            raise RuntimeError(f"the workers exited ({workers.returncode}):\n{log_tail(log)}")
        if (final, received) != last:
            last, moved = (final, received), time.monotonic()
        elif time.monotonic() - moved > setup.stall_s:
            raise RuntimeError(f"no progress for {setup.stall_s:.0f} s: {final} of {runs} runs final, "
                               f"{sent} sent, {received} received\n{log_tail(log)}")
        if setup.minute_ticks and time.monotonic() - ticked >= 60:
            ticked = time.monotonic()
            requeued = tick(utcnow(), dispatch_runs, url).requeued
            print(f"    minute tick: {len(requeued)} stale runs re-enqueued", flush=True)
        time.sleep(0.5)


def check_outcome(url: str, runs: int, sink: MailSink) -> float:
    """Every run succeeded and every recipient got exactly one message; the last delivery's
    finish (epoch seconds)."""
    from models.db import get_engine

    with get_engine(url).connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM report_run GROUP BY 1")).all())
        errors = conn.execute(sa.text("SELECT DISTINCT error FROM report_run WHERE error IS NOT NULL "
                                      "LIMIT 5")).scalars().all()
        sent, last = conn.execute(sa.text("SELECT count(*), extract(epoch FROM max(finished_at)) "
                                          "FROM delivery WHERE status = 'sent'")).one()
    mails = list(sink.mails)
    ids, recipients = {m.message_id for m in mails}, {r for m in mails for r in m.rcpt_tos}
    problems = []
    if statuses != {"success": runs}:
        problems.append(f"run statuses {statuses}, errors {errors}")
    if not (sent == len(mails) == len(ids) == len(recipients) == runs):
        problems.append(f"{sent} deliveries sent, {len(mails)} messages received, {len(ids)} distinct "
                        f"Message-IDs, {len(recipients)} distinct recipients; {runs} expected")
    if problems:
        raise RuntimeError("; ".join(problems))
    return float(last)


def stage_figures(metrics: Path) -> tuple[dict[str, float], dict[str, float], int]:
    """The ms of each actor's messages in all (dramatiq's histogram) and of the work the stages
    time (herald's), summed over every worker process's files; and how many PDFs were rendered."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics))
    samples = [s for metric in registry.collect() for s in metric.samples]

    def total(name: str, labels: dict[str, str], scale: float) -> float:
        return sum(s.value for s in samples if s.name == name + "_sum"
                   and labels.items() <= s.labels.items()) * scale

    stage = {a: total("dramatiq_message_duration_milliseconds", {"actor_name": a}, 1) for a in STAGES}
    inner = {a: total(name, labels, 1000) for a, (name, labels) in INNER.items()}
    renders = sum(s.value for s in samples
                  if s.name == "herald_render_seconds_count" and s.labels.get("format") == "pdf")
    return stage, inner, int(renders)


def run_herd(setup: Setup, mode: str, schedules: int, processes: int, threads: int) -> Herd:
    """One herd on a fresh control database: populate, start the workers, tick, wait, check."""
    from jobs.dispatch import dispatch_runs
    from jobs.tick import tick
    from models.db import get_engine, utcnow
    from models.settings import get_settings

    name, url = create_database()
    work = Path(tempfile.mkdtemp(prefix="herald-herd-"))
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    sink, workers, log = MailSink().start(), None, work / "workers.log"
    try:
        populate(url, setup.datasource, schedules, setup.tenants, utcnow().replace(second=0, microsecond=0),
                 setup.fan_out, setup.distinct_charts)
        env = worker_env(setup, url, sink.port, work / "metrics", stub=mode == "stub")
        if setup.profile:
            (work / "profile").mkdir()
            env["HERALD_PROFILE_DIR"] = str(work / "profile")
        workers = start_workers(env, processes, threads, log,
                                module="bench._profiled" if setup.profile else "jobs")
        databases = [name, setup.datasource_db]
        before = cpu_snapshot(workers.pid, databases)
        started = time.time()
        report = tick(utcnow(), dispatch_runs, url)
        tick_s = time.time() - started
        assert len(report.queued) == schedules, (len(report.queued), schedules)
        wait_until_done(setup, url, schedules, sink, workers, log)
        after = cpu_snapshot(workers.pid, databases)
        used = {k: after[k] - before[k] for k in before}
        last = check_outcome(url, schedules, sink)
        stage, inner, renders = stage_figures(work / "metrics")
        launches = log.read_text(errors="replace").count("launched Chromium")
        if setup.profile:
            time.sleep(2.5)  # the workers' last dump
            print_profile(work / "profile", schedules)
        return Herd(mode, processes, threads, schedules, tick_s, last - started, used, stage, inner,
                    launches, renders)
    finally:
        if workers is not None:
            kill_group(workers)
        sink.stop()
        get_engine(url).dispose()
        drop_database(name)
        clear_redis_namespace(REDIS_URL, setup.namespace)
        shutil.rmtree(work, ignore_errors=True)


def print_profile(directory: Path, runs: int, top: int = 30) -> None:
    """The workers' profile (bench/_profiled.py), merged: the functions that cost most, in
    their own time and with what they call, per run; and the control database's statements
    by their total time per run."""
    import io
    import json
    import pstats
    from collections import defaultdict

    files = sorted(str(p) for p in directory.glob("*.prof"))
    if not files:
        print("  (no profile written)")
        return
    stats = pstats.Stats(*files, stream=io.StringIO())
    total = sum(tt for _, _, tt, _, _ in stats.stats.values())
    print(f"\n  profile of {runs} runs: {total / runs * 1000:.1f} ms of the worker threads' CPU per run "
          f"(profiler overhead included; the SQL figures below are wall time)")
    root = str(Path(__file__).resolve().parents[1])
    herald = {k: v for k, v in stats.stats.items() if k[0].startswith(root) and "/bench/" not in k[0]}
    for title, chosen, field in (("own time", stats.stats, 2), ("with callees", stats.stats, 3),
                                 ("with callees, herald's functions", herald, 3)):
        print(f"  top {top} by {title}, ms per run:")
        rows = sorted(chosen.items(), key=lambda kv: kv[1][field], reverse=True)
        for (filename, line, function), (_, calls, tt, ct, _) in rows[:top]:
            where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
            print(f"    {tt / runs * 1000:7.2f} own {ct / runs * 1000:8.2f} cum {calls / runs:7.1f} calls  "
                  f"{function} ({where}:{line})")
    statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for path in directory.glob("*-statements.json"):
        for text, (count, seconds) in json.loads(path.read_text()).items():
            statements[text][0] += count
            statements[text][1] += seconds
    count = sum(c for c, _ in statements.values())
    spent = sum(t for _, t in statements.values())
    print(f"  SQL: {count / runs:.1f} statements, {spent / runs * 1000:.1f} ms per run; the costliest:")
    for text, (n, seconds) in sorted(statements.items(), key=lambda kv: kv[1][1], reverse=True)[:top]:
        print(f"    {seconds / runs * 1000:6.2f} ms {n / runs:5.2f}x  {text[:150]}")


def print_tables(herds: list[Herd], threads: int) -> None:
    """Efficiency: throughput(N) / (N x throughput(1)) at `threads` per process."""
    one = {h.mode: h.per_minute for h in herds if (h.processes, h.threads) == (1, threads)}
    print("\nmode  processes x threads   runs    tick  tick -> last delivery  runs/min  efficiency"
          "   CPU per run: workers  postgres   cores busy: workers  machine   PG sessions/run  Chromium launches"
          "  PDFs rendered")
    for h in herds:
        efficiency = (h.per_minute / (h.processes * one[h.mode])
                      if h.threads == threads and h.mode in one else None)
        cpu = {k: f"{h.used[k] / h.runs * 1000:.0f} ms" for k in ("workers", "postgres")}
        cores = {k: f"{h.used[k] / h.wall_s:.2f}" for k in ("workers", "machine")}
        print(f"{h.mode:<5} {h.processes:>9} x {h.threads:<7} {h.runs:>6,} {h.tick_s:>6.2f} s {h.wall_s:>15.1f} s "
              f"{h.per_minute:>9,.0f} {'' if efficiency is None else f'{efficiency:.2f}':>11} "
              f"{cpu['workers']:>21} {cpu['postgres']:>9} {cores['workers']:>21} {cores['machine']:>8} "
              f"{h.used['sessions'] / h.runs:>17.2f} {h.launches:>18} {h.renders:>14,}")
    print("\nper run, mean ms of thread time: the run's messages by actor (dramatiq's; one message per "
          "run when the stages are fused in query_stage), and the timed work inside them")
    print("mode  processes x threads   " + "".join(f"{a:>15}" for a in STAGES) + "   messages"
          + "".join(f"{k:>10}" for k in INNER) + "   the rest")
    for h in herds:
        stages = [h.stage_ms[a] / h.runs for a in STAGES]
        inner = [h.inner_ms[k] / h.runs for k in INNER]
        print(f"{h.mode:<5} {h.processes:>9} x {h.threads:<7} " + "".join(f"{v:15.1f}" for v in stages)
              + f"{sum(stages):11.1f}" + "".join(f"{v:10.1f}" for v in inner)
              + f"{sum(stages) - sum(inner):11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000, help="due in the same minute (PDF stub)")
    parser.add_argument("--processes", default="1,2,4", help="worker processes, one herd each")
    parser.add_argument("--threads", type=int, default=4, help="dramatiq --threads per process")
    parser.add_argument("--real-sample", type=int, default=100,
                        help="schedules rendered by Chromium, per herd (0: none)")
    parser.add_argument("--baseline", type=int, default=60,
                        help="schedules per mode on 1 process x 1 thread (0: none)")
    parser.add_argument("--tenants", type=int, default=1, help="the schedules are spread over these")
    parser.add_argument("--minute-ticks", action="store_true", help="tick every minute during a herd, "
                        "as periodiq does (it re-enqueues runs queued for over a minute)")
    parser.add_argument("--real-only", action="store_true", help="no PDF stub herds")
    parser.add_argument("--fan-out", type=int, default=0, help="the schedules ask for this many "
                        "distinct params, and share renders (0: each its own, none shared)")
    parser.add_argument("--distinct-charts", action="store_true", help="each schedule's chart "
                        "draws numbers of its own (the demo report's chart is the same for all)")
    parser.add_argument("--profile", action="store_true", help="profile the workers (cProfile per "
                        "thread, SQL statement times) and print where each run's time goes")
    parser.add_argument("--stall", type=float, default=120, help="give up after this long without progress")
    args = parser.parse_args()

    namespace = f"herald-bench-{uuid.uuid4().hex[:8]}"
    log_level = os.environ.get("HERALD_LOG_LEVEL", "INFO")
    own_metrics = Path(tempfile.mkdtemp(prefix="herald-herd-tick-"))  # this process's (the tick's)
    # The workers log as deployed; this process (the tick) logs warnings only, not a line per run.
    os.environ.update(REDIS_URL=REDIS_URL, HERALD_REDIS_NAMESPACE=namespace, RENDER_PDF_STUB="true",
                      dramatiq_prom_db=str(own_metrics), HERALD_LOG_LEVEL="WARNING")
    import jobs  # noqa: F401  (installs the Redis broker before the actors are used)

    real = min(args.real_sample, args.schedules)
    plan = [("stub", args.schedules, p, args.threads) for p in map(int, args.processes.split(","))
            if not args.real_only]
    plan += [("real", real, p, args.threads) for p in map(int, args.processes.split(",")) if real]
    plan += [(mode, min(args.baseline, n), 1, 1) for mode, n in (("stub", args.schedules), ("real", real))
             if args.baseline and n and not (args.real_only and mode == "stub")]
    data_name, datasource = make_datasource()
    setup = Setup(datasource, data_name, namespace, log_level, args.tenants, args.stall, args.minute_ticks,
                  args.fan_out, args.profile, args.distinct_charts)
    herds = []
    try:
        for mode, schedules, processes, threads in plan:
            print(f"{mode}: {schedules:,} runs on {processes} x {threads} ...", flush=True)
            herd = run_herd(setup, mode, schedules, processes, threads)
            print(f"  tick {herd.tick_s:.2f} s, last delivery after {herd.wall_s:.1f} s: "
                  f"{herd.per_minute:,.0f} runs/min", flush=True)
            herds.append(herd)
    finally:
        drop_database(data_name)
        clear_redis_namespace(REDIS_URL, namespace)
        shutil.rmtree(own_metrics, ignore_errors=True)
    print_tables(herds, args.threads)


if __name__ == "__main__":
    main()
