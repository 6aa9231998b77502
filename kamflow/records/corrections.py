"""Corrections to an account plan: an action rescheduled, given to someone else or cancelled; a
KPI edited or removed. Each is one change, recorded in the account's history in the same
transaction; a refused one changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow.errors import InvalidInput, NotFound
from kamflow.models import Account, Action, ActionStatus, HistoryKind, Kpi, KpiValue, Person
from kamflow.records import history
from kamflow.records.accounts import editable, touch
from kamflow.records.people import active_person
from kamflow.records.plan import (
    due_date,
    find_action,
    is_past,
    kpi_named,
    parse_number,
)
from kamflow.text import MAX_LABEL, MAX_NAME, clean_text, format_number, plural


@dataclass(frozen=True)
class Correction:
    """What a correction changed: the row, and the sentence the history recorded."""

    row: Action | Kpi
    note: str


def _recorded(
    session: Session,
    account: Account,
    row: Action | Kpi,
    note: str,
    *,
    actor: str,
    now: datetime,
) -> Correction:
    """Count the change to the account's plan and record it in the history."""
    touch(session, account)
    kind = HistoryKind.ACTION if isinstance(row, Action) else HistoryKind.KPI
    history.record(session, account, actor=actor, at=now, kind=kind, note=note)
    return Correction(row, note)


# --- actions -------------------------------------------------------------------------------------


def _changeable(
    session: Session, ref: str, action_id: str, doing: str, actor: str
) -> tuple[Account, Action]:
    """The account and its action, unless the action is cancelled (then nothing may change)."""
    account, _ = editable(session, ref, actor)
    action = find_action(session, account, action_id)
    if action.status == ActionStatus.CANCELLED:
        raise InvalidInput(f"action #{action.id} is cancelled: it cannot be {doing}")
    return account, action


def reschedule_action(
    session: Session,
    ref: str,
    action_id: str,
    *,
    due: str,
    past: bool = False,
    timezone: tzinfo = UTC,
    actor: str,
    now: datetime,
) -> Correction:
    """Give an action of the account (``12`` or ``#12``) a new due date (``YYYY-MM-DD``); a date
    before today (in ``timezone``) only with ``past``. Its reminders start again from the new
    date: a reminder queued for the old one is not sent. Recorded in the history.

    Raises NotFound for an unknown account or action, InvalidInput for a closed account, a
    cancelled action, a bad date, a date in the past without ``past``, or the date the action
    has already.
    """
    account, action = _changeable(session, ref, action_id, "rescheduled", actor)
    day = due_date(due, past=past, now=now, timezone=timezone)
    if action.due == day:
        raise InvalidInput(f"action #{action.id} is already due {day.isoformat()}")
    before = action.due.isoformat() if action.due else "no date"
    action.due = day
    over = (
        " (a date in the past, taken as given)" if is_past(day, now=now, timezone=timezone) else ""
    )
    note = (
        f"action #{action.id} rescheduled from {before} to {day.isoformat()}{over}: {action.title}"
    )
    return _recorded(session, account, action, note, actor=actor, now=now)


def assign_action(
    session: Session, ref: str, action_id: str, email: str, *, actor: str, now: datetime
) -> Correction:
    """Give an action of the account (``12`` or ``#12``) to the person with ``email``, who must be
    known; a reminder queued for the previous owner is not sent. Recorded in the history.

    Raises NotFound for an unknown account, action or person, InvalidInput for a closed account,
    a cancelled action, or the person who owns it already.
    """
    account, action = _changeable(session, ref, action_id, "assigned", actor)
    person = active_person(session, email, "own actions")
    if action.owner_id == person.id:
        raise InvalidInput(f"action #{action.id} is already {person.email}'s")
    previous = session.get(Person, action.owner_id) if action.owner_id is not None else None
    action.owner_id = person.id
    before = previous.email if previous is not None else "nobody"
    note = f"action #{action.id} assigned from {before} to {person.email}: {action.title}"
    return _recorded(session, account, action, note, actor=actor, now=now)


def cancel_action(
    session: Session, ref: str, action_id: str, *, reason: str, actor: str, now: datetime
) -> Correction:
    """Cancel an open action of the account (``12`` or ``#12``), with the reason: it stays listed
    as cancelled, is no longer reminded of, and no longer counts for the plan. Recorded in the
    history, with the reason.

    Raises NotFound for an unknown account or action, InvalidInput for a closed account, an
    action done or cancelled already, or a reason that is empty, too long or has a control
    character.
    """
    account, _ = editable(session, ref, actor)
    action = find_action(session, account, action_id)
    if action.status != ActionStatus.OPEN:
        raise InvalidInput(
            f"action #{action.id} is {action.status.value} already: nothing to cancel"
        )
    why = clean_text(reason, "--reason")
    action.status = ActionStatus.CANCELLED
    note = f"action #{action.id} cancelled: {action.title} (reason: {why})"
    return _recorded(session, account, action, note, actor=actor, now=now)


