"""Helpers of the History page (`admin/history/page.py`): the page's clock, its session-state
and widget keys, and the plain-data shaping it shows (the filters as `RunFilters`, the runs
table and its pages, the outcomes chart, a run's story, what a resend says).

Nothing here touches the database; the pages pass in what the data functions returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd

from admin.format import both_zones, duration_text, size_text, when
from models import db
from services.history_records import (
    DayOutcome,
    DocumentStory,
    RunCursor,
    RunFilters,
    RunRow,
    RunStory,
)
from services.runs import ResendResult

# Session-state keys the pages keep between runs.
FLASH = "history_flash"        # [(kind, sentence), ...] to show once, after an action's rerun
PAGER = "history_pager"        # {"filters": RunFilters, "starts": [None, cursor, ...]}
TABLE_IDS = "history_table_ids"  # the run ids in the order the table last showed them
GRID = "history_grid"          # a number bumped to give the table a fresh (unselected) grid

# Widget keys (tests and the browser test use them).
SCHEDULE, REPORT, STATUS = "history_schedule", "history_report", "history_status"
CHANNEL, RECIPIENT, DAYS, KIND = "history_channel", "history_recipient", "history_days", "history_kind"
NEWER, OLDER, FIRST = "history_newer", "history_older", "history_first"
CHART, TABLE, STORY = "history_chart", "history_table", "history_story"
RESEND, CLOSE = "history_resend", "history_close"

PAGE_SIZE = 50
DEFAULT_DAYS = 30              # the date range the page opens with, up to today (tenant's zone)
# Fixed colours, so a status reads the same on every chart whatever statuses it holds.
STATUS_COLOURS = {"success": "#2e9e44", "partial": "#f0a202", "failed": "#d64545",
                  "skipped": "#5b8def", "missed": "#9e9e9e", "queued": "#7aa6d8", "running": "#3a6fb0"}
ANY = None


def now() -> datetime:
    """The pages' clock (aware UTC). Tests replace this function to pin "now"."""
    return db.utcnow()


# --- the filters and the pages of the table ----------------------------------------------------

