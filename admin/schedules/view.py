"""Helpers of the Schedules page (`admin/schedules/page.py`): the page's clock, the session-state
keys, and the plain-data shaping the page shows (the table, its filters and pages, the fire times,
the history, the form's starting values and what it sends to `save_schedule`).

Nothing here touches the database; the page passes in what the data functions returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pandas as pd

from admin.format import viewer_zone, when
from admin.schedules.cron_helper import CronPreview
from models import db
from models.errors import InvalidInput
from services.runs import SentRun
from services.schedule_form import ParamField, ScheduleForm
from services.schedule_table import NOT_RUN, PAGE_SIZE, ScheduleFilters, ScheduleRow
from services.schedules import ScheduleValues

# Session-state keys the page keeps between runs (widget keys are spelled out in the page).
FORM = "sched_form"  # while the form is open: {"id": schedule id or None (new), "tenant": id,
                     #                            "initial": {widget key: starting value}}
FLASH = "sched_flash"           # (kind, sentence) to show once, after the action's rerun
CONFIRM_DELETE = "sched_confirm_delete"  # the schedule id whose deletion awaits confirmation
TABLE_IDS = "sched_table_ids"   # the schedule ids in the order the table last showed them
TABLE_GRID = "sched_table_grid"  # (generation, selection_default) of the grid the table is in
PAGER = "sched_pager"           # {"filters": ScheduleFilters, "offset": first row shown}
# Widget keys of the page control (tests use them).
PREVIOUS, NEXT, FIRST = "schedules_previous", "schedules_next", "schedules_first"
ROWS_A_PAGE = PAGE_SIZE  # rows a page of the table shows (`schedule_page`'s page)

CADENCES = {"daily": "Daily", "weekly": "Weekly (Mondays)", "monthly": "Monthly (the 1st)"}
TIMINGS = {"cadence": "Cadence preset", "cron": "Cron expression"}
FORMATS = ("pdf", "csv", "xlsx")
CHANNELS = ("email", "telegram")
STATUSES = ("any", "success", "partial", "failed", "skipped", "missed", "invalid", NOT_RUN)
SORTS = {"Id": "id", "Next fire": "next_run", "Report": "report", "Last status": "last_status"}
PLACEHOLDERS = "{title} {date} {period} {tenant}"
REPORT_SEND_IF = "report"  # the form's choice for "as the report says"
SEND_IF_CHOICES = {REPORT_SEND_IF: "As the report says", "always": "Always",
                   "rows": "Only when the CSV query returns rows"}


def now() -> datetime:
    """The page's clock (aware UTC). Tests replace this function to pin "now"."""
    return db.utcnow()


def preview_start(day: date | None, current: datetime) -> datetime:
    """When the helper's fire times start: now for today (or no day), else that day's start (UTC)."""
    if day is None or day == current.date():
        return current
    return datetime.combine(day, time(0), tzinfo=UTC)


# --- the table ---------------------------------------------------------------------------------

def schedule_filters(text: str | None, status: str, order: str, show_paused: bool) -> ScheduleFilters:
    """The filter widgets' values as `schedule_page` takes them ("any" status: none)."""
    return ScheduleFilters(text=(text or "").strip(), status=None if status == "any" else status,
                           show_paused=show_paused, order=SORTS[order])


def page_offset(state: dict[str, Any], filters: ScheduleFilters) -> int:
    """Where the page shown starts; other filters start again from the first page."""
    pager = state.get(PAGER)
    if pager is None or pager["filters"] != filters:
        pager = state[PAGER] = {"filters": filters, "offset": 0}
    return pager["offset"]


def turn_page(state: dict[str, Any], offset: int) -> None:
    """Show the page that starts at `offset` on the next run."""
    state[PAGER]["offset"] = max(offset, 0)


def page_text(offset: int, shown: int, total: int, filtered: bool) -> str:
    """What the page control says, e.g. "Schedules 1–100 of 10,000"."""
    return (f"Schedules {offset + 1:,}–{offset + shown:,} of {total:,}"
            + (" that match the filters" if filtered else ""))


# The "Last 10" strip: one mark per outcome, oldest first; anything else is "?" (a run that was
# under way when migration 0016 first filled the strips from the runs, until it ends).
# Shapes, not colour emoji: they read the same in every font (DejaVu has them all), in colour
# or not, where a colour emoji font is missing and emoji show as boxes or look alike.
OUTCOME_MARKS = {"success": "●", "partial": "◐", "failed": "✕", "skipped": "○", "missed": "–"}
OTHER_MARK = "?"
STRIP_HELP = ("The last ten outcomes (test sends aside), oldest first: ● success · ◐ partial · "
              "✕ failed · ○ skipped (send_if not met) · – missed · ? other.")
STRIP_LEGEND = (f"Last 10: {STRIP_HELP} "
                "⚠ marks a schedule that is failing, flagged invalid or paused by herald.")


