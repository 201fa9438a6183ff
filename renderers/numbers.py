"""One number format per report: KPIs, table cells and chart axes all go through Babel.

The report's `locale` picks the grouping and decimal symbols (62,794,765 in `en`,
62 794 765 in `fr`); axes use the same strings, so a number reads the same everywhere.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime, tzinfo
from typing import Any

from babel import Locale
from babel.dates import get_day_names, get_month_names, get_period_names
from babel.numbers import format_compact_decimal, format_decimal

from models.definition import babel_locale

COMPACT_FROM = 1_000_000   # axis labels at or above this read as 35M, below it in full
FRACTION_PATTERN = "#,##0.##"  # non-integers: at most two decimals, as the KPIs always showed
_ISO_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@functools.cache
def parse_locale(code: str) -> Locale:
    """The report's locale (checked when the report file was read)."""
    return babel_locale(code)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_number(value: int | float, locale: str = "en") -> str:
    """`value` with the locale's grouping and decimal symbols; integers in full, others to 2 decimals."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    pattern = None if isinstance(value, int) else FRACTION_PATTERN
    return format_decimal(value, format=pattern, locale=parse_locale(locale))


def format_value(value: Any, locale: str = "en") -> str:
    """A KPI as the PDF and the messages show it: numbers by locale, nothing as a dash."""
    if value is None:
        return "—"
    if is_number(value):
        return format_number(value, locale)
    return str(value)


def format_cell(value: Any, locale: str, zone: tzinfo | None) -> str:
    """A table cell: numbers by locale; an ISO instant with an offset in `zone` (the tenant's time)."""
    if is_number(value):
        return format_number(value, locale)
    if isinstance(value, str) and zone is not None and _ISO_INSTANT.match(value):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return str(value)


def format_axis_number(value: float, locale: str, compact: bool) -> str:
    """An axis tick: compact (35M) for large scales, otherwise exactly as a KPI shows it."""
    if compact and value:
        return format_compact_decimal(value, format_type="short", locale=parse_locale(locale), fraction_digits=1)
    return format_number(value, locale)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (0 included), about `count` intervals."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), math.ceil(high / step)
    return [_tidy(i * step) for i in range(first, last + 1)]


def _tidy(value: float) -> float | int:
    rounded = round(value, 10)
    return int(rounded) if float(rounded).is_integer() else rounded


def axis_labels(ticks: list[float], locale: str) -> list[str]:
    compact = max(abs(t) for t in ticks) >= COMPACT_FROM
    return [format_axis_number(t, locale, compact) for t in ticks]


def is_temporal_text(value: Any) -> bool:
    return isinstance(value, str) and bool(_ISO_DATE.match(value) or _ISO_INSTANT.match(value))


def wall_clock_ms(value: str, zone: tzinfo | None) -> float:
    """An ISO date or instant as epoch milliseconds of its wall time in `zone`, read as UTC.

    Charts draw these on a UTC scale, so the axis shows the tenant's local dates and hours.
    """
    if _ISO_DATE.match(value):
        moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
    else:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None and zone is not None:
            moment = moment.astimezone(zone)
        moment = moment.replace(tzinfo=None)
    return (moment - datetime(1970, 1, 1)).total_seconds() * 1000


@functools.cache
def vega_time_locale(locale: str) -> dict[str, Any]:
    """Vega's (d3's) time locale from Babel's names, so axis months read in the report's language."""
    where = parse_locale(locale)
    week = [6, 0, 1, 2, 3, 4, 5]  # d3 starts on Sunday, Babel on Monday

    def days(width: str) -> list[str]:
        names = get_day_names(width, context="stand-alone", locale=where)
        return [names[i] for i in week]

    def months(width: str) -> list[str]:
        names = get_month_names(width, context="stand-alone", locale=where)
        return [names[i] for i in range(1, 13)]

    periods = get_period_names(locale=where)
    return {"dateTime": "%Y-%m-%d %H:%M", "date": "%Y-%m-%d", "time": "%H:%M:%S",
            "periods": [periods.get("am", "AM"), periods.get("pm", "PM")], "days": days("wide"), "shortDays": days("abbreviated"),
            "months": months("wide"), "shortMonths": months("abbreviated")}
