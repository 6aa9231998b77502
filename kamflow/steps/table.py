"""The table of queuing steps: what each is called, what it queues, how it tells that a queued
message is no longer true, and what it would queue in the days ahead.

`kamflow tick`, `kamflow daemon` and `kamflow forecast` all go through this one table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from kamflow.config import Schedule
from kamflow.models import MessageKind
from kamflow.steps import actions, leader_digests, owner_digests, stalls
from kamflow.steps.base import StepReport, StepRun

Stale = Callable[[Session, list[Any], datetime], dict[int, str]]
Forecast = Callable[[Session, datetime, datetime, Schedule], Iterator[tuple[Any, ...]]]


@dataclass(frozen=True)
class Step:
    """One queuing step."""

    name: str
    queue: Callable[[StepRun], StepReport]
    #: The kinds of message it queues.
    kinds: tuple[MessageKind, ...]
    #: Why messages of those kinds must not be sent any more (None: they are always true).
    stale: Stale | None = None
    #: What it would queue in (now, end] if nothing changed (None: it forecasts nothing).
    forecast: Forecast | None = None


QUEUING: tuple[Step, ...] = (
    Step(stalls.NAME, stalls.queue_stalls, stalls.KINDS, stalls.stale, stalls.forecast),
    Step(
        actions.NAME, actions.queue_action_reminders, actions.KINDS, actions.stale, actions.forecast
    ),
    Step(owner_digests.NAME, owner_digests.queue_owner_digests, (MessageKind.OWNER_DIGEST,)),
    Step(leader_digests.NAME, leader_digests.queue_leader_digests, (MessageKind.LEADER_DIGEST,)),
)


def step(name: str) -> Step:
    """The queuing step called ``name``; KeyError when there is none."""
    for found in QUEUING:
        if found.name == name:
            return found
    raise KeyError(name)


def stale_reasons(session: Session, messages: list[Any], now: datetime) -> dict[int, str]:
    """Why each of ``messages`` (outbox rows with ``id`` and ``kind``) must not be sent any more,
    if it must not: each kind asked of the step that queues it, a batch at a time."""
    found: dict[int, str] = {}
    for entry in QUEUING:
        if entry.stale is None:
            continue
        kinds = {kind.value for kind in entry.kinds}
        mine = [message for message in messages if message.kind in kinds]
        if mine:
            found.update(entry.stale(session, mine, now))
    return found
