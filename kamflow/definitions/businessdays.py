"""Counting a stage's days: calendar days, or business days that skip weekends and holidays.

A stage gives ``limit_days`` (calendar days: 24 hours each, from the moment the account entered)
or ``limit_business_days``. Business days are the dates, in KAMFLOW_TIMEZONE, that are neither a
Saturday, a Sunday nor a public holiday of KAMFLOW_HOLIDAYS (the ``holidays`` package). A limit of
N business days runs out at the time of day the account entered, on the Nth business day after
the day it entered: entered on a Friday at 10:00, a limit of 5 runs out on the next Friday at
10:00. An account that entered on a weekend or a holiday counts from the start (00:00) of the
next business day.

Every rung of the reminder ladder is such a moment ("entered + M days"), so three questions
answer everything the ladder, the steps and the reports ask, for either way of counting:

- ``deadline(entered_at, M)``: the moment M days after entering;
- ``elapsed(entered_at, now)``: the whole days spent in the stage, the largest M whose moment has
  come;
- ``cutoff(now, M)``: the latest entry whose moment M days on has come by ``now``. The moments
  grow with the entry, so "M days have passed" is ``stage_entered_at <= cutoff(now, M)`` in SQL:
  one range per stage, whatever the number of accounts.

``deadline(entered_at, stage, calendar)`` is the moment a stage's limit runs out.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

from kamflow import defaults
from kamflow.errors import ConfigError
from kamflow.text import quoted

if TYPE_CHECKING:
    from kamflow.definitions.spec import StageSpec

UTC_ZONE = ZoneInfo("UTC")
_ONE_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)


# --- the calendar: which dates are business days --------------------------------------------------


@dataclass(frozen=True)
class WorkCalendar:
    """Where days are reckoned (``zone``) and whose public holidays they skip (``country`` and
    ``subdivision``, as the ``holidays`` package names them; none when ``country`` is None)."""

    zone: ZoneInfo = UTC_ZONE
    country: str | None = None
    subdivision: str | None = None

    def describe(self) -> str:
        """``DE-BY``, ``US``, or ``no holidays``."""
        if self.country is None:
            return "no holidays"
        return self.country + (f"-{self.subdivision}" if self.subdivision else "")

    def _holidays(self, year: int) -> tuple[tuple[date, ...], frozenset[date]]:
        if self.country is None:
            return (), frozenset()
        return _weekday_holidays(self.country, self.subdivision, year)

    def is_business_day(self, day: date) -> bool:
        """Neither a Saturday, a Sunday nor a public holiday."""
        return day.weekday() < 5 and day not in self._holidays(day.year)[1]

    def _holidays_between(self, after: date, upto: date) -> int:
        """How many weekday holidays fall in (after, upto]."""
        if self.country is None or upto <= after:
            return 0
        found = 0
        for year in range(after.year, upto.year + 1):
            days = self._holidays(year)[0]
            found += bisect_right(days, upto) - bisect_right(days, after)
        return found

    def count(self, after: date, upto: date) -> int:
        """How many business days fall in (after, upto] (0 when ``upto`` is not later)."""
        if upto <= after:
            return 0
        weekdays = _weekdays_upto(upto) - _weekdays_upto(after)
        return weekdays - self._holidays_between(after, upto)

    def after(self, day: date, count: int) -> date:
        """The ``count``-th business day after ``day`` (``count`` >= 1)."""
        low, found = day, _shift_weekdays(day, count)
        missing = self._holidays_between(low, found)
        while missing:  # each holiday passed over is made up by one more weekday
            low, found = found, _shift_weekdays(found, missing)
            missing = self._holidays_between(low, found)
        return found

    def back(self, day: date, count: int) -> date:
        """The latest business day with at least ``count`` business days in (it, ``day``]."""
        high, found = day, _shift_weekdays(day, -count)
        missing = self._holidays_between(found, high)
        while missing:
            high, found = found, _shift_weekdays(found, -missing)
            missing = self._holidays_between(found, high)
        while not self.is_business_day(found):  # a holiday itself is passed over, not counted
            found = _shift_weekdays(found, -1)
        return found


@functools.lru_cache(maxsize=512)
def _weekday_holidays(
    country: str, subdivision: str | None, year: int
) -> tuple[tuple[date, ...], frozenset[date]]:
    """The public holidays of one year that fall on a weekday, sorted and as a set (computed once
    per country, subdivision and year)."""
    import holidays

    found = holidays.country_holidays(country, subdiv=subdivision, years=year)
    days = sorted(day for day in found if day.year == year and day.weekday() < 5)
    return tuple(days), frozenset(days)


def _weekdays_upto(day: date) -> int:
    """How many weekdays (Monday to Friday) there are from 1 January of year 1 to ``day``."""
    ordinal = day.toordinal()  # 1 January of year 1, a Monday, is 1
    return 5 * (ordinal // 7) + min(ordinal % 7, 5)


def _shift_weekdays(day: date, count: int) -> date:
    """The weekday with ``count`` more weekdays up to it than up to ``day`` (fewer when
    negative)."""
    weeks, rest = divmod(_weekdays_upto(day) + count - 1, 5)
    return date.fromordinal(7 * weeks + rest + 1)


def region(text: str) -> tuple[str, str | None]:
    """The country and subdivision a KAMFLOW_HOLIDAYS value names (``DE``, ``de-by``,
    ``US-CA``), as the holidays package spells them. Raises ConfigError naming an unknown country
    or subdivision."""
    import holidays

    country, _, part = text.strip().upper().partition("-")
    subdivision = part or None

    supported = holidays.list_supported_countries()
    source = f"{defaults.ENV_HOLIDAYS}={quoted(text.strip())}"
    if country not in supported:
        raise ConfigError(
            f"{source}: {country or '(empty)'} is not a country the holidays package knows "
            "(an ISO 3166 code such as DE, FR, US)"
        )
    if subdivision is not None:
        names = {name.upper(): name for name in supported[country]}
        if subdivision not in names:
            known = ", ".join(supported[country][:12]) or "none"
            more = ", ..." if len(supported[country]) > 12 else ""
            raise ConfigError(
                f"{source}: {country} has no subdivision {subdivision} (it has {known}{more})"
            )
        subdivision = names[subdivision]
    return country, subdivision


# --- counting a stage's days ----------------------------------------------------------------------


class DayCount(Protocol):
    """How a stage counts its days: calendar days or business days."""

    @property
    def unit(self) -> str:
        """The unit, as a text shows it: ``day`` or ``business day``."""
        ...

    def deadline(self, entered_at: datetime, days: int) -> datetime:
        """The moment ``days`` days after ``entered_at``."""
        ...

    def elapsed(self, entered_at: datetime, now: datetime) -> int:
        """The whole days from ``entered_at`` to ``now``: the most whose deadline has come."""
        ...

    def cutoff(self, now: datetime, days: int) -> datetime:
        """The latest entry whose deadline ``days`` days on has come by ``now``."""
        ...


@dataclass(frozen=True)
class CalendarDays:
    """Days of 24 hours from the moment of entering."""

    unit: str = "day"

    def deadline(self, entered_at: datetime, days: int) -> datetime:
        return entered_at + timedelta(days=days)

    def elapsed(self, entered_at: datetime, now: datetime) -> int:
        return max(0, (now - entered_at).days)

    def cutoff(self, now: datetime, days: int) -> datetime:
        return now - timedelta(days=days)


@dataclass(frozen=True)
class BusinessDays:
    """Business days of ``calendar``: a limit runs out at the time of day of entering."""

    calendar: WorkCalendar
    unit: str = "business day"

    def _anchor(self, entered_at: datetime) -> datetime:
        """Where counting starts: the entry itself, or the start of the next business day when
        the account entered on a weekend or a holiday (local time)."""
        calendar = self.calendar
        local = entered_at.astimezone(calendar.zone)
        if calendar.is_business_day(local.date()):
            return local
        return datetime.combine(calendar.after(local.date(), 1), time(), tzinfo=calendar.zone)

    def deadline(self, entered_at: datetime, days: int) -> datetime:
        anchor = self._anchor(entered_at)
        if days > 0:
            day = self.calendar.after(anchor.date(), days)
            anchor = datetime.combine(day, anchor.time(), tzinfo=self.calendar.zone)
        return anchor.astimezone(UTC)

    def elapsed(self, entered_at: datetime, now: datetime) -> int:
        anchor = self._anchor(entered_at)
        if now <= anchor:
            return 0
        days = self.calendar.count(anchor.date(), now.astimezone(self.calendar.zone).date())
        if days and self.deadline(entered_at, days) > now:
            days -= 1
        return days

    def cutoff(self, now: datetime, days: int) -> datetime:
        calendar = self.calendar
        local = now.astimezone(calendar.zone)
        start = calendar.back(local.date(), days)
        if calendar.is_business_day(local.date()):
            # Entered on ``start`` by this time of day: due today by now.
            return datetime.combine(start, local.time(), tzinfo=calendar.zone).astimezone(UTC)
        # Today is no business day: whatever entered on ``start`` fell due on the last one.
        end = datetime.combine(start + _ONE_DAY, time(), tzinfo=calendar.zone)
        return end.astimezone(UTC) - _TICK


CALENDAR_DAYS = CalendarDays()
#: Days reckoned in UTC, without holidays: the calendar when the settings give no other.
UTC_CALENDAR = WorkCalendar()


def counting(stage: StageSpec, calendar: WorkCalendar) -> DayCount:
    """How ``stage`` counts its days: business days of ``calendar`` or calendar days."""
    return BusinessDays(calendar) if stage.business_days else CALENDAR_DAYS


def deadline(entered_at: datetime, stage: StageSpec, calendar: WorkCalendar) -> datetime:
    """The moment (UTC) the limit of ``stage`` runs out for an account that entered it at
    ``entered_at``: from then on the account is behind."""
    return counting(stage, calendar).deadline(entered_at, stage.limit)
