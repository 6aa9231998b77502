"""The steps that notice stalls: stalled accounts remind and escalate; overdue actions remind.

Each step is a plain function over the database (``engine``, ``now``) that `kamflow tick`, the
daemon or a test calls once. What was already queued lives in the outbox, keyed, so running a step
twice, or in two daemons at once, queues nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow import defaults, history
from kamflow.accounts import find_account
from kamflow.db import session_scope
from kamflow.engine import evaluate
from kamflow.errors import InvalidInput, KamflowError
from kamflow.ladder import Position, Rung, Status, position
from kamflow.models import (
    Account,
    Action,
    ActionStatus,
    HistoryKind,
    Notification,
    Person,
    Snooze,
)
from kamflow.notify.message import clean_header
from kamflow.notify.templates import render
from kamflow.outbox import Draft, already_queued, queue
from kamflow.people import require_owner_or_leader
from kamflow.text import one_line, shell_quote
from kamflow.workflow import StageSpec, Workflow, get_workflow, workflows_in_use

log = logging.getLogger("kamflow.escalation")


@dataclass
class StepReport:
    """What one run of a step did (or, on a dry run, would do)."""

    step: str
    queued: list[dict[str, Any]] = field(default_factory=list)
    examined: int = 0

    def summary(self) -> str:
        return f"{self.step}: examined {self.examined}, queued {len(self.queued)}"

    def offer(self, session: Session, draft: Draft, *, now: datetime, dry_run: bool) -> None:
        """Queue ``draft`` (a dry run only notes it); counted when this run inserted it."""
        if dry_run or queue(session, draft, now=now):
            self.queued.append(draft.describe())


# --- snoozes ------------------------------------------------------------------------------------


def active_snooze(session: Session, account: Account, now: datetime) -> Snooze | None:
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
    require_owner_or_leader(session, account, actor, "snooze")
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
        note=f"reminders paused for {days} days, until {row.until.date().isoformat()}: {reason}",
    )
    return row


# --- stalled accounts ---------------------------------------------------------------------------


def stall_position(account: Account, definition: Workflow, now: datetime) -> Position | None:
    stage = definition.stage(account.stage)
    if stage is None:
        return None
    return position(account.stage_entered_at, stage.limit_days, definition.ladder_for(stage), now)


def status_of(account: Account, now: datetime) -> Status | None:
    """on_track / behind / stuck for an account in a stage of the cycle; None once it has exited."""
    try:
        definition = get_workflow(account.workflow)
    except KamflowError:  # its workflow file is missing or broken
        return None
    found = stall_position(account, definition, now)
    return found.status if found else None


def overdue_accounts(session: Session, now: datetime) -> list[tuple[Account, Workflow, StageSpec]]:
    """Accounts past their stage's limit, found with one query per stage (never all accounts)."""
    found = []
    for definition in workflows_in_use(session):
        for stage in definition.spec.stages:
            rows = session.exec(
                select(Account)
                .where(
                    Account.workflow == definition.name,
                    Account.stage == stage.name,
                    col(Account.stage_entered_at) <= now - timedelta(days=stage.limit_days),
                )
                .order_by(col(Account.id))
            ).all()
            found += [(account, definition, stage) for account in rows]
    return found


def has_exited(account: Account) -> bool | None:
    """Whether the account has left the cycle; None when its workflow cannot be loaded."""
    try:
        return get_workflow(account.workflow).is_exit(account.stage)
    except KamflowError:
        return None


def _reminders_so_far(session: Session, account: Account) -> int:
    prefix = f"stall:{account.id}:{account.stage}:{account.stage_entered_at.isoformat()}:remind:"
    return session.exec(
        select(func.count())
        .select_from(Notification)
        .where(col(Notification.key).startswith(prefix, autoescape=True))
    ).one()


def leaders(session: Session) -> list[Person]:
    return list(
        session.exec(select(Person).where(Person.is_leader).order_by(col(Person.email))).all()
    )


