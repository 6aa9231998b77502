"""Snoozes: an owner or a leader pauses an account's reminders for one stay in one stage."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.definitions.discovery import get_workflow
from kamflow.errors import InvalidInput
from kamflow.models import Account, HistoryKind, Snooze
from kamflow.records import history
from kamflow.records.accounts import find_account
from kamflow.records.people import require_account_right
from kamflow.text import one_line, plural


def active_snooze(session: Session, account: Account, now: datetime) -> Snooze | None:
    """The snooze that pauses the account's current stay, if one does."""
    return session.exec(
        select(Snooze)
        .where(
            Snooze.account_id == account.id,
            Snooze.stage == account.stage,
            Snooze.stage_entered_at == account.stage_entered_at,
            Snooze.until > now,
        )
        .order_by(col(Snooze.until).desc())
    ).first()


def pausing(account: Any, now: Any) -> Any:
    """SQL: a snooze pauses the current stay of ``account`` (the account table, its columns, or
    an alias) at ``now`` (a moment, or a parameter bound when the statement runs)."""
    return sa.exists().where(
        col(Snooze.account_id) == account.id,
        col(Snooze.stage) == account.stage,
        col(Snooze.stage_entered_at) == account.stage_entered_at,
        col(Snooze.until) > now,
    )


def any_active(session: Session | sa.Connection, now: datetime) -> bool:
    """Whether any snooze is still running (when none is, the scans need not look for one)."""
    found = session.execute(sa.select(sa.exists().where(col(Snooze.until) > now))).scalar()
    return bool(found)


def snooze(
    session: Session, ref: str, *, days: int, reason: str, actor: str, now: datetime
) -> Snooze:
    """Pause the ladder for this stay in the account's stage (the owner or a leader)."""
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    if definition.is_exit(account.stage):
        raise InvalidInput(f"{account.name} is {definition.title_of(account.stage).lower()}")
    if not 1 <= days <= defaults.MAX_SNOOZE_DAYS:
        raise InvalidInput(f"a snooze lasts 1 to {defaults.MAX_SNOOZE_DAYS} days, not {days}")
    reason = one_line(reason)
    if not reason:
        raise InvalidInput("a snooze needs a reason (--reason TEXT)")
    require_account_right(session, account, actor, "snooze")
    row = Snooze(
        account_id=account.id,  # type: ignore[arg-type]
        stage=account.stage,
        stage_entered_at=account.stage_entered_at,
        until=now + timedelta(days=days),
        reason=reason,
        snoozed_by=actor,
        snoozed_at=now,
    )
    session.add(row)
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.SNOOZE,
        note=(
            f"reminders paused for {plural(days, 'day')}, until {row.until.date().isoformat()}: "
            f"{reason}"
        ),
    )
    return row


def unsnooze(session: Session, ref: str, *, actor: str, now: datetime) -> Snooze:
    """End the snooze of the account's current stay now (the owner or a leader): its reminders
    resume from where the ladder stands. The snooze as it was; InvalidInput when none runs."""
    account = find_account(session, ref)
    running = active_snooze(session, account, now)
    if running is None:
        raise InvalidInput(f"{account.name} is not snoozed: its reminders are already running")
    require_account_right(session, account, actor, "unsnooze")
    ended = Snooze(**running.model_dump())
    # Every snooze of the stay that still runs ends now (one may have been given twice).
    session.execute(
        sa.update(Snooze)
        .where(
            col(Snooze.account_id) == account.id,
            col(Snooze.stage) == account.stage,
            col(Snooze.stage_entered_at) == account.stage_entered_at,
            col(Snooze.until) > now,
        )
        .values(until=now)
        .execution_options(synchronize_session=False)
    )
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.SNOOZE,
        note=(
            f"reminders resumed: the snooze until {ended.until.date().isoformat()} "
            f"({ended.reason}) ended early"
        ),
    )
    return ended


def snooze_view(session: Session, account: Account, now: datetime) -> dict[str, Any] | None:
    """The snooze that pauses the account's current stay, as plain data (None when none does):
    until when, why, by whom and since when."""
    running = active_snooze(session, account, now)
    if running is None:
        return None
    return {
        "until": running.until.isoformat(),
        "reason": running.reason,
        "by": running.snoozed_by,
        "at": running.snoozed_at.isoformat(),
    }
