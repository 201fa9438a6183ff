"""Spreading a herd: a schedule may run at its own second within a window after its slot.

Off by default. With a window (the schedule's `spread_seconds`, else its tenant's), a
schedule is due at slot + offset, where the offset is a hash of the schedule's id within
the window: the same second at every slot, on every host, after every edit or restart, so
a re-run lands where the first run did. The run still belongs to its slot (its
`scheduled_for`, its reporting period, its uniqueness); only the moment the tick claims it
moves. The offset in use is kept on the schedule (`spread_offset_seconds`), so
`next_run_at` minus it is always a fire time of the cron expression.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from models import cron
from models.errors import InvalidInput

if TYPE_CHECKING:
    from models.schedules import Schedule
    from models.tenancy import Tenant

MAX_SPREAD_SECONDS = 3600


def parse_spread(seconds: int | None, what: str = "spread") -> int | None:
    """A window in whole seconds, 0 (off) to an hour; None keeps the default."""
    if seconds is None:
        return None
    if not 0 <= seconds <= MAX_SPREAD_SECONDS:
        raise InvalidInput(f"The {what} is {seconds} seconds; give 0 (off) to {MAX_SPREAD_SECONDS} "
                           f"seconds.")
    return seconds


def offset_seconds(schedule_id: int, window_s: int) -> int:
    """The schedule's own second in [0, window): the same on every computation."""
    if window_s <= 0:
        return 0
    digest = hashlib.blake2b(str(schedule_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % window_s


def window(schedule: Schedule, tenant: Tenant) -> int:
    return schedule.spread_seconds if schedule.spread_seconds is not None else tenant.spread_seconds or 0


def plan_from(schedule: Schedule, tenant: Tenant, now: datetime) -> None:
    """Set the schedule's offset and its next run: the first slot whose moment (slot + offset)
    is after `now`."""
    offset = offset_seconds(schedule.id, window(schedule, tenant))
    shift = timedelta(seconds=offset)
    schedule.spread_offset_seconds = offset
    schedule.next_run_at = cron.next_fire(schedule.cron, schedule.timezone, now - shift) + shift


def respread(schedule: Schedule, tenant: Tenant) -> None:
    """Apply a changed window to a planned schedule: the same slot, at its new second."""
    offset = offset_seconds(schedule.id, window(schedule, tenant))
    if schedule.next_run_at is not None:
        schedule.next_run_at += timedelta(seconds=offset - schedule.spread_offset_seconds)
    schedule.spread_offset_seconds = offset
