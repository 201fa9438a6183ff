"""What the delete commands share: naming what goes with a deletion, and asking before it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from models.errors import HeraldError
from services.deletions import WhatGoes, schedules_text

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking first.")]


def confirm_deletion(what: str, question: str, yes: bool) -> None:
    """Ask `what; question` on the terminal unless `yes`; a "no" ends the command (status 1)
    with nothing deleted. With no terminal to ask on (a script, a pipe), refuse unless `yes`."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise HeraldError(f"{what}; nobody is at a terminal to confirm, so nothing was deleted: "
                          f"add --yes to delete without being asked.")
    if not typer.confirm(f"{what}; {question}", default=False):
        typer.echo("nothing deleted")
        raise typer.Exit(1)


def counted(count: int, noun: str) -> str:
    """'1 run', '120 runs'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def goes_text(goes: WhatGoes) -> str:
    """What goes, e.g. '2 schedules (3, 7) and 120 runs'; '' when nothing does."""
    parts = []
    if goes.reports:
        parts.append(counted(goes.reports, "report"))
    if goes.schedules:
        parts.append(schedules_text(goes.schedules))
    if goes.runs:
        parts.append(counted(goes.runs, "run"))
    if goes.members:
        alone = f"; {counted(goes.members_alone, 'user')} left in no tenant" if goes.members_alone else ""
        parts.append(f"{counted(goes.members, 'membership')} (accounts stay{alone})")
    if goes.tokens:
        parts.append(counted(goes.tokens, "API token"))
    if goes.recipients:
        parts.append(counted(goes.recipients, "fallback recipient"))
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)
