"""Stalled accounts: the owner is reminded past a stage's limit; then leadership gets escalations.

The ladder (`kamflow.ladder`) says which rung is due for an account at a moment. Accounts on the
same rung of the same stage form a range of ``stage_entered_at`` (a `Phase`), so one indexed query
per phase finds every account whose due message is not in the outbox yet and is not snoozed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow.config import Schedule
from kamflow.db import read_scope, stream
from kamflow.definitions.businessdays import WorkCalendar, counting
from kamflow.definitions.ladder import Rung, position
from kamflow.definitions.ladder import schedule as ladder_schedule
from kamflow.definitions.workflow import Workflow
from kamflow.engine import evaluate
from kamflow.guards import AccountRow
from kamflow.models import Account, MessageKind, Notification, Person
from kamflow.notify.message import clean_header
from kamflow.outbox import Draft, Identity
from kamflow.records import snoozes
from kamflow.records.facts import Facts
from kamflow.steps.base import (
    BATCH,
    Phase,
    StepReport,
    StepRun,
    loaded_workflows,
    phases,
)
from kamflow.text import plural, shell_quote

NAME = "stalls"
KINDS = (MessageKind.REMINDER, MessageKind.ESCALATION)


def due_query(
    all_phases: list[Phase], now: datetime, *, snoozes_running: bool
) -> tuple[Any, dict[str, Any]]:
    """The accounts whose due message is neither queued nor paused: one query for every phase,
    phase by phase (the stuck before the behind), oldest first, and the moments to bind to it.

    Nothing else is joined: a steady tick, where nothing is due, is the indexed scan and its
    anti-join and no more. The statement is built once per set of phases (its moments are bound
    at each run), so a tick does not rebuild twenty selects.
    """
    shape = tuple(
        (phase.workflow.name, phase.stage.name, phase.rung.value, phase.entered_after is not None)
        for phase in all_phases
    )
    statement = _due_statement(shape, snoozes_running)
    params: dict[str, Any] = {"now": now}
    for index, phase in enumerate(all_phases):
        params[f"hi{index}"] = phase.entered_by
        params[f"since{index}"] = phase.since
        if phase.entered_after is not None:
            params[f"lo{index}"] = phase.entered_after
    return statement, params


@functools.lru_cache(maxsize=16)
def _due_statement(shape: tuple[tuple[str, str, str, bool], ...], snoozes_running: bool) -> Any:
    table = Account.__table__  # type: ignore[attr-defined]
    outbox = Notification.__table__  # type: ignore[attr-defined]
    person = Person.__table__  # type: ignore[attr-defined]
    # A deactivated owner gets no reminder; an escalation still goes to the active leaders (or,
    # when there is none, to an active owner).
    owner_active = sa.exists().where(person.c.id == table.c.owner_id, person.c.active)
    reachable = {
        Rung.REMIND.value: owner_active,
        Rung.ESCALATE.value: sa.or_(
            owner_active, sa.exists().where(person.c.is_leader, person.c.active)
        ),
    }
    parts = []
    for index, (workflow, stage, rung, bounded_below) in enumerate(shape):
        conditions = [
            table.c.workflow == workflow,
            table.c.stage == stage,
            table.c.stage_entered_at <= sa.bindparam(f"hi{index}"),
        ]
        if bounded_below:
            conditions.append(table.c.stage_entered_at > sa.bindparam(f"lo{index}"))
        # The message due now for the stay is queued already: its rung repeats every so many
        # days, so the outbox row of the one due now fell due after `since`, and no other did.
        queued = sa.exists().where(
            outbox.c.account_id == table.c.id,
            outbox.c.stage == table.c.stage,
            outbox.c.stage_entered_at == table.c.stage_entered_at,
            outbox.c.rung == rung,
            outbox.c.due_at > sa.bindparam(f"since{index}"),
        )
        part = sa.select(
            sa.literal(index).label("phase"),
            table.c.id,
            table.c.name,
            table.c.owner_id,
            table.c.workflow,
            table.c.stage,
            table.c.stage_entered_at,
        ).where(*conditions, ~queued, reachable[rung])
        if snoozes_running:
            part = part.where(~snoozes.pausing(table.c, sa.bindparam("now")))
        parts.append(part)
    union = sa.union_all(*parts).subquery()
    return sa.select(union).order_by(union.c.phase, union.c.stage_entered_at, union.c.id)


def leader_emails(connection: Session | sa.Connection) -> list[str]:
    """Every active leader's email, in order: whom an escalation is addressed to."""
    rows = connection.execute(
        sa.select(col(Person.email))
        .where(col(Person.is_leader), col(Person.active))
        .order_by(col(Person.email))
    )
    return [email for (email,) in rows]


