"""One-line text (what may go into an e-mail header, a file name or a title), and a length of
time as people say it."""

from __future__ import annotations

import re
from datetime import timedelta

from models.errors import InvalidInput

# C0 controls (CR, LF, TAB, ...), DEL, C1 controls (NEL, ...), and the Unicode line and
# paragraph separators: each can break a header or a line of text in two.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_RUN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
NOT_ONE_LINE = "contains a line break or control character; write it on one line"


def has_control_character(text: str) -> bool:
    """True when `text` holds a line break, a tab or another control character."""
    return _CONTROL_CHARACTER.search(text) is not None


def one_line(text: str) -> str:
    """`text` with each run of control characters replaced by one space: for text stored
    before it was validated, on its way into a header."""
    return _CONTROL_RUN.sub(" ", text)


def require_one_line(text: str | None, noun: str) -> str | None:
    """`text` unchanged, or `InvalidInput` naming `noun` when it is not a single line."""
    if text is not None and has_control_character(text):
        raise InvalidInput(f"The {noun} {NOT_ONE_LINE}.")
    return text


def duration_text(delta: timedelta | None) -> str:
    """A length of time as people say it: `850 ms`, `2.5 s`, `45 s`, `14 min`, `3 h`, `2 days`
    (empty for None: not measured)."""
    if delta is None:
        return ""
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 2 * 3600:
        return f"{whole // 60} min"
    if whole < 2 * 86400:
        return f"{whole // 3600} h"
    return f"{whole // 86400} days"