def stall_draft(
    session: Session, account: Account, definition: Workflow, where: Position, now: datetime
) -> Draft:
    """The reminder or escalation for an account at ``where`` on the ladder."""
    owner = session.get(Person, account.owner_id)
    assert owner is not None
    moves = definition.moves_from(account.stage)
    unmet: list[str] = []
    next_title = ""
    if moves:
        next_title = definition.title_of(moves[0].dest)
        verdicts = evaluate(session, account, definition, moves[0], actor=owner.email, now=now)
        unmet = [v.message for v in verdicts if not v.ok]
    stage = definition.stage(account.stage)
    assert stage is not None
    escalation = where.rung == Rung.ESCALATE
    heads = leaders(session)
    to = [p.email for p in heads] if escalation and heads else [owner.email]
    cc = [] if owner.email in to else [owner.email]  # an owner who leads gets it once
    name = clean_header(account.name)
    stage_title = definition.title_of(account.stage)
    context = {
        "account": name,
        "stage": stage_title,
        "next_stage": next_title,
        "days": where.days_in_stage,
        "limit": stage.limit_days,
        "days_over": where.days_over,
        "owner": owner.email,
        "owner_name": owner.name,
        "unmet": unmet,
        "escalation": escalation,
        "no_leaders": escalation and not heads,
        "reminders_sent": _reminders_so_far(session, account) if escalation else 0,
        "repeat": where.repeat,
        "why_command": f"kamflow why {shell_quote(account.name)}",
        "advance_command": f"kamflow advance {shell_quote(account.name)}",
        "snooze_command": f"kamflow snooze {shell_quote(account.name)} --days 7 --reason TEXT",
    }
    text, html = render("stall", **context)
    prefix = "Escalation: " if escalation else ""
    subject = f"{prefix}{name} has been in {stage_title} for {where.days_in_stage} days"
    return Draft(
        key=where.key(account.id, account.stage, account.stage_entered_at),  # type: ignore[arg-type]
        kind="escalation" if escalation else "reminder",
        account_id=account.id,
        recipients=to,
        cc=cc,
        subject=subject,
        body_text=text,
        body_html=html,
    )


def queue_stalls(engine: sa.Engine, now: datetime, *, dry_run: bool = False) -> StepReport:
    """Queue the latest reminder or escalation due per overdue account, one transaction each."""
    report = StepReport("stalls")
    with session_scope(engine) as session:
        candidates = [(a.id, d, s) for a, d, s in overdue_accounts(session, now)]
    for account_id, definition, _stage in candidates:
        report.examined += 1
        with session_scope(engine) as session:
            account = session.get(Account, account_id)
            if account is None or definition.stage(account.stage) is None:
                continue
            where = stall_position(account, definition, now)
            if where is None or where.rung is None or active_snooze(session, account, now):
                continue
            key = where.key(account.id, account.stage, account.stage_entered_at)  # type: ignore[arg-type]
            if already_queued(session, key):
                continue
            draft = stall_draft(session, account, definition, where, now)
            report.offer(session, draft, now=now, dry_run=dry_run)
    return report


# --- overdue actions ----------------------------------------------------------------------------


def action_key(action: Action, repeat: int) -> str:
    assert action.due is not None
    return f"action:{action.id}:{action.due.isoformat()}:{repeat}"


def action_repeat(due: date, today: date, every_days: int) -> int:
    return (today - due).days // every_days


def action_draft(
    session: Session, action: Action, account: Account, owner: Person, today: date, repeat: int
) -> Draft:
    assert action.due is not None
    days_late = (today - action.due).days
    name = clean_header(account.name)
    title = clean_header(action.title)
    context = {
        "account": name,
        "title": title,
        "due": action.due.isoformat(),
        "days_late": days_late,
        "resources": action.resources,
        "owner": owner.email,
        "done_command": f"kamflow action done {shell_quote(account.name)} {action.id}",
        "list_command": f"kamflow action list {shell_quote(account.name)}",
    }
    text, html = render("action", **context)
    when = "due today" if days_late == 0 else f"{days_late} days overdue"
    return Draft(
        key=action_key(action, repeat),
        kind="action",
        account_id=account.id,
        recipients=[owner.email],
        cc=[],
        subject=f"Action {when} for {name}: {title}",
        body_text=text,
        body_html=html,
    )


