"""What the steps show without running: `kamflow status` and `kamflow forecast`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import defaults
from kamflow.config import Schedule
from kamflow.db import chunks
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar
from kamflow.definitions.ladder import Status
from kamflow.errors import InvalidInput
from kamflow.models import Account, Notification, OutboxStatus
from kamflow.outbox import counts
from kamflow.records import people, snoozes
from kamflow.steps.base import heartbeats, loaded_workflows, phases
from kamflow.steps.delivery import NAME as DELIVERY
from kamflow.steps.table import QUEUING
from kamflow.text import display_width


def status(
    session: Session, now: datetime, calendar: WorkCalendar = UTC_CALENDAR
) -> dict[str, Any]:
    """The steps' last runs, the outbox, how many accounts are behind, stuck and snoozed, and
    what deactivated people still own."""
    stalled = {Status.BEHIND.value: 0, Status.STUCK.value: 0}
    snoozed = 0
    running = snoozes.any_active(session, now)
    for phase in phases(loaded_workflows(session), now, calendar):
        inside = phase.contains(Account)
        stalled[phase.status.value] += session.execute(
            sa.select(sa.func.count()).select_from(Account).where(inside)
        ).scalar_one()
        if running:
            snoozed += session.execute(
                sa.select(sa.func.count())
                .select_from(Account)
                .where(inside, snoozes.pausing(Account, now))
            ).scalar_one()
    due = session.execute(
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(
            col(Notification.status) == OutboxStatus.PENDING.value,
            col(Notification.next_attempt_at) <= now,
        )
    ).scalar_one()
    beats = heartbeats(session)
    return {
        "now": now.isoformat(),
        "last_tick": last_tick(beats),
        "last_delivery": beats.get(DELIVERY),
        "outbox": counts(session),
        "due_now": due,
        "accounts": {**stalled, "snoozed": snoozed},
        # What deactivated people still own: nobody is reminded of it.
        "deactivated_owners": people.unattended(session),
    }


def last_tick(beats: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """When the queuing steps last ran; a failing step shows (with what stopped it) until it
    runs well again."""
    found = [beats[entry.name] for entry in QUEUING if entry.name in beats]
    if not found:
        return None
    at = max(beat["at"] for beat in found)
    for beat in found:
        if not beat["ok"]:
            return {**beat, "at": at}
    details = {entry.name: beats[entry.name]["detail"] for entry in QUEUING if entry.name in beats}
    return {"at": at, "ok": True, "detail": details}


class Forecast:
    """What would fire, sorted by time (then account) on disk, not in memory: a forecast of a
    large portfolio holds a row per message, far more than a batch.

    Each row's ``at`` is the moment the daemon would send, in UTC; its ``repeat`` is the daemon's
    own count, as the message's identity in the outbox has it (0 for the first of its kind).
    """

    COLUMNS = ("at", "kind", "account", "stage", "repeat", "action")

    def __init__(self, rows: Iterable[tuple[Any, ...]]) -> None:
        # An empty name: a private temporary database on disk, deleted when it is closed.
        self._db = sqlite3.connect("")
        # A table's columns are as wide as their text shows (株 takes two columns), not its length.
        self._db.create_function(
            "display_width", 1, lambda value: display_width(str(value)), deterministic=True
        )
        self._db.execute(
            "CREATE TABLE forecast (at TEXT, kind TEXT, account TEXT, stage TEXT, "
            "repeat INTEGER, action TEXT)"
        )
        for chunk in chunks(rows, defaults.STEP_BATCH):
            self._db.executemany(
                "INSERT INTO forecast VALUES (?, ?, ?, ?, ?, ?)",
                [(_moment(at), *rest) for at, *rest in chunk],
            )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cursor = self._db.execute("SELECT * FROM forecast ORDER BY at, account")
        for at, kind, account, stage, repeat, action in cursor:
            row = {"at": at, "account": account, "stage": stage, "kind": kind, "repeat": repeat}
            if action:
                row["action"] = action
            yield row

    def longest(self, column: str) -> int:
        """The display width of the widest value of ``column`` (0 when there is none)."""
        assert column in self.COLUMNS
        found = self._db.execute(
            f"SELECT max(display_width({column})) FROM forecast WHERE {column} IS NOT NULL"
        ).fetchone()[0]
        return int(found or 0)

    def close(self) -> None:
        """Delete the temporary database that holds the forecast."""
        self._db.close()

    def __enter__(self) -> Forecast:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def forecast(session: Session, now: datetime, days: int, schedule: Schedule) -> Forecast:
    """What the steps would queue in the next ``days`` if nothing changed, by time."""
    if not 1 <= days <= defaults.MAX_FORECAST_DAYS:
        raise InvalidInput(f"--days must be from 1 to {defaults.MAX_FORECAST_DAYS}, not {days}")
    end = now + timedelta(days=days)
    return Forecast(
        row
        for entry in QUEUING
        if entry.forecast is not None
        for row in entry.forecast(session, now, end, schedule)
    )


def _moment(at: datetime) -> str:
    """A moment as ISO 8601 in UTC: every row alike, so that they sort as text."""
    return at.astimezone(UTC).isoformat()
