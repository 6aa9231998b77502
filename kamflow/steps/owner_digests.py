"""Each owner's daily digest: their behind and stuck accounts and overdue actions, if any is left.

The digest is due at its latest scheduled moment (08:00 in KAMFLOW_TIMEZONE); its identity names
the day, so it is queued once however often the step runs, and a step that runs after an outage
or a downtime sends the latest one. What an owner was already reminded of that day is left out.
Once a day's pass has finished, later runs that day cost one lookup.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col

from kamflow.db import read_scope, stream
from kamflow.definitions.ladder import position
from kamflow.models import (
    Account,
    Action,
    ActionStatus,
    MessageKind,
    Notification,
    OutboxStatus,
    Person,
)
from kamflow.outbox import Draft, Identity
from kamflow.records import snoozes
from kamflow.steps.base import (
    BATCH,
    Phase,
    StepReport,
    StepRun,
    done_period,
    in_cycle,
    loaded_workflows,
    mark_done,
    phases,
)
from kamflow.text import plural, shell_quote

NAME = "owner digests"
#: How many owners' digests are written in one transaction.
OWNERS_PER_BATCH = 100


def latest_daily(now: datetime, zone: ZoneInfo, hour: int, minute: int) -> datetime:
    """The latest moment at ``hour:minute`` in ``zone`` that is not after ``now``."""
    local = now.astimezone(zone)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at <= local else at - timedelta(days=1)


def _reminded_since(since: datetime, *, account: Any = None, action: Any = None) -> Any:
    """SQL: the item's owner was sent (or is about to be sent) a message about it since
    ``since``; a dead or obsolete one never reached them, so the digest still names the item."""
    about = (
        sa.and_(
            col(Notification.account_id) == account.id,
            col(Notification.kind).in_([MessageKind.REMINDER.value, MessageKind.ESCALATION.value]),
            col(Notification.person_id) == account.owner_id,
        )
        if account is not None
        else sa.and_(
            col(Notification.action_id) == action.id,
            col(Notification.kind) == MessageKind.ACTION.value,
            col(Notification.person_id) == action.owner_id,
        )
    )
    return sa.exists().where(
        about,
        col(Notification.created_at) >= since,
        col(Notification.status).in_([OutboxStatus.PENDING.value, OutboxStatus.SENT.value]),
    )


def _has_digest(owner: Any, period: str) -> Any:
    """SQL: ``owner`` (a person id column) has this period's digest queued."""
    return sa.exists().where(
        col(Notification.person_id) == owner,
        col(Notification.kind) == MessageKind.OWNER_DIGEST.value,
        col(Notification.period) == period,
    )


def _accounts_query(
    all_phases: list[Phase], now: datetime, since: datetime, period: str, *, snoozed: bool
) -> Any:
    """Behind and stuck accounts, not snoozed, not reminded of since ``since``, of active owners
    without this period's digest; by owner, then workflow and stage, then id."""
    parts = []
    for phase in all_phases:
        part: Any = (
            sa.select(
                col(Account.owner_id).label("owner"),
                sa.literal(phase.order).label("phase"),
                col(Account.id),
                col(Account.name),
                col(Account.stage_entered_at),
                col(Person.email),
            )
            .join(Person, col(Person.id) == col(Account.owner_id))
            .where(
                phase.contains(Account),
                col(Person.active),
                ~_reminded_since(since, account=Account),
                ~_has_digest(Account.owner_id, period),
            )
        )
        if snoozed:
            part = part.where(~snoozes.pausing(Account, now))
        parts.append(part)
    if not parts:
        return None
    union = sa.union_all(*parts).subquery()
    return sa.select(union).order_by(union.c.owner, union.c.phase, union.c.id)


def _actions_query(definitions: list[Any], day: date, since: datetime, period: str) -> Any:
    """Open actions due by ``day``, of accounts in their cycle, not reminded of since ``since``,
    of active owners without this period's digest; by owner, then due date."""
    return (
        sa.select(
            col(Action.owner_id).label("owner"),
            col(Action.id),
            col(Action.title),
            col(Action.due),
            col(Account.name).label("account"),
            col(Person.email),
        )
        .join(Account, col(Account.id) == col(Action.account_id))
        .join(Person, col(Person.id) == col(Action.owner_id))
        .where(
            col(Person.active),
            col(Action.status) == ActionStatus.OPEN.value,
            col(Action.due) <= day,
            in_cycle(Account, definitions),
            ~_reminded_since(since, action=Action),
            ~_has_digest(Action.owner_id, period),
        )
        .order_by(col(Action.owner_id), col(Action.due), col(Action.id))
    )