def strip(outcomes: Sequence[str]) -> str:
    """The last runs' outcomes as marks, e.g. '●●✕✕✕'."""
    return "".join(OUTCOME_MARKS.get(o, OTHER_MARK) for o in outcomes)


def next_fire(row: ScheduleRow) -> str:
    """When the schedule fires next, in its zone: "paused" while paused, "—" when nothing is
    planned (its cron or zone no longer plans; the tick flags it)."""
    return "paused" if row.paused else when(row.next_run_local) or "—"


def last_fired(row: ScheduleRow) -> str:
    """The newest run's slot in the schedule's zone, or "never"."""
    return when(row.last_run_local) or "never"


def needs_attention(row: ScheduleRow) -> bool:
    """Failing, flagged (a cron or timezone that no longer plans) or paused by herald."""
    return row.last_status in ("failed", "invalid") or row.paused_reason is not None


def table(rows: Sequence[ScheduleRow]) -> pd.DataFrame:
    """The schedules table, one row per schedule, in the order given."""
    return pd.DataFrame(
        [{"⚠": "⚠" if needs_attention(r) else "", "Id": r.id, "Report": r.report_title,
          "Schedule": r.description or f"{r.cron} (no longer valid)",
          "Timezone": r.timezone, "Next fire": next_fire(r),
          "Last fired": last_fired(r), "Last status": r.last_status or NOT_RUN,
          "Last 10": strip(r.outcomes), "Last error": r.last_error or "",
          "Recipients": r.recipients_text, "Formats": ", ".join(r.formats), "Paused": r.paused}
         for r in rows],
        columns=["⚠", "Id", "Report", "Schedule", "Timezone", "Next fire", "Last fired",
                 "Last status", "Last 10", "Last error", "Recipients", "Formats", "Paused"])


