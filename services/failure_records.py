"""The records `services.failures` returns: plain data, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from services.runs import ResendResult


class ScheduleRef(NamedTuple):
    """A schedule behind a group of failures, as the page names it."""

    id: int
    report_title: str
    paused: bool
    deleted: bool


@dataclass(frozen=True)
class FailureGroup:
    """Failed deliveries of one channel that share a cause: their errors are the same once
    the recipient's address and the numbers of ids are taken out.

    `key` names the group in the actions (stable while its cause is); `example` is one of its
    errors as stored; `recipients` are the first few (by address) of `recipient_count`;
    `open_runs` is how many of its runs are still partial or failed (what Resend failed sends)."""

    key: str
    channel: str
    cause: str
    count: int
    last_seen: datetime
    example: str
    schedules: tuple[ScheduleRef, ...]
    recipients: tuple[str, ...]
    recipient_count: int
    open_runs: int

    @property
    def more_recipients(self) -> int:
        return self.recipient_count - len(self.recipients)


class PauseResult(NamedTuple):
    """What pausing a group's schedules did: paused now, already paused, deleted (left alone)."""

    paused: tuple[int, ...]
    already_paused: tuple[int, ...]
    deleted: tuple[int, ...]


class RunResend(NamedTuple):
    """One run of a group sent again (`result`) or refused (`refusal`, one sentence)."""

    run_id: int
    result: ResendResult | None
    refusal: str | None
