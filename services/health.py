"""herald's health (`herald health`, the admin's Health page, `herald metrics`): is the tick
alive, is anything due or stuck, are deliveries failing, what is queued, and did the render
browsers start.

Two kinds of finding. A *problem* means herald cannot do its job (no tick, work due or stuck,
no broker or workers, no render browser): what a container's healthcheck restarts on
(`herald health --live`). An *attention* item is for an operator to look at while the rest
runs: a channel failing, or schedules that send on a channel that is not configured.

The figures are herald's, system-wide, and carry no tenant's names or recipients; only
`tenant_stuck_runs` reads a tenant's rows, for someone who may read them. Everything is read
at `now`, given by the caller; nothing here guesses what it cannot read: a value that cannot
be known is None and shows as "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlmodel import Session

from jobs.broker import REDIS_HEARTBEAT_TIMEOUT_MS
from jobs.shards import query_queue
from models.errors import RenderError
from models.health import RenderBrowserStatus, TickHeartbeat, read_render_browsers
from models.reports import Report
from models.runs import Delivery, DeliveryStatus, ReportRun, RunStatus
from models.schedules import Schedule, ScheduleRecipient
from models.settings import Settings, get_settings
from models.tenancy import TenantRecipient
from models.text import duration_text
from services.access import Action, Who, require

# A late tick and a failing channel: HERALD_HEALTH_TICK_LATE_SECONDS, HERALD_HEALTH_FAILURE_RATE.
DUE_LATE_AFTER = timedelta(minutes=2)         # a due schedule should be claimed by the next tick
FAILURE_WINDOW = timedelta(hours=24)
FIXED_QUEUES = ("tick", "render", "deliver")  # the actors' queues besides the query shards
STUCK_LISTED = 5                              # run ids named in the problem sentence

HEARTBEATS = TickHeartbeat.__table__
RUNS = ReportRun.__table__
SCHEDULES = Schedule.__table__
DELIVERIES = Delivery.__table__


@dataclass
class QueueDepth:
    """Messages in one Dramatiq queue: ready, delayed (retries, backoff) and dead-lettered."""

    ready: int
    delayed: int
    dead: int


@dataclass
class BrokerInfo:
    """What Redis says; `error` says why it could not be read (then everything is unknown)."""

    queues: dict[str, QueueDepth] = field(default_factory=dict)
    # Processes whose broker wrote a heartbeat lately: workers, and any process that enqueued.
    processes_seen: int | None = None
    error: str | None = None


@dataclass
class ChannelFailures:
    """Deliveries created on one channel in the last 24 h."""

    channel: str
    total: int
    sent: int
    failed: int
    pending: int
    failure_rate: float | None  # failed / (sent + failed); None when nothing finished


@dataclass
class HealthReport:
    """herald's health at `now`: healthy (live) when `problems` is empty; `attention` lists
    what an operator should look at meanwhile."""

    now: datetime
    last_tick_at: datetime | None
    last_tick_ago_seconds: float | None
    last_tick_duration_ms: int | None
    last_tick_host: str | None
    schedules: int
    due_not_claimed: int
    stuck_runs: list[int]
    failures: list[ChannelFailures]
    broker: BrokerInfo | None  # None: no REDIS_URL, herald runs embedded
    # Each render process's Chromium, from Redis; None when unknown (no Redis, or unreadable).
    render_browsers: list[RenderBrowserStatus] | None
    problems: list[str]
    attention: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["healthy"] = self.healthy
        return data


def check_health(session: Session, now: datetime, broker_info: BrokerInfo | None = None,
                 settings: Settings | None = None,
                 render_browsers: list[RenderBrowserStatus] | None = None) -> HealthReport:
    """Read the heartbeat, due and stuck work and delivery failures; list one sentence per problem.

    `broker_info` and `render_browsers` come from Redis (`read_broker_info`,
    `read_render_browsers_or_none`); None means unknown and raises no problem.
    """
    settings = settings or get_settings()
    tick_late_after = timedelta(seconds=settings.health_tick_late_seconds)
    beat = session.execute(sa.select(HEARTBEATS).order_by(HEARTBEATS.c.last_started_at.desc())
                           .limit(1)).first()
    live = sa.and_(SCHEDULES.c.active.is_(True), SCHEDULES.c.deleted_at.is_(None))
    schedules = session.execute(sa.select(sa.func.count()).select_from(SCHEDULES)
                                .where(SCHEDULES.c.deleted_at.is_(None))).scalar_one()
    due = session.execute(sa.select(sa.func.count()).select_from(SCHEDULES).where(
        live, SCHEDULES.c.next_run_at < now - DUE_LATE_AFTER)).scalar_one()
    stuck = stuck_run_ids(session, now, settings.requeue_after_seconds)
    failures = channel_failures(session, now)
    problems: list[str] = []
    ago = (now - beat.last_started_at) if beat else None
    if beat is None and schedules:
        problems.append(f"No tick has run yet although {schedules} schedules exist; "
                        "is `periodiq jobs` running?")
    elif ago is not None and ago > tick_late_after:
        problems.append(f"The last tick was {duration_text(ago)} ago; is `periodiq jobs` running?")
    if due:
        problems.append(f"{due} schedules are due for more than {duration_text(DUE_LATE_AFTER)} "
                        "but not claimed; the tick is not keeping up or not running.")
    if stuck:
        shown = ", ".join(str(i) for i in stuck[:STUCK_LISTED]) + (", …" if len(stuck) > STUCK_LISTED else "")
        problems.append(f"{len(stuck)} runs are stuck (queued past {settings.requeue_after_seconds} s "
                        f"or with an expired lease): {shown}.")
    attention = unconfigured_channels(session, settings)
    for channel in failures:
        if channel.failure_rate is not None and channel.failure_rate >= settings.health_failure_rate:
            attention.append(f"{channel.failed} of {channel.sent + channel.failed} {channel.channel} "
                             f"deliveries failed in the last 24 h ({channel.failure_rate:.0%}).")
    if broker_info is not None:
        problems += _broker_problems(broker_info)
    for browser in render_browsers or []:
        if not browser.ok:
            problems.append(f"The render browser of process {browser.pid} on {browser.host} did not "
                            f"start at {browser.at:%Y-%m-%d %H:%M} UTC: {browser.error.rstrip('.')}.")
    return HealthReport(
        now=now, last_tick_at=beat.last_started_at if beat else None,
        last_tick_ago_seconds=ago.total_seconds() if ago is not None else None,
        last_tick_duration_ms=beat.duration_ms if beat else None,
        last_tick_host=beat.host if beat else None, schedules=schedules, due_not_claimed=due,
        stuck_runs=stuck, failures=failures, broker=broker_info, render_browsers=render_browsers,
        problems=problems, attention=attention)


def unconfigured_channels(session: Session, settings: Settings) -> list[str]:
    """One sentence per channel that schedules send on (it is one of theirs, with recipients of
    their own or the tenant's on it) but the settings do not configure, naming those schedules
    by id (this is system-wide): active ones, and those herald paused (it may have been why)."""
    found = []
    for channel in ("email", "telegram"):
        unset = settings.channel_unset(channel)
        if unset is None:
            continue
        someone = sa.or_(
            sa.exists().where(ScheduleRecipient.schedule_id == SCHEDULES.c.id,
                              ScheduleRecipient.channel == channel),
            sa.exists().where(TenantRecipient.tenant_id == SCHEDULES.c.tenant_id,
                              TenantRecipient.channel == channel))
        ids = [i for i, channels in session.execute(
            sa.select(SCHEDULES.c.id, SCHEDULES.c.channels).where(
                sa.or_(SCHEDULES.c.active.is_(True), SCHEDULES.c.paused_reason.is_not(None)),
                SCHEDULES.c.deleted_at.is_(None), someone)
            .order_by(SCHEDULES.c.id)) if channel in (channels or [])]
        if ids:
            shown = ", ".join(map(str, ids[:STUCK_LISTED])) + (", …" if len(ids) > STUCK_LISTED else "")
            name = "e-mail" if channel == "email" else "Telegram"
            found.append(f"{len(ids)} schedules send on {name} ({shown}), which cannot send: "
                         f"{unset}")
    return found


def stuck_run_ids(session: Session, now: datetime, requeue_after_seconds: int) -> list[int]:
    """Runs queued longer than the requeue delay, or running with an expired lease."""
    return list(session.execute(sa.select(RUNS.c.id).where(sa.or_(
        sa.and_(RUNS.c.status == RunStatus.QUEUED,
                RUNS.c.queued_at < now - timedelta(seconds=requeue_after_seconds)),
        sa.and_(RUNS.c.status == RunStatus.RUNNING, RUNS.c.lease_expires_at < now),
    )).order_by(RUNS.c.id)).scalars())


def channel_failures(session: Session, now: datetime) -> list[ChannelFailures]:
    """Per channel, the deliveries created in the last 24 h by status."""
    rows = session.execute(
        sa.select(DELIVERIES.c.channel, DELIVERIES.c.status, sa.func.count())
        .where(DELIVERIES.c.created_at >= now - FAILURE_WINDOW, DELIVERIES.c.created_at <= now)
        .group_by(DELIVERIES.c.channel, DELIVERIES.c.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        counts.setdefault(str(channel), {})[str(status)] = count
    result = []
    for channel, by_status in sorted(counts.items()):
        sent, failed = by_status.get(DeliveryStatus.SENT, 0), by_status.get(DeliveryStatus.FAILED, 0)
        result.append(ChannelFailures(
            channel=channel, total=sum(by_status.values()), sent=sent, failed=failed,
            pending=by_status.get(DeliveryStatus.PENDING, 0),
            failure_rate=failed / (sent + failed) if sent + failed else None))
    return result


def read_broker_info(settings: Settings, now: datetime) -> BrokerInfo | None:
    """Queue depths and recent broker heartbeats from dramatiq's Redis keys; None without REDIS_URL."""
    url = settings.redis_url
    if url is None:
        return None
    if url.startswith(("amqp://", "amqps://")):
        return BrokerInfo(error="the broker is RabbitMQ; herald reads queue depths from Redis only")
    import redis

    namespace = settings.redis_namespace
    names = set(FIXED_QUEUES) | {query_queue(shard) for shard in settings.shards}
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            names |= _queues_in_redis(client, namespace)
            queues = {name: QueueDepth(ready=client.llen(f"{namespace}:{name}"),
                                       delayed=client.llen(f"{namespace}:{name}.DQ"),
                                       dead=client.zcard(f"{namespace}:{name}.XQ"))
                      for name in sorted(names)}
            since_ms = int(now.timestamp() * 1000) - REDIS_HEARTBEAT_TIMEOUT_MS
            seen = client.zcount(f"{namespace}:__heartbeats__", since_ms, "+inf")
        finally:
            client.close()
    except redis.RedisError as exc:
        return BrokerInfo(error=f"Redis could not be read ({type(exc).__name__})")
    return BrokerInfo(queues=queues, processes_seen=seen)


def read_render_browsers_or_none(settings: Settings) -> list[RenderBrowserStatus] | None:
    """The render processes' browser status from Redis; None without Redis or when unreadable."""
    url = settings.redis_url
    if url is None or url.startswith(("amqp://", "amqps://")):
        return None
    import redis

    try:
        return read_render_browsers(url, settings.redis_namespace)
    except redis.RedisError:
        return None  # the broker's line already says Redis cannot be read


def local_chromium(settings: Settings) -> tuple[str | None, str | None]:
    """(executable, None) when this machine can launch Chromium, else (None, why not).

    For embedded mode, where no render process reports: the same search the renderer makes.
    """
    from playwright.sync_api import Error, sync_playwright

    from renderers.browser import find_chromium

    try:
        with sync_playwright() as playwright:
            bundled = playwright.chromium.executable_path
        return find_chromium(settings.chromium_path, bundled) or bundled, None
    except RenderError as exc:
        return None, str(exc)
    except Error as exc:
        return None, f"Playwright could not start: {exc.message.splitlines()[0]}"


def _queues_in_redis(client, namespace: str) -> set[str]:
    """Queue names that hold messages now (dramatiq keeps a `<queue>.msgs` hash per queue)."""
    names = set()
    prefix = f"{namespace}:"
    for key in client.scan_iter(match=f"{namespace}:*.msgs", count=500):
        name = key.decode()[len(prefix):-len(".msgs")]
        for suffix in (".DQ", ".XQ"):
            name = name.removesuffix(suffix)
        if not name.startswith("__"):
            names.add(name)
    return names


def _broker_problems(info: BrokerInfo) -> list[str]:
    if info.error:
        return [f"Queue depths and workers are unknown: {info.error}."]
    if info.processes_seen == 0:
        return [f"No Dramatiq process has written a heartbeat to Redis in the last "
                f"{REDIS_HEARTBEAT_TIMEOUT_MS // 1000} s; is `dramatiq jobs` running?"]
    return []


class StuckRun(NamedTuple):
    """A stuck run of a tenant: which report and schedule, since when."""

    id: int
    schedule_id: int | None
    report_title: str
    status: str
    since: datetime | None  # queued at, or the lease that expired


def tenant_stuck_runs(session: Session, who: Who, tenant_id: int,
                      run_ids: Sequence[int]) -> list[StuckRun]:
    """Those of `run_ids` (the stuck runs of `check_health`) that belong to the tenant, for
    someone who may read it."""
    require(who, tenant_id, Action.READ)
    if not run_ids:
        return []
    runs, reports = ReportRun.__table__, Report.__table__
    schedules = Schedule.__table__
    rows = session.execute(
        sa.select(runs.c.id, runs.c.schedule_id, reports.c.title, runs.c.status,
                  sa.func.coalesce(runs.c.lease_expires_at, runs.c.queued_at))
        .join(schedules, schedules.c.id == runs.c.schedule_id, isouter=True)
        .join(reports, reports.c.id == schedules.c.report_id, isouter=True)
        .where(runs.c.tenant_id == tenant_id, runs.c.id.in_(list(run_ids)))
        .order_by(runs.c.id)
    ).all()
    return [StuckRun(id=r[0], schedule_id=r[1], report_title=r[2] or "(report removed)",
                     status=str(r[3]), since=r[4]) for r in rows]


def process_metrics() -> CollectorRegistry:
    """herald's own counters and histograms of this process (`pipeline.metrics`): what the
    embedded mode's exporter serves beside the database's gauges (workers serve theirs)."""
    from pipeline.metrics import REGISTRY

    return REGISTRY