def queue_stalls(run: StepRun) -> StepReport:
    """Queue the latest reminder or escalation due per overdue account, one transaction a batch."""
    report = StepReport(NAME)
    with read_scope(run.engine) as reading:
        all_phases = phases(loaded_workflows(reading), run.now, run.schedule.calendar)
        if not all_phases:
            return report
        running = snoozes.any_active(reading, run.now)
        statement, params = due_query(all_phases, run.now, snoozes_running=running)
        leaders: list[str] | None = None
        for rows in stream(reading, statement, BATCH, params):
            report.examined += len(rows)
            with Session(bind=reading) as session:
                if leaders is None:
                    leaders = leader_emails(session)
                owners = _owners(session, {row.owner_id for row in rows})
                # What the guards read, and the reminders already had, for the whole batch.
                facts = Facts(session, [row.id for row in rows])
                stuck = [row for row in rows if all_phases[row.phase].rung == Rung.ESCALATE]
                reminded = _reminders_so_far(session, stuck) if stuck else {}
                drafts: list[Draft] = []
                for phase_order, group in groupby(rows, key=lambda row: row.phase):
                    phase = all_phases[phase_order]
                    batch = Batch(session, facts, owners, leaders, reminded)
                    drafts += _drafts(batch, phase, list(group), run.now)
            report.offer(run, drafts)
    return report


def _owners(session: Session, ids: set[int]) -> dict[int, tuple[str, str, bool]]:
    """The email and name of each of these people (a batch's owners), and whether they are
    active."""
    rows = session.execute(
        sa.select(col(Person.id), col(Person.email), col(Person.name), col(Person.active)).where(
            col(Person.id).in_(sorted(ids))
        )
    )
    return {person_id: (email, name, active) for person_id, email, name, active in rows}


@dataclass(frozen=True)
class Batch:
    """What the drafts of one batch share: its session, facts, owners, leaders, reminders."""

    session: Session
    facts: Facts
    owners: dict[int, tuple[str, str, bool]]
    leaders: list[str]
    reminded: dict[tuple[int, datetime], int]


def _drafts(batch: Batch, phase: Phase, rows: list[Any], now: datetime) -> Iterator[Draft]:
    """The reminder or escalation for each account of one phase of a batch."""
    definition, stage, days = phase.workflow, phase.stage, phase.days
    ladder = definition.ladder_for(stage)
    moves = definition.moves_from(stage.name)
    escalation = phase.rung == Rung.ESCALATE
    session, facts, leaders, reminded = batch.session, batch.facts, batch.leaders, batch.reminded
    for row in rows:
        where = position(row.stage_entered_at, stage.limit, ladder, now, days)
        if where.rung is None:  # cannot happen for a row of the phase; never queue a stray
            continue
        account = AccountRow(
            row.id, row.name, row.owner_id, row.workflow, row.stage, row.stage_entered_at
        )
        email, owner_name, owner_active = batch.owners[row.owner_id]
        unmet: list[str] = []
        next_title = ""
        if moves:
            next_title = definition.title_of(moves[0].dest)
            # What the move still needs, for the message: not who may make it.
            verdicts = evaluate(
                session, account, definition, moves[0], actor=email, now=now, facts=facts, who=False
            )
            unmet = [verdict.message for verdict in verdicts if not verdict.ok]
        to = list(leaders) if escalation and leaders else [email]
        # An owner who leads gets it once; a deactivated owner does not get it at all.
        cc = [] if email in to or not owner_active else [email]
        if not owner_active and email in to:
            continue  # the scan leaves these out; an owner deactivated since gets nothing
        name = clean_header(row.name)
        stage_title = definition.title_of(stage.name)
        context = {
            "account": name,
            "stage": stage_title,
            "next_stage": next_title,
            "days": where.days_in_stage,
            "limit": stage.limit,
            "unit": days.unit,
            "days_over": where.days_over,
            "owner": email,
            "owner_name": owner_name,
            "unmet": unmet,
            "escalation": escalation,
            "no_leaders": escalation and not leaders,
            "reminders_sent": reminded.get((row.id, row.stage_entered_at), 0),
            "repeat": where.repeat,
            "why_command": f"kamflow why {shell_quote(row.name)}",
            "advance_command": f"kamflow advance {shell_quote(row.name)}",
            "snooze_command": f"kamflow snooze {shell_quote(row.name)} --days 7 --reason TEXT",
        }
        prefix = "Escalation: " if escalation else ""
        yield Draft(
            identity=Identity.stall(
                MessageKind.ESCALATION if escalation else MessageKind.REMINDER,
                account_id=row.id,
                owner_id=row.owner_id,
                stage=stage.name,
                entered_at=row.stage_entered_at,
                rung=where.rung.value,
                repeat=where.repeat,
            ),
            recipients=to,
            cc=cc,
            subject=(
                f"{prefix}{name} has been in {stage_title} "
                f"for {plural(where.days_in_stage, days.unit)}"
            ),
            template="stall",
            context=context,
            due_at=where.due_at,
        )


