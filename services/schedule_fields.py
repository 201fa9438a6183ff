"""A schedule's fields, each checked on its own: report, cron or cadence, timezone, formats,
channels, recipients, subject, typed report parameters, send_if and spread.

Checks only (nothing is written): `services.schedules` writes what `validate_schedule` accepts.
Messages name fields, not CLI flags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from models import cron
from models.base import Channel, Format
from models.cadence import resolve_cron
from models.definition import SEND_IF_WORDS
from models.errors import InvalidInput
from models.recipients import normalise_recipients
from models.reports import Report
from models.settings import get_settings
from models.spread import parse_spread
from models.tenancy import Tenant
from models.text import require_one_line

SUBJECT_MAX = 300


@dataclass(frozen=True)
class ScheduleFields:
    """A schedule's fields once every one is valid: what a create or an edit writes."""

    report: Report
    cron: str
    cadence: str | None
    at: str | None
    timezone: str
    formats: list[str]
    channels: list[str]
    recipients: list[tuple[Channel, str]]
    subject: str | None
    params: dict[str, Any]
    send_if: str | None = None
    spread_seconds: int | None = None


def parse_formats(formats: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(f.lower() for f in formats)) or [Format.PDF.value]
    for name in chosen:
        if name not in {f.value for f in Format}:
            raise InvalidInput(f"Unknown format {name!r}; use one or more of pdf, csv and xlsx.")
    return chosen


def parse_channels(channels: Sequence[str], recipients: Sequence[tuple[Channel, str]]) -> list[str]:
    """The channels a schedule sends on: as given; else those its recipients are on; else all
    (each then uses the tenant's fallback recipients)."""
    known = {c.value for c in Channel}
    for name in channels:
        if name.lower() not in known:
            raise InvalidInput(f"Unknown channel {name!r}; use email, telegram or both.")
    chosen = [c.lower() for c in channels] or [c.value for c, _ in recipients] or sorted(known)
    stray = sorted({c.value for c, _ in recipients} - set(chosen))
    if stray:
        raise InvalidInput(f"{stray[0]} recipients are given but channels leaves {stray[0]} out; "
                           f"add {stray[0]} to channels or drop those recipients.")
    return list(dict.fromkeys(chosen))


def parse_recipients(emails: Sequence[str], chats: Sequence[str]) -> list[tuple[Channel, str]]:
    """Validated (channel, address) pairs, at most HERALD_MAX_RECIPIENTS of them."""
    limit = get_settings().max_recipients
    pairs = normalise_recipients(emails, chats, len(emails) + len(chats))
    if len(pairs) > limit:
        raise InvalidInput(f"{len(pairs)} recipients given; a schedule may have at most {limit}, "
                           f"so use a mailing list or a Telegram group for more.")
    return pairs


def parse_subject(subject: str | None) -> str | None:
    """The subject template on one line and at most 300 characters; blank means the default."""
    if subject is None or not subject.strip():
        return None
    require_one_line(subject, "subject")
    if len(subject) > SUBJECT_MAX:
        raise InvalidInput(f"The subject is {len(subject)} characters long; shorten it to at most "
                           f"{SUBJECT_MAX}.")
    return subject


def param_kind(default: Any) -> str:
    """The type a report parameter takes, from its default: bool, int, float, str or any."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    return "any"


def parse_params(report: Report, params: dict[str, Any] | None) -> dict[str, Any]:
    """Values for the report's parameters, each of its default's type; None means the default."""
    defaults = report.definition.get("params", {}) or {}
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise InvalidInput(f"Report {report.slug!r} has no parameter {unknown[0]!r}; "
                           f"it takes: {', '.join(defaults) or 'none'}.")
    return {name: typed_param(name, value, defaults[name])
            for name, value in (params or {}).items() if value is not None}


def typed_param(name: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default`, or `InvalidInput` naming params.NAME."""
    kind, text = param_kind(default), value.strip() if isinstance(value, str) else None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise InvalidInput(f"params.{name} takes true or false, like its default; got {value!r}.")
    if kind in ("int", "float"):
        number = _number(value, text)
        if kind == "int" and (isinstance(number, int) or isinstance(number, float) and number.is_integer()):
            return int(number)
        if kind == "float" and number is not None:
            return float(number)
        what = "a whole number" if kind == "int" else "a number"
        raise InvalidInput(f"params.{name} takes {what}, like its default {default}; got {value!r}.")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise InvalidInput(f"params.{name} takes text, like its default {default!r}; got {value!r}.")
    if isinstance(value, str | int | float | bool):
        return value
    raise InvalidInput(f"params.{name} takes one value (text, a number, true or false); got {value!r}.")


def _number(value: Any, text: str | None) -> int | float | None:
    """A finite number from a number or its text, else None (a bool is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if text is None:
        return None
    for parse in (int, float):
        try:
            number = parse(text)
        except ValueError:
            continue
        return number if math.isfinite(number) else None
    return None


def validate_schedule(
    session: Session, tenant: Tenant, report_slug: str, *,
    cron_expr: str | None = None, cadence: str | None = None, at: str | None = None,
    timezone: str | None = None, formats: Sequence[str] = (), emails: Sequence[str] = (),
    chats: Sequence[str] = (), channels: Sequence[str] = (), subject: str | None = None,
    params: dict[str, Any] | None = None, send_if: str | None = None,
    spread_seconds: int | None = None,
) -> ScheduleFields:
    """Every field checked, in the order a person reads them; nothing is written."""
    report = session.exec(select(Report).where(Report.tenant_id == tenant.id,
                                               Report.slug == report_slug)).first()
    if report is None:
        raise InvalidInput(f"The report {report_slug!r} is not one of this tenant's reports; choose "
                           f"one of them, or add the report first.")
    expr = resolve_cron(cron_expr, cadence, at)
    timezone = timezone or tenant.timezone
    cron.parse_timezone(timezone)
    chosen = parse_formats(formats)
    recipients = parse_recipients(emails, chats)
    chosen_channels = parse_channels(channels, recipients)
    subject = parse_subject(subject)
    typed = parse_params(report, params)
    condition = parse_send_if(report, send_if)
    spread = parse_spread(spread_seconds)
    return ScheduleFields(report=report, cron=expr, cadence=cadence or None,
                          at=at if cadence else None, timezone=timezone, formats=chosen,
                          channels=chosen_channels, recipients=recipients, subject=subject,
                          params=typed, send_if=condition, spread_seconds=spread)


def parse_send_if(report: Report, send_if: str | None) -> str | None:
    """A schedule's own send_if: always, rows (the report's CSV query returned rows), or
    blank to follow the report's."""
    if send_if is None or not send_if.strip() or send_if.strip() == "report":
        return None
    word = send_if.strip().lower()
    if word not in SEND_IF_WORDS:
        raise InvalidInput(f"send_if {send_if!r} is not one herald knows; use always, rows, or leave "
                           f"it empty to follow the report's.")
    if word == "rows" and report.parsed().csv is None:
        raise InvalidInput(f"send_if rows waits for rows from the CSV query, and report "
                           f"{report.slug!r} has none; use always, or give the report send_if itself.")
    return word
