"""Where an account stands on the reminder ladder, derived from the database: no timers anywhere.

An account inside its stage's limit is on track. From the limit on it is *behind*: the owner is
reminded at the limit and every ``remind_every_days``. From limit + ``escalate_after_days`` it is
*stuck*: leadership gets an escalation, copying the owner, every ``escalate_every_days``. Only the
latest rung due counts, so a tick after days of downtime sends one message, not the missed repeats.

A stage that gives ``limit_business_days`` counts every one of these days in business days
(`kamflow.definitions.businessdays`): its reminders and escalations fall on business days only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from kamflow.definitions.businessdays import CALENDAR_DAYS, DayCount
from kamflow.definitions.spec import LadderSpec


class Status(StrEnum):
    """How an account is doing against its stage's time limit."""

    ON_TRACK = "on_track"
    BEHIND = "behind"
    STUCK = "stuck"


class Rung(StrEnum):
    """What the ladder does at a step."""

    REMIND = "remind"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class Position:
    """An account's place on the ladder at one moment."""

    status: Status
    days_in_stage: int
    #: Whole days past the stage's limit (0 while on track).
    days_over: int
    #: The rung due (None while on track), its repeat (0 for the first) and when it fell due.
    rung: Rung | None
    repeat: int
    due_at: datetime | None

    def key(self, account_id: int, stage: str, entered_at: datetime) -> str:
        """The idempotency key of the message this position calls for."""
        assert self.rung is not None
        return stall_key(account_id, stage, entered_at, self.rung, self.repeat)


def stall_key(account_id: int, stage: str, entered_at: datetime, rung: Rung, repeat: int) -> str:
    """One key per account, stay in a stage, rung and repeat: nothing is queued twice."""
    return f"stall:{account_id}:{stage}:{entered_at.isoformat()}:{rung.value}:{repeat}"


def position(
    entered_at: datetime,
    limit_days: int,
    ladder: LadderSpec,
    now: datetime,
    days: DayCount = CALENDAR_DAYS,
) -> Position:
    """Where an account that entered its stage at ``entered_at`` stands at ``now``.

    Before the stage's limit (``limit_days`` after entering) it is on track; from the limit on it is
    behind, with the latest reminder due; from ``escalate_after_days`` past the limit it is stuck,
    with the latest escalation due. Every count is of whole days as ``days`` counts them (calendar
    days, or business days for a stage that gives ``limit_business_days``).
    """
    days_in_stage = days.elapsed(entered_at, now)
    if days_in_stage < limit_days:
        return Position(Status.ON_TRACK, days_in_stage, 0, None, 0, None)
    days_over = days_in_stage - limit_days
    if days_over < ladder.escalate_after_days:
        repeat = days_over // ladder.remind_every_days
        due = days.deadline(entered_at, limit_days + repeat * ladder.remind_every_days)
        return Position(Status.BEHIND, days_in_stage, days_over, Rung.REMIND, repeat, due)
    repeat = (days_over - ladder.escalate_after_days) // ladder.escalate_every_days
    offset = limit_days + ladder.escalate_after_days + repeat * ladder.escalate_every_days
    due = days.deadline(entered_at, offset)
    return Position(Status.STUCK, days_in_stage, days_over, Rung.ESCALATE, repeat, due)


def schedule(
    entered_at: datetime,
    limit_days: int,
    ladder: LadderSpec,
    start: datetime,
    end: datetime,
    days: DayCount = CALENDAR_DAYS,
) -> list[tuple[datetime, Rung, int]]:
    """Every rung that falls due in (start, end], in order: what a forecast shows."""
    escalate_from = limit_days + ladder.escalate_after_days
    found: list[tuple[datetime, Rung, int]] = []
    repeat, offset = 0, limit_days
    while offset < escalate_from:
        at = days.deadline(entered_at, offset)
        if at > end:
            return found
        if at > start:
            found.append((at, Rung.REMIND, repeat))
        repeat += 1
        offset = limit_days + repeat * ladder.remind_every_days
    repeat, every = 0, ladder.escalate_every_days
    while (at := days.deadline(entered_at, escalate_from + repeat * every)) <= end:
        if at > start:
            found.append((at, Rung.ESCALATE, repeat))
        repeat += 1
    return found
