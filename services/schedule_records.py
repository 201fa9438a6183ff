"""The records the schedules page's data functions return: plain data, no ORM objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class Recipient(NamedTuple):
    """Someone a schedule sends to; `fallback` when it is the tenant's, used because the
    schedule names nobody on that channel. (Named tuples: a listing makes thousands.)"""

    channel: str
    address: str
    fallback: bool = False


class ScheduleRow(NamedTuple):
    """One row of the schedules table."""

    id: int
    report_slug: str
    report_title: str
    cron: str
    description: str | None           # the cron in words; None if the stored cron no longer parses
    timezone: str
    next_run_local: datetime | None   # in the schedule's timezone; None while paused
    next_run_utc: datetime | None
    last_status: str | None
    last_error: str | None
    last_fired_at: datetime | None
    recipients: tuple[Recipient, ...]  # per channel sent on: the schedule's own, else the tenant's
    recipients_text: str               # e.g. "boss@acme.example; tenant fallback: -100123"
    formats: tuple[str, ...]
    channels: tuple[str, ...]
    subject: str | None
    paused: bool
    last_run_local: datetime | None = None  # the newest run's slot in the schedule's zone
    outcomes: tuple[str, ...] = ()          # the last 10 runs' statuses (no tests), oldest first
    paused_reason: str | None = None        # why herald paused it (its runs kept failing)
    paused_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleValues:
    """What the create/edit form holds, and what `save_schedule` takes.

    Timing is either `cadence` (daily, weekly on Mondays, monthly on the 1st) with `time`
    (HH:MM), or `cron`. `params` maps the report's parameter names to values of their
    defaults' types (text from a text box is converted: "5" for an int parameter is 5).
    """

    report: str | None
    cadence: str | None = None
    time: str | None = None
    cron: str | None = None
    timezone: str | None = None        # None: the tenant's
    formats: tuple[str, ...] = ("pdf",)
    channels: tuple[str, ...] = ()     # empty: those of the recipients given, else both
    emails: tuple[str, ...] = ()
    chats: tuple[str, ...] = ()
    subject: str | None = None         # {title}, {date} and {tenant} are filled in
    params: Mapping[str, Any] = field(default_factory=dict)
    paused: bool = False
    send_if: str | None = None         # always or rows; None follows the report's send_if
    spread_seconds: int | None = None  # None follows the tenant's spread


@dataclass(frozen=True)
class ParamField:
    """A report parameter as the form shows it."""

    name: str
    kind: str       # bool, int, float, str, or any (a null default takes any one value)
    default: Any
    value: Any      # the schedule's value, else the default


@dataclass(frozen=True)
class ReportChoice:
    """A report the schedule may send, with its parameters at their defaults."""

    slug: str
    title: str
    params: tuple[ParamField, ...]


@dataclass(frozen=True)
class ScheduleForm:
    """What the create/edit form starts from."""

    schedule_id: int | None            # None: a new schedule
    values: ScheduleValues
    params: tuple[ParamField, ...]     # the chosen report's parameters, with the values to show
    reports: tuple[ReportChoice, ...]  # the tenant's reports, by slug
    fallback: tuple[Recipient, ...]    # the tenant's recipients, used on a channel naming nobody
    fallback_text: str                 # e.g. "tenant fallback: ops@acme.example"
    tenant_timezone: str
    max_recipients: int


@dataclass(frozen=True)
class SentRun:
    """The run a send created: its id and status (final in the embedded mode, else queued)."""

    run_id: int
    schedule_id: int
    status: str
    test: bool


@dataclass(frozen=True)
class Change:
    """One recorded change: who, when, what (`changes` maps each field to [old, new])."""

    id: int
    at: datetime
    actor: str
    action: str
    changes: dict[str, list[Any]]


@dataclass(frozen=True)
class ScheduleHistory:
    """A schedule's runs (newest first, each with its deliveries) beside its changes."""

    runs: tuple[dict[str, Any], ...]
    changes: tuple[Change, ...]
