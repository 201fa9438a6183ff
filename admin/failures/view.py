"""Helpers of the Failures page (`admin/failures/page.py`): its session-state and widget keys,
its windows, and what a group, a pause or a resend of a group says."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from admin.history.view import resend_message
from models import db
from services.failure_records import FailureGroup, PauseResult, RunResend

FLASH = "failures_flash"
WINDOW = "failures_window"
WINDOWS = {1: "Last 24 hours", 7: "Last 7 days", 30: "Last 30 days", 90: "Last 90 days"}
DEFAULT_WINDOW = 7


def now() -> datetime:
    """The page's clock (aware UTC). Tests replace this function to pin "now"."""
    return db.utcnow()


def group_title(group: FailureGroup) -> str:
    """E.g. 'the SMTP server refused the recipient: 550 5.1.1 <address>: user unknown × 14'."""
    return f"{group.cause} × {group.count}"


def group_recipients(group: FailureGroup) -> str:
    more = f" and {group.more_recipients} more" if group.more_recipients else ""
    return ", ".join(group.recipients) + more


def group_schedules(group: FailureGroup) -> str:
    def state(paused: bool, deleted: bool) -> str:
        return " (deleted)" if deleted else " (paused)" if paused else ""

    return ", ".join(f"#{s.id} {s.report_title}{state(s.paused, s.deleted)}"
                     for s in group.schedules) or "none"


def pausable(group: FailureGroup) -> int:
    """How many of the group's schedules a pause would stop."""
    return sum(not s.paused and not s.deleted for s in group.schedules)


def pause_message(result: PauseResult) -> tuple[str, str]:
    def ids(values: Sequence[int]) -> str:
        return ", ".join(f"#{i}" for i in values)

    left = ([f"already paused: {ids(result.already_paused)}"] if result.already_paused else []) + \
           ([f"deleted: {ids(result.deleted)}"] if result.deleted else [])
    rest = f" ({'; '.join(left)})" if left else ""
    if not result.paused:
        return "info", f"No schedule to pause{rest}."
    noun, them = ("Schedule", "it") if len(result.paused) == 1 else ("Schedules", "them")
    return "success", (f"{noun} {ids(result.paused)} paused{rest}; resume {them} on the "
                       f"Schedules page.")


def group_resend_messages(resends: Sequence[RunResend]) -> list[tuple[str, str]]:
    """One (kind, sentence) per run of the group: sent again, or why not."""
    if not resends:
        return [("info", "None of these runs is still partial or failed; nothing to send again.")]
    return [resend_message(r.result) if r.result else ("error", f"Run {r.run_id}: {r.refusal}")
            for r in resends]
