"""The one source of "now": the system clock, or a fixed time for demos and tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kamflow import defaults
from kamflow.errors import ConfigError
from kamflow.text import quoted


class Clock(Protocol):
    """Anything that tells the current time as a timezone-aware UTC datetime."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current time of the system, in UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A time that moves only when told to."""

    def __init__(self, at: datetime) -> None:
        self._at = as_utc(at)

    def now(self) -> datetime:
        """The time this clock was last set to, in UTC."""
        return self._at

    def set(self, at: datetime) -> None:
        """Set the time to ``at`` (a naive datetime is taken to be UTC)."""
        self._at = as_utc(at)

    def advance(self, **delta: float) -> datetime:
        """Move time forward, e.g. ``clock.advance(days=3)``, and return the new time."""
        self._at += timedelta(**delta)
        return self._at


class RunningClock:
    """A time that starts at a given moment and then runs as real time does.

    What a long-running process (the daemon) makes of KAMFLOW_NOW: its start is the moment
    given, and leases, backoffs and schedules still see time pass.
    """

    def __init__(self, start: datetime) -> None:
        self._start = as_utc(start)
        self._began = time.monotonic()

    def now(self) -> datetime:
        """The start moment plus the real time that has passed since this clock was made."""
        return self._start + timedelta(seconds=time.monotonic() - self._began)


def running(clock: Clock) -> Clock:
    """The clock a long-running process keeps: a fixed time (KAMFLOW_NOW) becomes its start,
    from which time runs (leases and backoffs must expire); any other clock is kept."""
    if isinstance(clock, FixedClock):
        return RunningClock(clock.now())
    return clock


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_instant(text: str, *, source: str) -> datetime:
    """Parse an ISO 8601 date or date-time (naive means UTC) in the years EARLIEST_YEAR to
    LATEST_YEAR, naming ``source`` on failure."""
    try:
        given = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{source}={quoted(text)} is not an ISO 8601 date or time (e.g. 2027-03-01T09:00:00Z)"
        ) from None
    try:
        instant = as_utc(given)
    except OverflowError:  # an offset that takes it past year 1 or 9999
        instant = None
    if instant is None or not defaults.EARLIEST_YEAR <= instant.year <= defaults.LATEST_YEAR:
        raise ConfigError(
            f"{source}={quoted(text)} is out of range: kamflow works with times in the years "
            f"{defaults.EARLIEST_YEAR} to {defaults.LATEST_YEAR}"
        )
    return instant


def clock_from(text: str | None, *, source: str) -> Clock:
    """A fixed clock when ``text`` is given (e.g. from KAMFLOW_NOW), else the system clock."""
    if text is None or not text.strip():
        return SystemClock()
    return FixedClock(parse_instant(text, source=source))
