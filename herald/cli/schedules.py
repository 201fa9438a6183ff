"""`herald schedule` and `herald cron`: planning when reports go out."""

from __future__ import annotations

from typing import Annotated

import typer

from herald.cli.common import JsonOption, local_time, parse_instant, print_json, reports_errors
from herald.cli.deleting import YesOption, confirm_deletion, counted
from models import cron
from models.db import session_scope, utcnow
from services import deletions, schedules, tenants
from services.access import OPERATOR

schedule_app = typer.Typer(help="Schedules: when a report goes out, and to whom.", no_args_is_help=True)
cron_app = typer.Typer(help="Cron expressions under herald's DST policy.", no_args_is_help=True)

@schedule_app.command("add")
@reports_errors
def schedule_add(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    report: Annotated[str, typer.Option(help="Report slug.")],
    cron_expr: Annotated[str | None, typer.Option("--cron", help="Five-field cron expression.")] = None,
    cadence: Annotated[str | None, typer.Option(help="daily, weekly (Mondays) or monthly (the 1st).")] = None,
    at: Annotated[str | None, typer.Option(help="HH:MM, with --cadence.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA timezone; default: the tenant's.")] = None,
    format: Annotated[list[str], typer.Option(help="pdf, csv and/or xlsx (repeatable).")] = [],  # noqa: B006
    email: Annotated[list[str], typer.Option(help="E-mail recipient (repeatable).")] = [],  # noqa: B006
    telegram: Annotated[list[str], typer.Option(help="Telegram chat id (repeatable).")] = [],  # noqa: B006
    channel: Annotated[list[str], typer.Option(
        help="email and/or telegram (repeatable); default: the channels of the recipients given, "
             "else both with the tenant's recipients.")] = [],  # noqa: B006
    subject: Annotated[str | None, typer.Option(
        help="E-mail subject; {title}, {date}, {period} and {tenant} are filled in.")] = None,
    send_if: Annotated[str | None, typer.Option(
        help="always, or rows (send only when the report's CSV query returns rows); "
             "default: the report's send_if.")] = None,
    spread: Annotated[int | None, typer.Option(
        help="Run at this schedule's own second within this many seconds after each slot "
             "(0: exactly on the slot); default: the tenant's spread.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Schedule a report on a cron expression or a daily/weekly/monthly cadence."""
    values = schedules.ScheduleValues(
        report=report, cron=cron_expr, cadence=cadence, time=at, timezone=timezone,
        formats=tuple(format), emails=tuple(email), chats=tuple(telegram), channels=tuple(channel),
        subject=subject, paused=paused, send_if=send_if, spread_seconds=spread)
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        row = schedules.save_schedule(session, OPERATOR, owner.id, values, now=utcnow())
        data = schedules.schedule_details(session, OPERATOR, row.id)
    if json_out:
        print_json(data)
    else:
        typer.echo(f"schedule {data['id']} added: {data['description']} ({data['timezone']}); "
                   f"{next_fire(data)}")


@schedule_app.command("list")
@reports_errors
def schedule_list(tenant: Annotated[str, typer.Option(help="Tenant slug.")],
                  json_out: JsonOption = False) -> None:
    """List a tenant's schedules."""
    with session_scope() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant)
        rows = schedules.list_schedule_details(session, OPERATOR, owner)
    if json_out:
        print_json(rows)
        return
    for row in rows:
        state = "active" if row["active"] else "paused"
        typer.echo(f"{row['id']:>5}  {row['report']:<24} {row['cron']:<18} {row['timezone']:<20} "
                   f"{state:<7} {next_fire(row)}  {last_fire(row)}")
        if row["paused_reason"]:  # herald paused it: say why under its line
            typer.echo(f"       {row['paused_reason']}")


def next_fire(row: dict) -> str:
    """'next run 2026-03-09 09:00 CET' on the schedule's clock; a paused schedule has none."""
    if not row["active"]:
        return "no next run (paused)"
    if row["next_run_at"] is None:
        return "no next run"
    return f"next run {local_time(row['next_run_at'], row['timezone'])}"


def last_fire(row: dict) -> str:
    """'last success, slot 2026-03-08 09:00 CET' on the schedule's clock, or 'never run'."""
    if row["last_status"] is None:
        return "never run"
    slot = f", slot {local_time(row['last_fired_at'], row['timezone'])}" if row["last_fired_at"] else ""
    return f"last {row['last_status']}{slot}"


def _set_active(schedule_id: int, active: bool) -> None:
    with session_scope() as session:
        (schedules.resume if active else schedules.pause)(session, OPERATOR, schedule_id, now=utcnow())
    typer.echo(f"schedule {schedule_id} {'resumed' if active else 'paused'}")


@schedule_app.command("pause")
@reports_errors
def schedule_pause(schedule_id: int) -> None:
    """Stop a schedule from firing without deleting it."""
    _set_active(schedule_id, False)


@schedule_app.command("resume")
@reports_errors
def schedule_resume(schedule_id: int) -> None:
    """Resume a paused schedule from its next fire time after now (no catch-up)."""
    _set_active(schedule_id, True)


@schedule_app.command("delete")
@reports_errors
def schedule_delete(schedule_id: int, yes: YesOption = False) -> None:
    """Delete a schedule for good: it never fires again, and its runs stay in the history
    (`herald runs --schedule ID`). Asks first when it has runs."""
    with session_scope() as session:
        goes = deletions.what_goes_with_schedule(session, OPERATOR, schedule_id)
    if goes.runs:
        confirm_deletion(f"schedule {schedule_id} has {counted(goes.runs, 'run')}",
                         "delete it (its history stays)?", yes)
    with session_scope() as session:
        schedules.delete(session, OPERATOR, schedule_id, now=utcnow())
    kept = ("" if not goes.runs else "; its run stays in the history" if goes.runs == 1
            else f"; its {goes.runs} runs stay in the history")
    typer.echo(f"schedule {schedule_id} deleted{kept}")


@cron_app.command("next")
@reports_errors
def cron_next(
    expr: str,
    timezone: Annotated[str, typer.Option(help="IANA timezone.")] = "UTC",
    after: Annotated[str | None, typer.Option(help="ISO 8601 instant; default now.")] = None,
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many fire times.")] = 5,
    json_out: JsonOption = False,
) -> None:
    """Print the next fire times of EXPR in TIMEZONE, in local time and UTC."""
    zone = cron.parse_timezone(timezone)
    fires = cron.next_fires(expr, timezone, parse_instant(after, "--after"), count)
    rows = [{"local": f.astimezone(zone).isoformat(), "utc": f.isoformat().replace("+00:00", "Z"),
             "zone": f.astimezone(zone).tzname()} for f in fires]
    if json_out:
        print_json({"expression": cron.validate_cron(expr), "timezone": timezone,
                    "description": cron.describe(expr), "fires": rows})
        return
    typer.echo(f"{cron.describe(expr)} ({timezone})")
    for fire in fires:
        local = fire.astimezone(zone)
        typer.echo(f"  {local:%Y-%m-%d %H:%M} {local.tzname():<6} (UTC{local:%z})  "
                   f"= {fire:%Y-%m-%d %H:%M}Z")