def default_days(current: datetime, zone: ZoneInfo) -> tuple[date, date]:
    """The last `DEFAULT_DAYS` days up to today, in the tenant's zone."""
    today = current.astimezone(zone).date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def day_bounds(days: Sequence[date], zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """The UTC instants a range of local days covers: from the first day's start to the end of
    the last (exclusive). While a range is being picked it holds one day: from then on."""
    def start(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    days = list(days)
    if not days:
        return None, None
    if len(days) == 1:
        return start(days[0]), None
    return start(days[0]), start(days[-1] + timedelta(days=1))


def run_filters(values: Mapping[str, Any], zone: ZoneInfo) -> RunFilters:
    """The filter widgets' values (by widget key) as `list_runs` takes them."""
    start, end = day_bounds(values.get(DAYS) or (), zone)
    return RunFilters(schedule_id=values.get(SCHEDULE), report=values.get(REPORT),
                      status=values.get(STATUS), channel=values.get(CHANNEL),
                      recipient=(values.get(RECIPIENT) or "").strip() or None,
                      start=start, end=end, kind=values.get(KIND))


def page_starts(state: dict[str, Any], filters: RunFilters) -> list[RunCursor | None]:
    """Where each page seen so far starts (None: the newest run); the last is the page shown.
    Other filters start again from the first page."""
    pager = state.get(PAGER)
    if pager is None or pager["filters"] != filters:
        pager = state[PAGER] = {"filters": filters, "starts": [None]}
    return pager["starts"]


def grid_key(starts: Sequence[RunCursor | None], filters: RunFilters, generation: int) -> str:
    """The table's widget key: another page, filter or a closed story gives a fresh grid, so a
    row highlighted on one page is not taken for a row of the next."""
    return f"history_grid_{generation}_{len(starts)}_{abs(hash((starts[-1], filters))) % 10**8}"


def kind_of(manual: bool, test: bool) -> str:
    return "test" if test else "manual" if manual else "scheduled"


def runs_table(rows: Sequence[RunRow], zone: ZoneInfo) -> pd.DataFrame:
    """The runs of one page, newest first; the slot in the tenant's zone."""
    return pd.DataFrame(
        [{"Run": r.id, "Slot": when(r.scheduled_for.astimezone(zone)), "Report": r.report_title,
          "Schedule": r.schedule_id, "Kind": kind_of(r.manual, r.test), "Status": r.status,
          "Sent": r.sent, "Failed": r.failed, "Pending": r.pending, "Attempts": r.attempts,
          "Error or reason": r.error or ""} for r in rows],
        columns=["Run", "Slot", "Report", "Schedule", "Kind", "Status", "Sent", "Failed",
                 "Pending", "Attempts", "Error or reason"])


def outcomes_chart(outcomes: Sequence[DayOutcome], days: Sequence[date] | None = None) -> alt.Chart:
    """Runs per local day, stacked by status in the fixed status colours, over the chosen
    `days` (first, last) when there are two: a day without runs is a gap, not a wide bar."""
    frame = pd.DataFrame([{"Day": o.day.isoformat(), "Status": o.status, "Runs": o.count}
                          for o in outcomes], columns=["Day", "Status", "Runs"])
    statuses = list(STATUS_COLOURS)
    frame["Order"] = frame["Status"].map(statuses.index)
    scale = alt.Undefined
    if days is not None and len(days) == 2:
        scale = alt.Scale(domain=[days[0].isoformat(), (days[1] + timedelta(days=1)).isoformat()])
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("utcyearmonthdate(Day):T", title=None, scale=scale),
        y=alt.Y("sum(Runs):Q", title="Runs", stack=True,
                axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("Status:N", sort=statuses,
                        scale=alt.Scale(domain=statuses, range=list(STATUS_COLOURS.values()))),
        order=alt.Order("Order:Q"),
        tooltip=[alt.Tooltip("utcyearmonthdate(Day):T", title="Day"), "Status:N",
                 alt.Tooltip("sum(Runs):Q", title="Runs")])


# --- a run's story -----------------------------------------------------------------------------

def story_facts(story: RunStory, zone: ZoneInfo) -> list[tuple[str, str]]:
    """(label, value) of the run's facts, in the order the story shows them."""
    return [("Status", story.status), ("Kind", kind_of(story.manual, story.test)),
            ("Slot", both_zones(story.scheduled_for, zone)),
            ("Queued", both_zones(story.queued_at, zone)),
            ("Started", both_zones(story.started_at, zone)),
            ("Finished", both_zones(story.finished_at, zone)),
            ("Attempts", str(story.attempts)),
            ("Requested by", story.requested_by or ("the schedule's cron" if not story.manual
                                                    else "—"))]


def deliveries_table(story: RunStory, zone: ZoneInfo) -> pd.DataFrame:
    """One row per delivery; an "Unsubscribed" column, when a recipient has left the schedule
    since (its unsubscribe link), says when."""
    columns = ["Channel", "Recipient", "Status", "Attempts", "Duration", "Message-ID", "Error"]
    if any(d.unsubscribed_at for d in story.deliveries):
        columns.append("Unsubscribed")
    return pd.DataFrame(
        [{"Channel": d.channel, "Recipient": d.recipient, "Status": d.status,
          "Attempts": d.attempts, "Duration": duration_text(None if d.duration_ms is None else timedelta(milliseconds=d.duration_ms)),
          "Message-ID": d.message_id or "", "Error": d.error or "",
          "Unsubscribed": when(d.unsubscribed_at.astimezone(zone)) if d.unsubscribed_at else ""}
         for d in story.deliveries], columns=columns)


def document_text(document: DocumentStory) -> str:
    """What the story says of a document: its size and how long it is kept, or its expiry."""
    if document.expired:
        return f"{document.filename}: {document.expired}"
    kept = f", kept until {document.expires_at:%Y-%m-%d}" if document.expires_at else ""
    return f"{document.filename}: {size_text(document.size)}{kept}"


def can_resend(story: RunStory) -> bool:
    """Only a partial or failed run has deliveries to send again."""
    return story.status in ("partial", "failed")


def recipients_text(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{recipient} ({channel})" for channel, recipient in pairs)


def resend_message(result: ResendResult) -> tuple[str, str]:
    """(kind, sentence) for a resend: who it went to again and how the run ended."""
    who = recipients_text(result.resent)
    if result.status == "queued":
        return "info", (f"Run {result.run_id}: its failed deliveries are queued to go again "
                        f"to {who}.")
    kind = {"success": "success", "partial": "warning"}.get(result.status, "error")
    return kind, f"Run {result.run_id} sent again to {who}: {result.status}."
