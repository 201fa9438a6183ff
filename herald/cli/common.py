"""What every CLI command shares: error reporting, JSON output, `--now` parsing, a schedule's
times on its own clock."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from models.cron import parse_timezone
from models.db import utcnow
from models.errors import HeraldError, unreachable_service
from models.redact import redact

F = TypeVar("F", bound=Callable[..., Any])
# What every command's body needs first (herald's schema), asked for by the `herald` callback and
# run by `reports_errors` right before the body: after the command's arguments parse, so
# `--help` and usage errors never open the database.
_before_body: list[Callable[[], None]] = []
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
log = logging.getLogger("herald.cli")


def reports_errors(command: F) -> F:
    """Turn herald's errors into one sentence on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            while _before_body:
                _before_body.pop(0)()
            return command(*args, **kwargs)
        except HeraldError as exc:
            typer.echo(f"error: {redact(str(exc))}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:
            sentence = unreachable_service(exc)
            if sentence is None:
                raise
            typer.echo(f"error: {redact(sentence)}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def before_body(ctx: typer.Context, check: Callable[[], None]) -> None:
    """Run `check` before the body of the command `ctx` goes on to (not for its `--help`)."""
    _before_body.append(check)
    ctx.call_on_close(_before_body.clear)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def parse_instant(text: str | None, option: str = "--now") -> datetime:
    """An ISO 8601 instant with a zone (a trailing Z is fine), or the current time."""
    if text is None:
        return utcnow()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise HeraldError(f"{option} {text!r} is not an ISO 8601 time; write e.g. 2026-03-07T09:00:00Z.") from None
    if value.tzinfo is None:
        raise HeraldError(f"{option} {text!r} has no timezone; add Z or an offset such as +02:00.")
    return value


def local_time(moment: datetime | str, timezone: str) -> str:
    """A moment (or its ISO text) on a schedule's clock, e.g. '2026-03-09 09:00 CET'; in UTC
    when the stored zone no longer exists (the tick flags such a schedule)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    try:
        local = moment.astimezone(parse_timezone(timezone))
    except HeraldError:
        local = moment.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
