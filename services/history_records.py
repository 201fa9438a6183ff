"""The records `services.history` takes and returns: plain data, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple


@dataclass(frozen=True)
class RunFilters:
    """What the history page filters on; None (or empty) leaves a filter out.

    `start` (inclusive) and `end` (exclusive) bound the slot; `kind` is scheduled (by the
    cron), manual (send now) or test (send a test to…); `recipient` matches part of an
    address or chat id, case-insensitively."""

    schedule_id: int | None = None
    report: str | None = None
    status: str | None = None
    channel: str | None = None
    recipient: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    kind: str | None = None


class RunCursor(NamedTuple):
    """Where the next page starts: after the run with this slot and id."""

    scheduled_for: datetime
    id: int


class RunRow(NamedTuple):
    """One row of the history table."""

    id: int
    schedule_id: int
    report_title: str
    scheduled_for: datetime
    status: str
    manual: bool
    test: bool
    attempts: int
    error: str | None         # its first line
    sent: int
    failed: int
    pending: int


class RunPage(NamedTuple):
    rows: tuple[RunRow, ...]
    next_cursor: RunCursor | None   # None on the last page


class DayOutcome(NamedTuple):
    """How many of the filtered runs of one local day (the tenant's timezone) ended in `status`."""

    day: date
    status: str
    count: int


@dataclass(frozen=True)
class DeliveryStory:
    channel: str
    recipient: str
    status: str
    attempts: int
    duration_ms: int | None
    message_id: str | None
    error: str | None
    unsubscribed_at: datetime | None = None   # the recipient left the schedule (since)


@dataclass(frozen=True)
class DocumentStory:
    kind: str
    filename: str
    media_type: str
    size: int
    expires_at: datetime | None
    expired: str | None        # e.g. "expired on 2026-03-09", once past retention


@dataclass(frozen=True)
class RunStory:
    """Everything known about one run, for its detail view."""

    id: int
    schedule_id: int
    report_title: str
    scheduled_for: datetime
    status: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: str | None
    manual: bool
    test: bool
    requested_by: str | None
    deliveries: tuple[DeliveryStory, ...]
    documents: tuple[DocumentStory, ...]


@dataclass(frozen=True)
class DocumentContent:
    """One retained document of a run, read for a download."""

    filename: str
    media_type: str
    content: bytes


class FilterChoices(NamedTuple):
    """What the history filters offer: (schedule id, label) and (report slug, title)."""

    schedules: tuple[tuple[int, str], ...]
    reports: tuple[tuple[str, str], ...]