def highlighted(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    """The table with the rows that need attention tinted red."""
    tint = "background-color: rgba(255, 75, 75, 0.12)"
    return frame.style.apply(lambda row: [tint if row["⚠"] else ""] * len(row), axis=1)


def paused_by_herald(row: ScheduleRow) -> str:
    """What the picked schedule's warning says, e.g. 'Paused automatically after 3 failed runs
    in a row; the last error: …. Paused Mon 02 Mar 2026 10:00 CET.'"""
    if row.paused_at is None:
        return row.paused_reason or ""
    return f"{row.paused_reason} Paused {when(row.paused_at.astimezone(viewer_zone(row.timezone)))}."


class Grid(NamedTuple):
    """The widget key and starting selection of the grid that shows the table."""

    key: str
    default: dict[str, Any] | None


def table_grid(state: Mapping[str, Any], selected: int | None, shown_ids: Sequence[int]) -> Grid:
    """The grid for this run. A grid keeps the row clicked in it, by position; when the picked
    schedule changed elsewhere (the schedule list, the URL, a save, a delete) or the rows moved
    under the highlighted one, a fresh grid (the next key) starts with the picked row selected.
    `state` is the session state: the grid's own selection and `TABLE_IDS` of the last run."""
    wanted = selected if selected in shown_ids else None
    default = {"selection": {"rows": [list(shown_ids).index(wanted)]}} if wanted is not None else None
    if TABLE_GRID not in state:
        state[TABLE_GRID] = (0, default)
        return Grid("schedules_grid_0", default)
    generation, start = state[TABLE_GRID]
    key = f"schedules_grid_{generation}"
    previous = state.get(TABLE_IDS) or []
    rows = ((state.get(key) or {}).get("selection") or {}).get("rows") or []
    highlighted = previous[rows[0]] if rows and rows[0] < len(previous) else None
    if highlighted != wanted or (wanted is not None and list(previous) != list(shown_ids)):
        generation, start = generation + 1, default
        state[TABLE_GRID] = (generation, start)
        key = f"schedules_grid_{generation}"
    return Grid(key, start)


def label(row: ScheduleRow) -> str:
    """How the schedule picker names a schedule."""
    return f"#{row.id} {row.report_title}: {row.description or row.cron} ({row.timezone})"


# --- the cron helper ---------------------------------------------------------------------------

def fire_times(preview: CronPreview) -> pd.DataFrame:
    """The next fires as three columns: the schedule's zone, the viewer's, and UTC."""
    return pd.DataFrame(
        [{f"Schedule ({preview.timezone})": when(f.local),
          f"You ({preview.viewer_timezone})": when(f.viewer),
          "UTC": f"{f.utc:%a %d %b %Y %H:%M} UTC"} for f in preview.fires])


def split_notes(preview: CronPreview) -> tuple[list[str], list[str]]:
    """(DST notes, other warnings such as days 29–31) of a preview."""
    dst = list(dict.fromkeys(f.note for f in preview.fires if f.note))
    return dst, [n for n in preview.notes if n not in dst]


# --- the history -------------------------------------------------------------------------------

def runs_table(runs: Sequence[Mapping[str, Any]], zone: ZoneInfo) -> pd.DataFrame:
    """The runs, newest first: slot in the schedule's zone, status, error, deliveries, test."""
    def slot(iso: str | None) -> str | None:
        return when(datetime.fromisoformat(iso).astimezone(zone)) if iso else None

    return pd.DataFrame(
        [{"Run": r["id"], "Slot": slot(r["scheduled_for"]), "Status": r["status"],
          "Error": r["error"] or "", "Deliveries": len(r["deliveries"]),
          "Sent": sum(d["status"] == "sent" for d in r["deliveries"]),
          "Test": "test" if r["test"] else "",
          "By": r["requested_by"] or ("manual" if r["manual"] else "tick")} for r in runs],
        columns=["Run", "Slot", "Status", "Error", "Deliveries", "Sent", "Test", "By"])


# --- the form ----------------------------------------------------------------------------------

def param_key(report: str | None, name: str) -> str:
    return f"form_param.{report}.{name}"


def param_start(param: ParamField) -> Any:
    """A parameter's value as its widget holds it (a number box needs an int or a float)."""
    value = param.value
    if param.kind == "bool":
        return bool(value)
    if param.kind == "int":
        return int(value)
    if param.kind == "float":
        return float(value)
    return "" if value is None else str(value)


def form_start(form: ScheduleForm) -> dict[str, Any]:
    """The form's widgets' starting values (their keys to values)."""
    v = form.values
    return {
        "form_report": v.report, "form_timing": "cron" if v.cron else "cadence",
        "form_cadence": v.cadence or "daily", "form_time": v.time or "09:00",
        "form_cron": v.cron or "", "form_timezone": v.timezone or form.tenant_timezone,
        "form_formats": [f for f in v.formats if f in FORMATS],
        "form_channels": [c for c in v.channels if c in CHANNELS],
        "form_emails": "\n".join(v.emails), "form_chats": "\n".join(v.chats),
        "form_subject": v.subject or "", "form_paused": v.paused,
        "form_send_if": v.send_if or REPORT_SEND_IF,
        "form_spread": "" if v.spread_seconds is None else str(v.spread_seconds),
        **{param_key(v.report, p.name): param_start(p) for p in form.params},
    }


def lines(text: str | None) -> tuple[str, ...]:
    """One entry per line (commas too), blanks dropped."""
    return tuple(part.strip() for line in (text or "").splitlines() for part in line.split(",")
                 if part.strip())


def form_values(state: Mapping[str, Any], params: Sequence[ParamField]) -> ScheduleValues:
    """What the form's widgets hold, as `save_schedule` takes it."""
    report = state.get("form_report")
    cadence = state.get("form_timing") == "cadence"
    values = {}
    for p in params:
        value = state.get(param_key(report, p.name))
        if p.kind == "any" and isinstance(value, str) and not value.strip():
            value = None  # the default
        values[p.name] = value
    return ScheduleValues(
        report=report,
        cadence=state.get("form_cadence") if cadence else None,
        time=((state.get("form_time") or "").strip() or None) if cadence else None,
        cron=None if cadence else (state.get("form_cron") or "").strip() or None,
        timezone=state.get("form_timezone"),
        formats=tuple(state.get("form_formats") or ()), channels=tuple(state.get("form_channels") or ()),
        emails=lines(state.get("form_emails")), chats=lines(state.get("form_chats")),
        subject=(state.get("form_subject") or "").strip() or None,
        params=values, paused=bool(state.get("form_paused")),
        send_if=None if state.get("form_send_if", REPORT_SEND_IF) == REPORT_SEND_IF else state["form_send_if"],
        spread_seconds=spread_value(state.get("form_spread")))


def spread_value(text: str | None) -> int | None:
    """The spread field: empty follows the tenant; otherwise whole seconds (checked on save)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInput(f"The spread {text!r} is not a whole number of seconds; give e.g. 300, "
                           f"or leave it empty to follow the tenant.") from None


# --- what a send says --------------------------------------------------------------------------

def sent_message(sent: SentRun, error: str | None) -> tuple[str, str]:
    """(kind, sentence) for the run a send created; in the embedded mode it has already ended."""
    run = f"Test run {sent.run_id}" if sent.test else f"Run {sent.run_id}"
    test = (" It goes only to the addresses typed; a test run does not change the schedule's status."
            if sent.test else "")
    if sent.status == "queued":
        return "info", f"{run} queued.{test}"
    kind = {"success": "success", "partial": "warning"}.get(sent.status, "error")
    ended = f"{run} queued and run in this process (no worker queue is configured): {sent.status}"
    return kind, f"{ended}{': ' + error.rstrip('.') if error else ''}.{test}"
