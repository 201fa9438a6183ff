"""`herald health`: the tick's heartbeat, due and stuck work, delivery failures, queue depths."""

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
) -> None:
    """Report herald's health; exit 0 when healthy, 1 when there is a problem."""
    from jobs.health import check_health, read_broker_info

    at = parse_instant(now)
    settings = get_settings()
    broker = read_broker_info(settings, at)
    with session_scope() as session:
        report = check_health(session, at, broker, settings)
    if json_out:
        print_json(report.to_dict())
    else:
        for line in _lines(report):
            typer.echo(line)
    if not report.healthy:
        raise typer.Exit(1)


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
    lines += [f"problem: {p}" for p in report.problems] or ["healthy"]
    return lines
