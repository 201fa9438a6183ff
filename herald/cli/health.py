"""`herald health`: the tick's heartbeat, due and stuck work, delivery failures, queue depths,
the render browsers, and (`--agenda`) the runs due per minute over the next 24 hours."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import JsonOption, parse_instant, print_json, reports_errors
from models.db import session_scope
from models.settings import get_settings


@reports_errors
def health_command(
    now: Annotated[str | None, typer.Option(help="ISO 8601 instant to judge at; default now.")] = None,
    json_out: JsonOption = False,
    agenda: Annotated[bool, typer.Option(
        "--agenda", help="Also count the runs due per minute over the next 24 hours.")] = False,
    live: Annotated[bool, typer.Option(
        "--live", help="Exit 1 only for a problem (herald cannot do its job), as a container "
                       "healthcheck should; attention items exit 0.")] = False,
) -> None:
    """Report herald's health. Exit 0 when all is well, 1 for a problem (no tick, work due or
    stuck, no broker or workers, no render browser), 2 when only attention items are found (a
    channel failing, schedules on a channel that is not configured); with --live, 0 then."""
    from services.agenda import agenda as next_day
    from services.health import check_health, read_broker_info, read_render_browsers_or_none

    at = parse_instant(now)
    settings = get_settings()
    broker = read_broker_info(settings, at)
    browsers = read_render_browsers_or_none(settings)
    with session_scope() as session:
        report = check_health(session, at, broker, settings, browsers)
        coming = next_day(session, at) if agenda else None
    if json_out:
        data = report.to_dict()
        if coming is not None:
            data["agenda"] = coming.to_dict()
        print_json(data)
    else:
        for line in _lines(report) + (_agenda_lines(coming) if coming else []):
            typer.echo(line)
    if not report.healthy:
        raise typer.Exit(1)
    if report.attention and not live:
        raise typer.Exit(2)


def _lines(report) -> list[str]:
    unknown = "unknown"
    if report.last_tick_at is None:
        tick = "last tick: never"
    else:
        tick = (f"last tick: {report.last_tick_at.isoformat()} on {report.last_tick_host}, "
                f"{int(report.last_tick_ago_seconds)} s ago, took {report.last_tick_duration_ms} ms")
    lines = [tick, f"schedules: {report.schedules}, due but not claimed: {report.due_not_claimed}",
             f"stuck runs: {len(report.stuck_runs)}"]
    for channel in report.failures:
        rate = unknown if channel.failure_rate is None else f"{channel.failure_rate:.0%}"
        lines.append(f"{channel.channel} (24 h): {channel.sent} sent, {channel.failed} failed, "
                     f"{channel.pending} pending, failure rate {rate}")
    if report.broker is None:
        lines.append("queues: none (no REDIS_URL; herald runs embedded)")
    elif report.broker.error:
        lines.append(f"queues: {unknown}; broker processes seen: {unknown}")
    else:
        for name, depth in report.broker.queues.items():
            lines.append(f"queue {name}: {depth.ready} ready, {depth.delayed} delayed, {depth.dead} dead")
        lines.append(f"broker processes seen (workers and enqueuers): {report.broker.processes_seen}")
    if report.render_browsers is not None:
        for b in report.render_browsers:
            state = f"Chromium {b.version}" if b.ok else f"failed: {b.error}"
            lines.append(f"render browser {b.host} pid {b.pid}: {state} (since {b.at.isoformat()})")
        if not report.render_browsers:
            lines.append("render browsers: none reported in the last few minutes")
    lines += [f"problem: {p}" for p in report.problems]
    lines += [f"attention: {a}" for a in report.attention]
    return lines + ([] if report.problems or report.attention else ["healthy"])


def _agenda_lines(agenda) -> list[str]:
    lines = [f"next 24 h: {agenda.total} runs from {agenda.schedules} schedules"
             + (f" ({agenda.invalid} invalid schedules skipped)" if agenda.invalid else "")]
    lines += [f"busiest minute {minute:%Y-%m-%d %H:%M} UTC: {runs} runs" for minute, runs in agenda.busiest]
    return lines
