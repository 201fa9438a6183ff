"""Helpers of the Health page (`admin/health/page.py`): the page's clock and the plain-data
shaping it shows (the last tick, the queues, the failure rates, the render browsers, the
agenda's chart and busiest minutes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd

from admin.format import both_zones, duration_text
from models import db
from models.health import RenderBrowserStatus
from services.agenda import Agenda
from services.health import ChannelFailures, HealthReport, QueueDepth

REFRESH = timedelta(seconds=30)   # the page body reruns itself this often
AGENDA_TTL_SECONDS = 60           # the agenda is counted again at most once a minute
LOCAL_CHROMIUM_TTL_SECONDS = 300  # looking for a Chromium executable starts Playwright's driver
UNKNOWN = "unknown"


def now() -> datetime:
    """The page's clock (aware UTC). Tests replace this function to pin "now"."""
    return db.utcnow()


# --- the figures -------------------------------------------------------------------------------

def tick_facts(report: HealthReport, zone: ZoneInfo) -> list[tuple[str, str]]:
    """(label, value) of the last tick: when, how long ago, how long it took, on which host."""
    if report.last_tick_at is None:
        return [("Last tick", "never")]
    ago = timedelta(seconds=report.last_tick_ago_seconds)
    return [("Last tick", f"{duration_text(ago)} ago" if ago >= timedelta(0) else "just now"),
            ("At", both_zones(report.last_tick_at, zone)),
            ("Took", f"{report.last_tick_duration_ms} ms"),
            ("Host", report.last_tick_host or UNKNOWN)]


def queues_table(queues: dict[str, QueueDepth]) -> pd.DataFrame:
    return pd.DataFrame([{"Queue": name, "Ready": d.ready, "Delayed": d.delayed, "Dead": d.dead}
                         for name, d in queues.items()], columns=["Queue", "Ready", "Delayed", "Dead"])


def failures_table(failures: Sequence[ChannelFailures]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"Channel": f.channel, "Sent": f.sent, "Failed": f.failed, "Pending": f.pending,
          "Failure rate": "—" if f.failure_rate is None else f"{f.failure_rate:.0%}"}
         for f in failures],
        columns=["Channel", "Sent", "Failed", "Pending", "Failure rate"])


def browsers_table(browsers: Sequence[RenderBrowserStatus], zone: ZoneInfo) -> pd.DataFrame:
    return pd.DataFrame(
        [{"Host": b.host, "Process": b.pid, "Chromium": b.version or "—",
          "Status": "running" if b.ok else f"did not start: {b.error}",
          "Since": both_zones(b.at, zone), "Last seen": both_zones(b.seen_at, zone)}
         for b in browsers],
        columns=["Host", "Process", "Chromium", "Status", "Since", "Last seen"])


# --- the agenda --------------------------------------------------------------------------------

def agenda_frame(agenda: Agenda, zone: ZoneInfo) -> pd.DataFrame:
    """One row per minute of the window (zeros included), in the tenant's zone and in UTC.

    `Minute` is the local wall time written as if it were UTC, so the chart (which would
    otherwise use the browser's zone) shows the tenant's clock.
    """
    first = agenda.start.replace(second=0, microsecond=0)
    minutes = int((agenda.end - first) / timedelta(minutes=1))
    rows = []
    for i in range(minutes):
        minute = first + timedelta(minutes=i)
        local = minute.astimezone(zone)
        rows.append({"Minute": f"{local:%Y-%m-%dT%H:%M}Z", "Local": f"{local:%a %H:%M} {local.tzname()}",
                     "UTC": f"{minute:%a %H:%M} UTC", "Runs": agenda.per_minute.get(minute, 0)})
    return pd.DataFrame(rows, columns=["Minute", "Local", "UTC", "Runs"])


def agenda_chart(agenda: Agenda, zone: ZoneInfo) -> alt.Chart:
    """Runs due per minute over the next 24 hours, on the tenant's clock."""
    return alt.Chart(agenda_frame(agenda, zone)).mark_bar().encode(
        x=alt.X("Minute:T", title=f"Time ({zone.key})", scale=alt.Scale(type="utc"),
                axis=alt.Axis(format="%a %H:%M")),
        y=alt.Y("Runs:Q", title="Runs due", axis=alt.Axis(tickMinStep=1, format="d")),
        tooltip=["Local:N", "UTC:N", "Runs:Q"])


def busiest_table(agenda: Agenda, zone: ZoneInfo) -> pd.DataFrame:
    local = f"Time ({zone.key})"
    return pd.DataFrame(
        [{local: f"{m.astimezone(zone):%a %d %b %H:%M} {m.astimezone(zone).tzname()}",
          "UTC": f"{m:%a %d %b %H:%M} UTC", "Runs": runs} for m, runs in agenda.busiest],
        columns=[local, "UTC", "Runs"])


def agenda_caption(agenda: Agenda) -> str:
    text = f"{agenda.total} runs due from {agenda.schedules} schedules (all tenants)."
    if agenda.invalid:
        text += (f" {agenda.invalid} schedules are left out: their cron or timezone no longer "
                 "parses (each is flagged on its schedule).")
    return text