# --- KPIs ----------------------------------------------------------------------------------------


def _kpi_in_plan(session: Session, account: Account, name: str) -> Kpi:
    """The KPI of the account's plan called ``name`` (in any case), locked; NotFound for none,
    saying so when it was removed."""
    kpi = kpi_named(session, account, name)
    if kpi is None:
        raise NotFound(f"{account.name} has no KPI {name.strip()!r} (see: kamflow account show)")
    if kpi.removed_at is not None:
        raise NotFound(
            f"KPI {kpi.name} was removed from the plan of {account.name} "
            f"on {kpi.removed_at.date().isoformat()} (bring it back with kamflow kpi add)"
        )
    return kpi


def edit_kpi(
    session: Session,
    ref: str,
    name: str,
    *,
    target: str | None = None,
    unit: str | None = None,
    rename: str | None = None,
    lower_is_better: bool | None = None,
    actor: str,
    now: datetime,
) -> Correction:
    """Change what is given of the account's KPI ``name`` (in any case): its target, its unit (an
    empty one clears it), its name, whether a lower value is better. Its recorded values stay.
    Recorded in the history, with each value before and after.

    Raises NotFound for an unknown account or KPI (or one removed from the plan), InvalidInput
    for a closed account, nothing to change, a target that is not a finite number, a new name
    that another KPI of the account has (removed or not), or a name or unit that is empty where
    it must not be, too long or has a control character.
    """
    account, _ = editable(session, ref, actor)
    if target is None and unit is None and rename is None and lower_is_better is None:
        raise InvalidInput(
            "nothing to change: give --target, --unit, --rename, --lower-is-better or "
            "--higher-is-better"
        )
    # Every value is checked before any is changed.
    value = None if target is None else parse_number(target, "--target")
    new_unit = (
        None if unit is None else clean_text(unit, "--unit", required=False, max_length=MAX_LABEL)
    )
    new_name = None if rename is None else clean_text(rename, "--rename", max_length=MAX_NAME)
    kpi = _kpi_in_plan(session, account, name)
    if new_name is not None:
        other = kpi_named(session, account, new_name)
        if other is not None and other.id != kpi.id:
            removed = " (removed from the plan)" if other.removed_at is not None else ""
            raise InvalidInput(f"{account.name} already has a KPI named {other.name!r}{removed}")
    called = kpi.name
    changes = []
    if new_name is not None and new_name != kpi.name:
        changes.append(f"renamed to {new_name}")
        kpi.name = new_name
    if new_unit is not None and new_unit != kpi.unit:
        changes.append(f"unit {kpi.unit or '(none)'} -> {new_unit or '(none)'}")
        kpi.unit = new_unit
    if value is not None and value != kpi.target:
        changes.append(f"target {format_number(kpi.target)} -> {format_number(value)}")
        kpi.target = value
    if lower_is_better is not None and lower_is_better != kpi.lower_is_better:
        changes.append(f"now {'lower' if lower_is_better else 'higher'} is better")
        kpi.lower_is_better = lower_is_better
    if not changes:
        raise InvalidInput(f"nothing to change: KPI {kpi.name} already is as given")
    note = f"KPI {called} edited: {'; '.join(changes)}"
    return _recorded(session, account, kpi, note, actor=actor, now=now)


def remove_kpi(
    session: Session, ref: str, name: str, *, reason: str, actor: str, now: datetime
) -> Correction:
    """Remove the account's KPI ``name`` (in any case) from its plan, with the reason: the guards
    and the reports stop counting it, its recorded values stay (and `kpi add` of its name brings
    it back). Recorded in the history, with the reason.

    Raises NotFound for an unknown account or KPI (or one removed already), InvalidInput for a
    closed account, or a reason that is empty, too long or has a control character.
    """
    account, _ = editable(session, ref, actor)
    kpi = _kpi_in_plan(session, account, name)
    why = clean_text(reason, "--reason")
    kept = session.execute(
        sa.select(sa.func.count()).where(col(KpiValue.kpi_id) == kpi.id)
    ).scalar_one()
    kpi.removed_at = now
    values = f"its {plural(kept, 'recorded value')} kept" if kept else "no value recorded"
    note = f"KPI {kpi.name} removed: {why} ({values})"
    return _recorded(session, account, kpi, note, actor=actor, now=now)