def queue_action_reminders(
    engine: sa.Engine,
    now: datetime,
    *,
    timezone: ZoneInfo,
    every_days: int = defaults.ACTION_REMIND_EVERY_DAYS,
    dry_run: bool = False,
) -> StepReport:
    """Remind each open action's owner on its due date, then every ``every_days`` until done."""
    report = StepReport("actions")
    today = now.astimezone(timezone).date()
    with session_scope(engine) as session:
        rows = session.exec(
            select(Action.id)
            .where(Action.status == ActionStatus.OPEN, col(Action.due) <= today)
            .order_by(col(Action.id))
        ).all()
    for action_id in rows:
        report.examined += 1
        with session_scope(engine) as session:
            action = session.get(Action, action_id)
            if action is None or action.due is None or action.status != ActionStatus.OPEN:
                continue
            account = session.get(Account, action.account_id)
            owner = session.get(Person, action.owner_id) if action.owner_id else None
            if account is None or owner is None:
                continue
            if has_exited(account) is not False:  # exited, or its workflow cannot be loaded
                continue
            repeat = action_repeat(action.due, today, every_days)
            if already_queued(session, action_key(action, repeat)):
                continue
            draft = action_draft(session, action, account, owner, today, repeat)
            report.offer(session, draft, now=now, dry_run=dry_run)
    return report


# --- messages that are no longer true -----------------------------------------------------------


def obsolete_reason(session: Session, key: str, now: datetime) -> str | None:
    """Why a queued reminder, escalation or action reminder must not be sent any more, if so.

    A stall message belongs to one stay of the account in one stage and never outlives it, nor is
    it sent while the account is snoozed; an action reminder stops once the action is done, its
    due date moved or its account left the cycle. Other messages (digests) are always sent.
    """
    kind, _, rest = key.partition(":")
    try:
        if kind == "stall":
            account_id, stage, tail = rest.split(":", 2)
            entered, _rung, _repeat = tail.rsplit(":", 2)
            return _stale_stall(
                session, int(account_id), stage, datetime.fromisoformat(entered), now
            )
        if kind == "action":
            action_id, due, _repeat = rest.split(":")
            return _stale_action(session, int(action_id), date.fromisoformat(due))
    except ValueError:  # not a key kamflow made: send it as it is
        return None
    return None


def _stale_stall(
    session: Session, account_id: int, stage: str, entered: datetime, now: datetime
) -> str | None:
    account = session.get(Account, account_id)
    if account is None:
        return "the account no longer exists"
    if account.stage != stage:
        return f"{account.name} has left {_title(account, stage)} (now {_title(account)})"
    if account.stage_entered_at != entered:
        return f"{account.name} has left {_title(account, stage)} and entered it again since"
    paused = active_snooze(session, account, now)
    if paused is not None:
        return f"{account.name} is snoozed until {paused.until.date().isoformat()}: {paused.reason}"
    return None


def _stale_action(session: Session, action_id: int, due: date) -> str | None:
    action = session.get(Action, action_id)
    if action is None:
        return "the action no longer exists"
    if action.status != ActionStatus.OPEN:
        return f"action {action.id} is done"
    if action.due != due:
        return f"action {action.id} is now due {action.due.isoformat() if action.due else 'never'}"
    account = session.get(Account, action.account_id)
    if account is None:
        return "the account no longer exists"
    if has_exited(account):
        return f"{account.name} has left the cycle ({_title(account)})"
    return None


def _title(account: Account, stage: str | None = None) -> str:
    """A stage of the account's workflow as people read it (its name if the file is broken)."""
    try:
        return get_workflow(account.workflow).title_of(stage or account.stage)
    except KamflowError:
        return stage or account.stage
