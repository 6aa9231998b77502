"""Overdue plan actions: the action's owner is reminded on the due date, then every few days.

One indexed query finds the open actions due by today (in KAMFLOW_TIMEZONE) of accounts still in
their cycle, leaving out those whose reminder of today's repeat is queued already.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow.config import Schedule
from kamflow.db import read_scope, stream
from kamflow.models import Account, Action, ActionStatus, MessageKind, Notification, Person
from kamflow.notify.message import clean_header
from kamflow.outbox import Draft, Identity
from kamflow.steps.base import BATCH, StepReport, StepRun, in_cycle, loaded_workflows
from kamflow.text import plural, shell_quote

NAME = "actions"
KINDS = (MessageKind.ACTION,)


def repeat_on(due: date, day: date, every_days: int) -> int:
    """Which reminder of an action due on ``due`` falls on or last before ``day``."""
    return (day - due).days // every_days


def queued_since(action: Any, since: date) -> Any:
    """SQL: a reminder of ``action`` for its current due date was queued for a day after
    ``since`` (reminders repeat every N days: the one due today is the only one after today - N).
    """
    return sa.exists().where(
        col(Notification.action_id) == action.id,
        col(Notification.action_due) == action.due,
        col(Notification.period) > since.isoformat(),
    )


def due_query(definitions: list[Any], today: date, every_days: int) -> Any:
    """Open actions due by ``today`` with an active owner, of accounts in their cycle, not
    reminded of today's repeat yet; by due date."""
    return (
        sa.select(
            col(Action.id),
            col(Action.account_id),
            col(Action.owner_id),
            col(Action.due),
            col(Action.title),
            col(Action.resources),
            col(Account.name).label("account"),
            col(Person.email),
        )
        .join(Account, col(Account.id) == col(Action.account_id))
        .join(Person, col(Person.id) == col(Action.owner_id))
        .where(
            col(Action.status) == ActionStatus.OPEN.value,
            col(Action.due) <= today,
            col(Person.active),
            in_cycle(Account, definitions),
            ~queued_since(Action, today - timedelta(days=every_days)),
        )
        .order_by(col(Action.due), col(Action.id))
    )


def queue_action_reminders(run: StepRun) -> StepReport:
    """Remind each open action's owner on its due date, then every N days until it is done."""
    report = StepReport(NAME)
    every = run.schedule.action_every_days
    today = run.now.astimezone(run.schedule.timezone).date()
    with read_scope(run.engine) as reading:
        definitions = loaded_workflows(reading)
        for rows in stream(reading, due_query(definitions, today, every), BATCH):
            report.examined += len(rows)
            report.offer(run, [_draft(row, row.email, today, every, run.schedule) for row in rows])
    return report


def _draft(row: Any, email: str, today: date, every_days: int, schedule: Schedule) -> Draft:
    repeat = repeat_on(row.due, today, every_days)
    days_late = (today - row.due).days
    name = clean_header(row.account)
    title = clean_header(row.title)
    context = {
        "account": name,
        "title": title,
        "due": row.due.isoformat(),
        "days_late": days_late,
        "resources": row.resources,
        "owner": email,
        "done_command": f"kamflow action done {shell_quote(row.account)} {row.id}",
        "list_command": f"kamflow action list {shell_quote(row.account)}",
    }
    when = "due today" if days_late == 0 else f"{plural(days_late, 'day')} overdue"
    day = row.due + timedelta(days=repeat * every_days)
    return Draft(
        identity=Identity.action(
            action_id=row.id,
            account_id=row.account_id,
            owner_id=row.owner_id,
            due=row.due,
            repeat=repeat,
            day=day,
        ),
        recipients=[email],
        cc=[],
        subject=f"Action {when} for {name}: {title}",
        template="action",
        context=context,
        due_at=datetime.combine(day, time(), tzinfo=schedule.timezone),
    )


# --- messages that are no longer true -----------------------------------------------------------


def stale(session: Session, messages: list[Any], now: datetime) -> dict[int, str]:
    """Why each of these action reminders must not be sent any more, if it must not: the action
    is done or cancelled, its due date moved, it has another owner, or its account left the
    cycle."""
    from kamflow.definitions.discovery import get_workflow
    from kamflow.errors import KamflowError

    if not messages:
        return {}
    rows = session.execute(
        sa.select(
            col(Notification.id),
            col(Notification.action_id),
            col(Notification.action_due),
            col(Notification.person_id),
            col(Action.id).label("found"),
            col(Action.status),
            col(Action.due),
            col(Action.owner_id),
            col(Account.id).label("account"),
            col(Account.name),
            col(Account.workflow),
            col(Account.stage),
        )
        .select_from(Notification)
        .outerjoin(Action, col(Action.id) == col(Notification.action_id))
        .outerjoin(Account, col(Account.id) == col(Action.account_id))
        .where(col(Notification.id).in_([m.id for m in messages]))
    ).all()
    found: dict[int, str] = {}
    for row in rows:
        if row.found is None:
            found[row.id] = "the action no longer exists"
        elif row.status != ActionStatus.OPEN:
            found[row.id] = f"action {row.found} is {row.status}"  # done, or cancelled
        elif row.due != row.action_due:
            due = row.due.isoformat() if row.due else "never"
            found[row.id] = f"action {row.found} is now due {due}"
        elif row.person_id is not None and row.owner_id != row.person_id:
            found[row.id] = f"action {row.found} has another owner now"
        elif row.account is None:
            found[row.id] = "the account no longer exists"
        else:
            try:
                definition = get_workflow(row.workflow)
            except KamflowError:  # a broken workflow file: the reminder is still true
                continue
            if definition.is_exit(row.stage):
                found[row.id] = f"{row.name} has left the cycle ({definition.title_of(row.stage)})"
    return found


# --- what would fire ----------------------------------------------------------------------------


def forecast(
    session: Session, now: datetime, end: datetime, schedule: Schedule
) -> Iterator[tuple[Any, ...]]:
    """Each action reminder that would fire in the window (not queued already), at the moment the
    daemon sends it: the start of its day in KAMFLOW_TIMEZONE, or now for one due already."""
    zone = schedule.timezone
    every = schedule.action_every_days
    today = now.astimezone(zone).date()
    last_day = end.astimezone(zone).date()
    definitions = loaded_workflows(session)
    queued = queued_since(Action, today - timedelta(days=every))
    statement = (
        sa.select(col(Action.due), col(Action.title), col(Account.name), queued.label("queued"))
        .join(Account, col(Account.id) == col(Action.account_id))
        .join(Person, col(Person.id) == col(Action.owner_id))
        .where(
            col(Action.status) == ActionStatus.OPEN.value,
            col(Action.due) <= last_day,
            col(Person.active),
            in_cycle(Account, definitions),
        )
    )
    for rows in stream(session.connection(), statement, BATCH):
        for due, title, account, already in rows:
            day = max(due, today)
            while day <= last_day:
                repeat = repeat_on(due, day, every)
                # Only the reminder of today's repeat can be queued already; later ones cannot.
                if not (day == today and already):
                    at = max(now, datetime.combine(day, time(), tzinfo=zone))
                    yield at, MessageKind.ACTION.value, account, "", repeat, title
                day = due + timedelta(days=(repeat + 1) * every)
