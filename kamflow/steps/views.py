"""What the steps show without running: `kamflow status` and `kamflow forecast`."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import defaults, snoozes
from kamflow.config import Schedule
from kamflow.errors import InvalidInput
from kamflow.ladder import Status
from kamflow.models import Account, Notification, OutboxStatus
from kamflow.outbox import counts
from kamflow.steps.base import heartbeats, loaded_workflows, phases
from kamflow.steps.delivery import NAME as DELIVERY
from kamflow.steps.table import QUEUING


def status(session: Session, now: datetime) -> dict[str, Any]:
    """The steps' last runs, the outbox, and how many accounts are behind, stuck and snoozed."""
    stalled = {Status.BEHIND.value: 0, Status.STUCK.value: 0}
    snoozed = 0
    running = snoozes.any_active(session, now)
    for phase in phases(loaded_workflows(session), now):
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


def forecast(
    session: Session, now: datetime, days: int, schedule: Schedule
) -> list[dict[str, Any]]:
    """What the steps would queue in the next ``days`` if nothing changed, by time."""
    if not 1 <= days <= defaults.MAX_FORECAST_DAYS:
        raise InvalidInput(f"--days must be from 1 to {defaults.MAX_FORECAST_DAYS}, not {days}")
    end = now + timedelta(days=days)
    found = []
    for entry in QUEUING:
        if entry.forecast is not None:
            found += list(entry.forecast(session, now, end, schedule))
    found.sort(key=lambda item: (_moment(item[0]), item[2]))
    return [_as_dict(item) for item in found]


def _moment(at: datetime | date) -> str:
    return at.isoformat()


def _as_dict(item: tuple[Any, ...]) -> dict[str, Any]:
    at, kind, account, stage, repeat, action = item
    row = {"at": at.isoformat(), "account": account, "stage": stage, "kind": kind, "repeat": repeat}
    if action:
        row["action"] = action
    return row
