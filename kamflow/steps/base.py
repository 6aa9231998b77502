"""What every step shares: its run (engine, time, schedule), its report, heartbeats, the scans.

A queuing step finds everything that is due with a few set-based queries, streamed in batches;
each batch is judged, rendered and inserted in one transaction. What was queued already is an
anti-join against the outbox's typed columns, so a step that runs twice queues nothing twice and a
steady tick (nothing new due) costs about one indexed scan of the overdue accounts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.config import MailSettings, Schedule
from kamflow.db import dialect_insert, read_scope, session_scope
from kamflow.definitions.businessdays import (
    CALENDAR_DAYS,
    UTC_CALENDAR,
    DayCount,
    WorkCalendar,
    counting,
)
from kamflow.definitions.discovery import workflows_in_use
from kamflow.definitions.ladder import Rung, Status
from kamflow.definitions.spec import StageSpec
from kamflow.definitions.workflow import Workflow
from kamflow.models import Account, Heartbeat
from kamflow.outbox import Draft, queue_many


@dataclass
class StepRun:
    """One run of the steps: the database, the time, the settings, and whether to write."""

    engine: sa.Engine
    now: datetime
    schedule: Schedule
    mail: MailSettings | None = None
    dry_run: bool = False
    #: On a dry run, the (person, "account" or "action", id) the steps before this one would have
    #: reminded someone of (a digest leaves them out).
    earlier: set[tuple[int | None, str, int | None]] = field(default_factory=set)
    worker: str | None = None
    #: Told of each message as it is queued (what `describe` gives): a caller that prints them
    #: need not keep them all in memory.
    on_queued: Callable[[dict[str, Any]], None] | None = None
    #: Whether each step's report keeps the list of what it queued (the daemon keeps counts).
    keep_queued: bool = True


@dataclass
class StepReport:
    """What one run of a queuing step did (or, on a dry run, would do)."""

    step: str
    queued: list[dict[str, Any]] = field(default_factory=list)
    #: How many items the step found due (and not queued before), and how many it queued.
    examined: int = 0
    count: int = 0
    #: On a dry run, who would have been reminded of which account or action.
    mentions: set[tuple[int | None, str, int | None]] = field(default_factory=set, repr=False)

    def summary(self) -> str:
        """One line for the log: how many items the step examined and how many it queued."""
        return f"{self.step}: examined {self.examined}, queued {self.count}"

    def as_dict(self) -> dict[str, Any]:
        """The counts, as the step's heartbeat records them."""
        return {"examined": self.examined, "queued": self.count}

    def offer(self, run: StepRun, drafts: list[Draft]) -> None:
        """Queue a batch of drafts in one transaction (a dry run only notes them); those this run
        inserted are counted (another daemon may have queued some of them first)."""
        if not drafts:
            return
        if run.dry_run:
            inserted = {draft.key for draft in drafts}
            self.mentions.update(filter(None, (draft.mention() for draft in drafts)))
        else:
            with session_scope(run.engine) as session:
                inserted = queue_many(session, drafts, now=run.now)
        for draft in drafts:
            if draft.key not in inserted:
                continue
            self.count += 1
            if run.keep_queued or run.on_queued is not None:
                described = draft.describe()
                if run.keep_queued:
                    self.queued.append(described)
                if run.on_queued is not None:
                    run.on_queued(described)


# --- heartbeats ----------------------------------------------------------------------------------


def record_heartbeat(
    engine: sa.Engine,
    step: str,
    now: datetime,
    *,
    ok: bool,
    detail: dict[str, Any],
) -> None:
    """Say that ``step`` ran, and how (`kamflow status` shows it)."""
    values: dict[str, Any] = {
        "step": step,
        "at": now,
        "ok": ok,
        "detail": json.dumps(detail, default=str),
        "done_period": "",
    }
    changes = {"at": now, "ok": ok, "detail": values["detail"]}
    with session_scope(engine) as session:
        statement = dialect_insert(session)(Heartbeat).values(**values)
        session.execute(statement.on_conflict_do_update(index_elements=["step"], set_=changes))


def heartbeats(session: Session) -> dict[str, dict[str, Any]]:
    """Each step's last run, by step name: when (ISO 8601), whether it went well, and the details it
    recorded."""
    return {
        row.step: {"at": row.at.isoformat(), "ok": row.ok, "detail": json.loads(row.detail or "{}")}
        for row in session.exec(select(Heartbeat)).all()
    }


