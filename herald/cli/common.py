"""What every CLI command shares: error reporting, JSON output, `--now` parsing."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer

from models.db import utcnow
from models.errors import HeraldError
from models.redact import redact

F = TypeVar("F", bound=Callable[..., Any])
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
log = logging.getLogger("herald.cli")


def reports_errors(command: F) -> F:
    """Turn herald's errors into one sentence on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HeraldError as exc:
            typer.echo(f"error: {redact(str(exc))}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


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
