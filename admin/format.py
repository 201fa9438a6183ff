"""How the admin's pages write what they show: moments (in the schedule's, the tenant's or the
viewer's zone, and UTC), lengths of time, sizes, recorded changes, and text shown as it is.

Plain functions of plain values; every page uses these and no other spelling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from models.audit import Change
from models.text import duration_text

__all__ = ["both_zones", "change_text", "changes_table", "duration_text", "local_time", "md",
           "md_table", "shown_value", "size_text", "viewer_zone", "when"]


def when(value: datetime | None) -> str | None:
    """A moment in its own zone, e.g. 'Sun 08 Mar 2026 03:00 EDT'."""
    return None if value is None else f"{value:%a %d %b %Y %H:%M} {value.tzname()}"


def both_zones(value: datetime | None, zone: ZoneInfo) -> str:
    """A moment in `zone` and in UTC, e.g. 'Fri 10 Apr 2026 11:00 CEST (09:00 UTC)'."""
    if value is None:
        return "—"
    return f"{when(value.astimezone(zone))} ({value.astimezone(UTC):%H:%M} UTC)"


def local_time(moment: datetime, timezone: str) -> str:
    """A moment in the named zone (UTC if the name is unknown), e.g. '2026-03-08 09:00 CET'."""
    return moment.astimezone(viewer_zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def viewer_zone(name: str | None) -> ZoneInfo:
    """The zone of that name (the browser's, a schedule's), else UTC."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ValueError, KeyError, OSError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


def size_text(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1024 / 1024:.1f} MB"


def shown_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(shown_value, value)) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {shown_value(v)}" for k, v in value.items()) or "none"
    return str(value)


def change_text(change: Change) -> str:
    """What changed, e.g. 'cron: 30 2 * * * → 15 3 * * *'; a creation lists the values set."""
    parts = []
    for name, (old, new) in change.changes.items():
        if change.action == "created" and old is None:
            parts.append(f"{name}: {shown_value(new)}")
        else:
            parts.append(f"{name}: {shown_value(old)} → {shown_value(new)}")
    return "; ".join(parts)


def changes_table(changes: Sequence[Change], zone: ZoneInfo) -> pd.DataFrame:
    """Recorded changes, newest first: when (in `zone`), who, what they did and changed."""
    return pd.DataFrame(
        [{"When": when(c.at.astimezone(zone)), "Who": c.actor, "Action": c.action,
          "What": change_text(c)} for c in changes],
        columns=["When", "Who", "Action", "What"])


# What Streamlit's markdown (GitHub's, with Streamlit's directives) would turn into emphasis,
# code, links, images (`[`, `]`: no `[text](url)` or `![alt](src)`), tags, headings, tables,
# strikes or math: each is escaped with a backslash.
_MARKDOWN = re.compile(r"[\\`*_\[\]<>#|~$]")
# The bare links GitHub's markdown makes of `http://…`, `www.…` and `name@host` are found in
# the text after escapes are read, so no escape stops them: an invisible WORD JOINER does,
# after the scheme's colon, after "www" and before the "@".
_BARE_LINK = re.compile(r"(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def md(text: str) -> str:
    """`text` (a report title, a subject, a name, an address, another server's error…) shown
    as it is wherever Streamlit reads markdown: st.markdown, st.caption, st.error and the
    like, headers, and the labels of buttons, links, expanders and tables' cells. No
    emphasis, link, image, tag or math comes of it; the reader sees the same characters."""
    escaped = _MARKDOWN.sub(lambda found: "\\" + found.group(0), text)
    return _BARE_LINK.sub(WORD_JOINER, escaped)


def md_table(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each text cell `md`-escaped, for st.table (whose cells are markdown;
    st.dataframe's are not, but for link columns)."""
    return frame.apply(lambda column: column.map(lambda v: md(v) if isinstance(v, str) else v))
