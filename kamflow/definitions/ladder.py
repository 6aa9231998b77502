"""Where an account stands on the reminder ladder, derived from the database: no timers anywhere.

An account inside its stage's limit is on track. From the limit on it is *behind*: the owner is
reminded at the limit and every ``remind_every_days``. From limit + ``escalate_after_days`` it is
*stuck*: leadership gets an escalation, copying the owner, every ``escalate_every_days``. Only the
latest rung due counts, so a tick after days of downtime sends one message, not the missed repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

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


def limit_reached(entered_at: datetime, limit_days: int) -> datetime:
    """The moment the stage's limit runs out for an account that entered it at ``entered_at``:
    from then on it is behind. The ladder, the forecast and the calendar all count it here."""
    return entered_at + timedelta(days=limit_days)


def position(entered_at: datetime, limit_days: int, ladder: LadderSpec, now: datetime) -> Position:
    """Where an account that entered its stage at ``entered_at`` stands at ``now``.

    Before the stage's limit (``limit_days`` after entering) it is on track; from the limit on it is
    behind, with the latest reminder due; from ``escalate_after_days`` past the limit it is stuck,
    with the latest escalation due. ``days_in_stage`` and ``days_over`` count whole days.
    """
    limit = limit_reached(entered_at, limit_days)
    days_in_stage = max(0, (now - entered_at).days)
    if now < limit:
        return Position(Status.ON_TRACK, days_in_stage, 0, None, 0, None)
    days_over = (now - limit).days
    escalate_from = limit + timedelta(days=ladder.escalate_after_days)
    if now < escalate_from:
        repeat = (now - limit) // timedelta(days=ladder.remind_every_days)
        due = limit + repeat * timedelta(days=ladder.remind_every_days)
        return Position(Status.BEHIND, days_in_stage, days_over, Rung.REMIND, repeat, due)
    repeat = (now - escalate_from) // timedelta(days=ladder.escalate_every_days)
    due = escalate_from + repeat * timedelta(days=ladder.escalate_every_days)
    return Position(Status.STUCK, days_in_stage, days_over, Rung.ESCALATE, repeat, due)


def schedule(
    entered_at: datetime, limit_days: int, ladder: LadderSpec, start: datetime, end: datetime
) -> list[tuple[datetime, Rung, int]]:
    """Every rung that falls due in (start, end], in order: what a forecast shows."""
    limit = limit_reached(entered_at, limit_days)
    escalate_from = limit + timedelta(days=ladder.escalate_after_days)
    found: list[tuple[datetime, Rung, int]] = []
    repeat, at = 0, limit
    while at < escalate_from and at <= end:
        if at > start:
            found.append((at, Rung.REMIND, repeat))
        repeat += 1
        at = limit + repeat * timedelta(days=ladder.remind_every_days)
    repeat, at = 0, escalate_from
    while at <= end:
        if at > start:
            found.append((at, Rung.ESCALATE, repeat))
        repeat += 1
        at = escalate_from + repeat * timedelta(days=ladder.escalate_every_days)
    return found