def _reminders_so_far(session: Session, rows: list[Any]) -> dict[tuple[int, datetime], int]:
    """How many reminders each account of the batch had in its current stay."""
    found = session.execute(
        sa.select(
            col(Notification.account_id),
            col(Notification.stage),
            col(Notification.stage_entered_at),
            sa.func.count(),
        )
        .where(
            col(Notification.account_id).in_([row.id for row in rows]),
            col(Notification.rung) == Rung.REMIND.value,
        )
        .group_by(
            col(Notification.account_id),
            col(Notification.stage),
            col(Notification.stage_entered_at),
        )
    ).all()
    stays = {(row.id, row.stage, row.stage_entered_at) for row in rows}
    return {
        (account_id, entered): count
        for account_id, stage, entered, count in found
        if (account_id, stage, entered) in stays
    }


# --- messages that are no longer true -----------------------------------------------------------


def stale(session: Session, messages: list[Any], now: datetime) -> dict[int, str]:
    """Why each of these reminders or escalations must not be sent any more, if it must not.

    A stall message belongs to one stay of the account in one stage and never outlives it, nor is
    it sent while that stay is snoozed.
    """
    if not messages:
        return {}
    rows = session.execute(
        sa.select(
            col(Notification.id),
            col(Notification.stage),
            col(Notification.stage_entered_at),
            col(Account.id).label("account"),
            col(Account.name),
            col(Account.workflow),
            col(Account.stage).label("now_in"),
            col(Account.stage_entered_at).label("now_entered"),
        )
        .select_from(Notification)
        .outerjoin(Account, col(Account.id) == col(Notification.account_id))
        .where(col(Notification.id).in_([m.id for m in messages]))
    ).all()
    paused = _pauses(session, [row.account for row in rows if row.account is not None], now)
    found: dict[int, str] = {}
    for row in rows:
        if row.account is None:
            found[row.id] = "the account no longer exists"
        elif row.now_in != row.stage:
            found[row.id] = (
                f"{row.name} has left {_title(row.workflow, row.stage)} "
                f"(now {_title(row.workflow, row.now_in)})"
            )
        elif row.now_entered != row.stage_entered_at:
            found[row.id] = (
                f"{row.name} has left {_title(row.workflow, row.stage)} and entered it again since"
            )
        elif (row.account, row.stage, row.stage_entered_at) in paused:
            until, reason = paused[(row.account, row.stage, row.stage_entered_at)]
            found[row.id] = f"{row.name} is snoozed until {until.date().isoformat()}: {reason}"
    return found