def queue_owner_digests(run: StepRun) -> StepReport:
    """Each owner's daily digest of behind/stuck accounts and overdue actions, if any is left."""
    report = StepReport(NAME)
    zone = run.schedule.timezone
    at = latest_daily(run.now, zone, *run.schedule.owner_digest)
    period = at.date().isoformat()
    if not run.dry_run and done_period(run.engine, NAME) == period:
        return report  # today's pass is finished: nothing to build
    since = at.replace(hour=0, minute=0)
    left_out = run.earlier
    with read_scope(run.engine) as reading:
        definitions = loaded_workflows(reading)
        all_phases = phases(definitions, run.now, run.schedule.calendar)
        running = snoozes.any_active(reading, run.now)
        accounts = _accounts_query(all_phases, run.now, since, period, snoozed=running)
        streams: list[Iterable[tuple[int, str, Any]]] = [
            _tagged(reading, _actions_query(definitions, at.date(), since, period), "action")
        ]
        if accounts is not None:
            streams.insert(0, _tagged(reading, accounts, "account"))
        merged = heapq.merge(*streams, key=lambda item: item[0])
        drafts: list[Draft] = []
        by_phase = {phase.order: phase for phase in all_phases}
        for owner, items in groupby(merged, key=lambda item: item[0]):
            found = [(what, row) for _, what, row in items if (owner, what, row.id) not in left_out]
            report.examined += 1
            draft = _digest(owner, found, by_phase, at, period, run.now)
            if draft is not None:
                drafts.append(draft)
            if len(drafts) >= OWNERS_PER_BATCH:
                report.offer(run, drafts)
                drafts = []
        report.offer(run, drafts)
    if not run.dry_run:
        mark_done(run.engine, NAME, period, run.now)
    return report


def _tagged(connection: sa.Connection, statement: Any, what: str) -> Iterator[tuple[int, str, Any]]:
    for rows in stream(connection, statement, BATCH):
        for row in rows:
            yield row.owner, what, row


def _digest(
    owner: int,
    items: list[tuple[str, Any]],
    by_phase: dict[int, Phase],
    at: datetime,
    period: str,
    now: datetime,
) -> Draft | None:
    accounts = []
    todo = []
    email = ""
    for what, row in items:
        email = row.email
        if what == "account":
            phase = by_phase[row.phase]
            stage = phase.stage
            ladder = phase.workflow.ladder_for(stage)
            where = position(row.stage_entered_at, stage.limit, ladder, now, phase.days)
            accounts.append(
                {
                    "name": row.name,
                    "stage": phase.workflow.title_of(stage.name),
                    "days": where.days_in_stage,
                    "limit": stage.limit,
                    "unit": phase.days.unit,
                    "status": where.status.value,
                    "command": f"kamflow why {shell_quote(row.name)}",
                }
            )
        else:
            todo.append(
                {
                    "account": row.account,
                    "title": row.title,
                    "due": row.due.isoformat(),
                    "days_late": (at.date() - row.due).days,
                    "command": f"kamflow action done {shell_quote(row.account)} {row.id}",
                }
            )
    if not accounts and not todo:
        return None
    parts = []
    if accounts:
        parts.append(plural(len(accounts), "account"))
    if todo:
        parts.append(plural(len(todo), "action"))
    needs = "needs" if len(accounts) + len(todo) == 1 else "need"
    return Draft(
        identity=Identity.digest(MessageKind.OWNER_DIGEST, person_id=owner, period=period),
        recipients=[email],
        cc=[],
        subject=f"Daily digest for {period}: {' and '.join(parts)} {needs} you",
        template="owner_digest",
        context={"owner": email, "day": period, "accounts": accounts, "actions": todo},
        due_at=at,
    )
