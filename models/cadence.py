"""A schedule's timing as a person enters it: a cron expression, or a cadence at a time of
day; checked for expressions that never fire (30 February) or skip short months.

Pure: no I/O. Messages name the fields (cron, cadence, time), not CLI flags.
"""

from __future__ import annotations

from croniter import croniter

from models import cron
from models.errors import InvalidInput

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
# The most days each month can have (February: in a leap year).
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def resolve_cron(expr: str | None, cadence: str | None, at: str | None) -> str:
    """The effective cron from either `cron` or `cadence` with `time` (HH:MM)."""
    if expr and cadence:
        raise InvalidInput("Both cron and cadence are given; keep one of them and clear the other.")
    if cadence:
        try:
            cron.Cadence(cadence)
        except ValueError:
            raise InvalidInput(f"Unknown cadence {cadence!r}; use daily, weekly or monthly.") from None
        if not at:
            raise InvalidInput(f"The {cadence} cadence needs a time; set at to HH:MM, e.g. 09:00.")
        try:
            cron.parse_hhmm(at)
        except InvalidInput:
            raise InvalidInput(f"at {at!r} is not a time of day; write it as HH:MM, e.g. 09:30.") from None
        return cron.cadence_to_cron(cadence, at)
    if at:
        raise InvalidInput("at goes with a cadence (daily, weekly or monthly); with a cron "
                           "expression put the time in the expression and clear at.")
    if not expr:
        raise InvalidInput("A schedule needs cron or cadence; set cron to an expression such as "
                           "'30 9 * * 1-5', or cadence to daily, weekly or monthly with at.")
    expr = cron.validate_cron(expr)
    check_occurs(expr)
    return expr


def short_month_days(expr: str) -> list[int]:
    """The days of month (29–31) the expression names that some of its months lack.

    Empty when the day field is every day or the weekday field also restricts (cron then
    fires on either), and for macros.
    """
    days, months = _days_and_months(expr)
    return sorted(d for d in days if d >= 29 and any(MONTH_DAYS[m - 1] < d or m == 2 for m in months))


def check_occurs(expr: str) -> None:
    """`InvalidInput` when the expression names only days its months never have (30 February)."""
    days, months = _days_and_months(expr)
    if days and not any(d <= MONTH_DAYS[m - 1] for d in days for m in months):
        named = " or ".join(MONTH_NAMES[m - 1] for m in months)
        has = "that month has" if len(months) == 1 else "those months have"
        raise InvalidInput(f"cron {expr!r} never fires, since day {days[0]} never occurs in {named}; "
                           f"choose a day {has}.")


def _days_and_months(expr: str) -> tuple[list[int], list[int]]:
    """The numeric days of month and the months of a day-restricted expression, else ([], [])."""
    if expr.startswith("@"):
        return [], []
    fields = croniter.expand(expr)[0]
    days, months, weekdays = fields[2], fields[3], fields[4]
    if days == ["*"] or weekdays != ["*"] or not all(isinstance(d, int) for d in days):
        return [], []
    return list(days), list(range(1, 13)) if months == ["*"] else [int(m) for m in months]