def _pauses(
    session: Session, account_ids: list[int], now: datetime
) -> dict[tuple[int, str, datetime], tuple[datetime, str]]:
    """The longest running snooze of each stay of these accounts."""
    from kamflow.models import Snooze

    if not account_ids:
        return {}
    rows = session.execute(
        sa.select(
            col(Snooze.account_id),
            col(Snooze.stage),
            col(Snooze.stage_entered_at),
            col(Snooze.until),
            col(Snooze.reason),
        )
        .where(col(Snooze.account_id).in_(account_ids), col(Snooze.until) > now)
        .order_by(col(Snooze.until))
    ).all()
    return {(a, stage, entered): (until, reason) for a, stage, entered, until, reason in rows}


def _title(workflow: str, stage: str) -> str:
    """A stage as people read it (its name if the workflow file is broken)."""
    from kamflow.definitions.discovery import get_workflow
    from kamflow.errors import KamflowError

    try:
        return get_workflow(workflow).title_of(stage)
    except KamflowError:
        return stage


# --- what would fire ----------------------------------------------------------------------------


def forecast(
    session: Session, now: datetime, end: datetime, schedule: Schedule
) -> Iterator[tuple[Any, ...]]:
    """Each reminder and escalation that would fire in (now, end] if nothing changed.

    Yields (at, kind, account, stage title, repeat, ""): what is due when the window opens (now,
    or when a snooze ends) fires then, the latest rung only, as the step sends it; then each
    later rung.
    """
    from kamflow.models import Snooze

    # With no active leader, an escalation goes to the owner; without them, to nobody.
    leaders = bool(leader_emails(session))
    for definition in loaded_workflows(session):
        for stage in definition.spec.stages:
            yield from _forecast_stage(
                session, definition, stage, (now, end), schedule.calendar, Snooze, leaders
            )


def _forecast_stage(
    session: Session,
    definition: Workflow,
    stage: Any,
    window: tuple[datetime, datetime],
    calendar: WorkCalendar,
    snooze: Any,
    leaders: bool,
) -> Iterator[tuple[Any, ...]]:
    now, end = window
    ladder = definition.ladder_for(stage)
    days = counting(stage, calendar)
    latest_queued = (
        sa.select(sa.func.max(col(Notification.due_at)))
        .where(
            col(Notification.account_id) == Account.id,
            col(Notification.stage) == Account.stage,
            col(Notification.stage_entered_at) == Account.stage_entered_at,
        )
        .scalar_subquery()
    )
    paused_until = (
        sa.select(sa.func.max(snooze.until))
        .where(
            snooze.account_id == Account.id,
            snooze.stage == Account.stage,
            snooze.stage_entered_at == Account.stage_entered_at,
            snooze.until > now,
        )
        .scalar_subquery()
    )
    moment = Account.__table__.c.stage_entered_at.type  # type: ignore[attr-defined]
    statement = (
        sa.select(
            col(Account.name),
            col(Account.stage_entered_at),
            sa.type_coerce(latest_queued, moment).label("queued"),
            sa.type_coerce(paused_until, moment).label("until"),
            col(Person.active),
        )
        .join(Person, col(Person.id) == col(Account.owner_id))
        .where(
            col(Account.workflow) == definition.name,
            col(Account.stage) == stage.name,
            # Entered late enough, the limit runs out after ``end``: left out.
            col(Account.stage_entered_at) <= days.cutoff(end, stage.limit),
        )
    )
    title = definition.title_of(stage.name)
    for rows in stream(session.connection(), statement, BATCH):
        for name, entered, queued, until, owner_active in rows:
            if not owner_active and not leaders:
                continue  # nobody active to remind or to escalate to
            begin = until or now
            if begin > end:
                continue
            current = position(entered, stage.limit, ladder, begin, days)
            rungs = []
            if current.rung is not None and current.due_at != queued:
                rungs.append((begin, current.rung, current.repeat))
            rungs += ladder_schedule(entered, stage.limit, ladder, begin, end, days)
            for at, rung, repeat in rungs:
                if rung == Rung.REMIND and not owner_active:
                    continue  # a deactivated owner gets no reminder
                kind = MessageKind.ESCALATION if rung == Rung.ESCALATE else MessageKind.REMINDER
                yield at, kind.value, name, title, repeat, ""
