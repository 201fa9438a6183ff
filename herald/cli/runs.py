"""`herald tick`, `send-now`, `send-test`, `resend`, `run`, `runs`, `export`: driving and reading
runs from a shell, through the same services as the admin."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.common import JsonOption, local_time, parse_instant, print_json, reports_errors
from models.db import session_scope, utcnow
from services import runs
from services.access import OPERATOR

if TYPE_CHECKING:
    from renderers import Document


@reports_errors
def tick_command(
    now: Annotated[str | None, typer.Option(help="ISO 8601 instant to tick at; default now.")] = None,
    json_out: JsonOption = False,
) -> None:
    """One dispatcher tick in this process: claim due schedules and enqueue their runs."""
    from jobs.dispatch import dispatch_runs
    from jobs.tick import tick

    report = tick(parse_instant(now), dispatch_runs)
    data = {"queued": [r for r, _ in report.queued], "missed": report.missed,
            "flagged": report.flagged, "requeued": [r for r, _ in report.requeued]}
    if json_out:
        print_json(data)
    else:
        typer.echo(f"queued {len(data['queued'])} runs, {data['missed']} missed, "
                   f"{data['flagged']} schedules flagged, {len(data['requeued'])} re-enqueued")


@reports_errors
def send_now(schedule_id: int) -> None:
    """Run a schedule now, through the same queue as the tick."""
    with session_scope() as session:
        sent = runs.send_now(session, OPERATOR, schedule_id, now=utcnow())
    typer.echo(f"run {sent.run_id} queued for schedule {schedule_id}" if sent.status == "queued"
               else f"run {sent.run_id} of schedule {schedule_id} ran here: {sent.status}")


@reports_errors
def send_test_command(
    schedule_id: int,
    email: Annotated[list[str], typer.Option(help="E-mail address to send the test to (repeatable).")] = [],  # noqa: B006
    telegram: Annotated[list[str], typer.Option(help="Telegram chat id to send it to (repeatable).")] = [],  # noqa: B006
) -> None:
    """Send a schedule's report now to these addresses only, as a test run (the schedule's
    status is left as it is)."""
    with session_scope() as session:
        sent = runs.send_test(session, OPERATOR, schedule_id, now=utcnow(), emails=email, chats=telegram)
    typer.echo(f"test run {sent.run_id} queued for schedule {schedule_id}" if sent.status == "queued"
               else f"test run {sent.run_id} of schedule {schedule_id} ran here: {sent.status}")


@reports_errors
def resend_command(run_id: int) -> None:
    """Send a partial or failed run's failed deliveries again, and only those."""
    with session_scope() as session:
        result = runs.resend_failed(session, OPERATOR, run_id, now=utcnow())
    who = ", ".join(f"{recipient} ({channel})" for channel, recipient in result.resent)
    typer.echo(f"run {run_id}: its failed deliveries are queued to go again to {who}"
               if result.status == "queued" else f"run {run_id} sent again to {who}: {result.status}")


@reports_errors
def run_command(schedule_id: int, json_out: JsonOption = False) -> None:
    """Run a schedule's whole pipeline synchronously in this process."""
    with session_scope() as session:
        data = runs.run_here(session, OPERATOR, schedule_id, now=utcnow())
    if json_out:
        print_json(data)
    else:
        said = data["error"] or data["reason"]
        typer.echo(f"run {data['id']}: {data['status']}" + (f" ({said})" if said else ""))
    if data["status"] not in ("success", "skipped"):  # skipped: its send_if was not met
        raise typer.Exit(1)


@reports_errors
def runs_command(
    tenant: Annotated[str | None, typer.Option(help="Tenant slug.")] = None,
    schedule: Annotated[int | None, typer.Option(help="Schedule id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_out: JsonOption = False,
) -> None:
    """Run and delivery history, newest first; each slot on its schedule's clock."""
    with session_scope() as session:
        rows = runs.runs_with_deliveries(session, OPERATOR, tenant_slug=tenant, schedule_id=schedule,
                                         limit=limit)
    if json_out:
        print_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['id']:>6}  schedule {row['schedule_id']:<5} "
                   f"{local_time(row['scheduled_for'], row['timezone'])}  "
                   f"{row['status']:<8} {row['error'] or row['reason'] or ''}")
        for d in row["deliveries"]:
            attempts = f"{d['attempts']} attempt{'s' if d['attempts'] != 1 else ''}"
            typer.echo(f"{'':8}{d['channel']:<9} {d['recipient']:<32} {d['status']:<8} {attempts:<11} "
                       f"{d['error'] or ''}".rstrip())


@reports_errors
def export_command(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    report: Annotated[str, typer.Option(help="Report slug.")],
    format: Annotated[str, typer.Option(help="pdf, csv or xlsx.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the document.")],
    period_start: Annotated[str | None, typer.Option(
        help="Start of the reporting period (:period_start), an ISO date or time; naive times are "
             "in the tenant's timezone. Default: the latest complete period.")] = None,
    period_end: Annotated[str | None, typer.Option(
        help="End of the reporting period (:period_end, exclusive); give it with --period-start.")] = None,
) -> None:
    """Render a report now, with its default parameters, to a file."""
    from models.base import Format
    from models.errors import InvalidInput
    from services.documents import export_report, period_bounds

    try:
        fmt = Format(format.lower())
    except ValueError:
        raise InvalidInput(f"Unknown format {format!r}; use pdf, csv or xlsx.") from None
    bounds = period_bounds(period_start, period_end, ("--period-start", "--period-end"))

    def export(target: Path) -> Document:
        with session_scope() as session:
            return export_report(session, OPERATOR, tenant, report, fmt, target, utcnow(), bounds)

    document = write_output(output, export)
    rows = f", {document.rows:,} rows" if document.rows is not None else ""
    typer.echo(f"wrote {output} ({document.size:,} bytes{rows})")


def write_output(output: Path, export: Callable[[Path], Document]) -> Document:
    """`export(path)` into a temporary file, then copied beside `output` and renamed onto it, so
    that an unwritable or full output leaves no partial file (a device or a pipe, such as
    /dev/stdout, is written in place). Errors on `output` are one sentence naming it."""
    from models.errors import InvalidInput

    def refused(exc: OSError) -> InvalidInput:
        return InvalidInput(f"Cannot write {output} ({exc.strerror or exc}); choose another "
                            f"--output path.")

    in_place = output.exists() and not output.is_file() and not output.is_dir()
    if not in_place:
        try:  # before the render: a folder that cannot be made fails at once
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise refused(exc) from None
    with tempfile.TemporaryDirectory(prefix="herald-export-") as directory:
        document = export(Path(directory) / (output.name or "document"))
        try:
            _place(document.path, output, in_place)
        except OSError as exc:
            raise refused(exc) from None
    return replace(document, path=output)


def _place(made: Path, output: Path, in_place: bool) -> None:
    if in_place:
        with made.open("rb") as source, output.open("wb") as target:
            shutil.copyfileobj(source, target)
        return
    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(made, partial)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
