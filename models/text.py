"""One-line text (what may go into an e-mail header, a file name or a title), a short excerpt
of a value for a message, and a length of time as people say it."""

from __future__ import annotations

import re
import reprlib
import unicodedata
from datetime import timedelta
from typing import Any

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


def first_invisible_character(text: str) -> str | None:
    """The first control or format character of `text` (Unicode categories Cc and Cf: the bidi
    overrides and isolates, zero-width spaces and joiners; or a lone surrogate) as people look
    it up, `U+202E`. In a file name, U+202E makes `x\u202egpj.exe` show as `xexe.jpg`."""
    for character in text:
        if _CONTROL_CHARACTER.match(character) or unicodedata.category(character) in ("Cf", "Cs"):
            return f"U+{ord(character):04X}"
    return None


def plain_file_name(name: str, extension: str) -> str:
    """`name` with no control or format characters and no path, ending in `extension` (e.g.
    `.csv`) unless it has none: another ending gets `extension` added. For a name filled in
    from stored templates and slugs, on its way into an attachment."""
    plain = one_line("".join(c for c in name if unicodedata.category(c) not in ("Cf", "Cs")))
    plain = plain.replace("/", "_").replace("\\", "_").strip(" .") or "report"
    suffix = plain.rpartition(".")[2] if "." in plain else None
    if extension and suffix is not None and f".{suffix}".lower() != extension.lower():
        plain += extension
    return plain


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 3


def excerpt(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to about `limit` characters, built without the whole repr: what a
    message may echo of a value someone sent (a report file's may repeat itself millions of
    times)."""
    shown = _SHORT.repr(value)
    return shown if len(shown) <= limit else shown[:limit - 1] + "…"


def short_text(text: str, limit: int = 40) -> str:
    """`text` on one line, cut to `limit` characters (an ellipsis marks the cut)."""
    cut = one_line(text[:limit + 1])
    return cut if len(cut) <= limit else cut[:limit - 1] + "…"


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