def mark_done(engine: sa.Engine, step: str, period: str, now: datetime) -> None:
    """Record that ``step`` finished its whole pass for ``period``."""
    values = {"step": step, "at": now, "ok": True, "detail": "{}", "done_period": period}
    with session_scope(engine) as session:
        statement = dialect_insert(session)(Heartbeat).values(**values)
        session.execute(
            statement.on_conflict_do_update(index_elements=["step"], set_={"done_period": period})
        )


def done_period(engine: sa.Engine, step: str) -> str:
    """The latest period for which ``step`` finished its pass ("" if none)."""
    with read_scope(engine) as reading:
        found = reading.execute(
            sa.select(col(Heartbeat.done_period)).where(col(Heartbeat.step) == step)
        ).scalar()
    return found or ""


# --- the workflows whose accounts the steps look at ----------------------------------------------


def loaded_workflows(connection: Session | sa.Connection) -> list[Workflow]:
    """The workflows some account follows; one whose file is broken is left out, with a warning,
    so that it holds up only its own accounts (discovery.workflows_in_use)."""
    return workflows_in_use(connection)


def in_cycle(account: Any, definitions: list[Workflow]) -> Any:
    """SQL: the account follows one of ``definitions`` and is in one of its stages or intake
    places (it has not left the cycle).

    Written on ``workflow:stage`` as one value on purpose: scans driven by another table (actions,
    KPIs) must not be planned as a walk over the account index.
    """
    places = [f"{d.name}:{place}" for d in definitions for place in d.spec.active]
    return (account.workflow + ":" + account.stage).in_(places)


# --- the ladder as ranges of stage_entered_at ---------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """The accounts of one stage of one workflow on one rung of the ladder at ``now``.

    Every account of the phase entered its stage in (``entered_after``, ``entered_by``]; on that
    rung its messages repeat every so many days, so the one due now fell due after ``since`` (that
    many of the stage's days before now) and every earlier one by then: that is how a scan tells,
    in SQL, whether it is queued already. Each moment is the stage's cutoff for that many days
    (`DayCount.cutoff`), computed once per phase.
    """

    workflow: Workflow
    stage: StageSpec
    rung: Rung
    entered_after: datetime | None
    entered_by: datetime
    since: datetime
    order: int
    #: How the stage counts its days (calendar days or business days).
    days: DayCount = CALENDAR_DAYS

    @property
    def status(self) -> Status:
        """The status of the phase's accounts: stuck on the escalation rung, behind on the
        reminder rung."""
        return Status.STUCK if self.rung == Rung.ESCALATE else Status.BEHIND

    def contains(self, account: Any) -> Any:
        """SQL: ``account`` (the table or an alias) is in this phase."""
        conditions = [
            account.workflow == self.workflow.name,
            account.stage == self.stage.name,
            account.stage_entered_at <= self.entered_by,
        ]
        if self.entered_after is not None:
            conditions.append(account.stage_entered_at > self.entered_after)
        return sa.and_(*conditions)


def phases(
    definitions: list[Workflow], now: datetime, calendar: WorkCalendar = UTC_CALENDAR
) -> list[Phase]:
    """Stuck and behind, for every stage of every workflow, in workflow and stage order (a stage
    that counts business days counts those of ``calendar``)."""
    found: list[Phase] = []
    for definition in definitions:
        for stage in definition.spec.stages:
            ladder = definition.ladder_for(stage)
            days = counting(stage, calendar)
            limit = days.cutoff(now, stage.limit)
            escalate_line = days.cutoff(now, stage.limit + ladder.escalate_after_days)
            # The stuck before the behind: escalations are queued (and sent) first.
            found.append(
                Phase(
                    definition,
                    stage,
                    Rung.ESCALATE,
                    None,
                    escalate_line,
                    days.cutoff(now, ladder.escalate_every_days),
                    len(found),
                    days,
                )
            )
            found.append(
                Phase(
                    definition,
                    stage,
                    Rung.REMIND,
                    escalate_line,
                    limit,
                    days.cutoff(now, ladder.remind_every_days),
                    len(found),
                    days,
                )
            )
    return found


def overdue_counts(
    connection: Session | sa.Connection, now: datetime, calendar: WorkCalendar = UTC_CALENDAR
) -> Iterator[tuple[Phase, int]]:
    """How many accounts each phase holds, counted in SQL."""
    for phase in phases(loaded_workflows(connection), now, calendar):
        count = connection.execute(
            sa.select(sa.func.count()).select_from(Account).where(phase.contains(Account))
        ).scalar_one()
        yield phase, count


BATCH = defaults.STEP_BATCH
