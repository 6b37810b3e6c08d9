"""Timer schedules as the Functions host reads them: NCRONTAB, six fields with seconds first (five fields mean
second 0), the grammar of NCrontab (`*`, values, ranges, steps, lists, month and day names).

The host refuses a schedule it cannot parse by not starting the timer; the app checks it when the host indexes
it instead, so a bad value fails start-up naming its setting. croniter parses and computes the occurrences
(the local host fires timers with it); it accepts more than NCRONTAB does (`L`, `W`, `#`, `?`, `H`, a seventh
field), so the grammar is narrowed here first.
"""

from __future__ import annotations

import re
from datetime import datetime

from croniter import croniter

# What NCrontab accepts in a field: digits, names (JAN, MON...), and the operators * , - /
_FIELD = re.compile(r"^[0-9A-Za-z*,\-/]+$")
_NOT_NCRONTAB = re.compile(r"(?<![A-Za-z])[LWH?#](?![A-Za-z])|[?#]")


def normalized(expression: str) -> str:
    """The schedule as six fields, or `ValueError` saying what NCRONTAB refuses in it."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"{expression!r} has {len(fields)} fields; NCRONTAB takes six (seconds first) or five")
    if len(fields) == 5:
        fields.insert(0, "0")
    for field in fields:
        if not _FIELD.match(field) or _NOT_NCRONTAB.search(field):
            raise ValueError(f"{expression!r}: field {field!r} is not NCRONTAB (*, values, ranges, steps, lists)")
    text = " ".join(fields)
    if not croniter.is_valid(text, second_at_beginning=True):
        raise ValueError(f"{expression!r} is not a valid NCRONTAB schedule (a value out of range?)")
    return text


def next_after(expression: str, moment: datetime) -> datetime:
    """The schedule's first occurrence after `moment` (same time zone as `moment`; the host's is UTC)."""
    return croniter(normalized(expression), moment, second_at_beginning=True).get_next(datetime)


def longest_interval_s(expression: str, start: datetime) -> float:
    """The longest wait between two occurrences over the day after `start`: what bounds how late a run comes."""
    it = croniter(normalized(expression), start, second_at_beginning=True)
    previous = it.get_next(datetime)
    longest = 0.0
    end = previous.timestamp() + 86_400
    while True:
        current = it.get_next(datetime)
        longest = max(longest, (current - previous).total_seconds())
        if current.timestamp() > end:
            return longest
        previous = current
