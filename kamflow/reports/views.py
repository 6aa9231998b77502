"""Everything about one account, gathered for `account show`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import engine
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar
from kamflow.definitions.discovery import get_workflow
from kamflow.models import Account, Action, ActionStatus, Person, Strategy
from kamflow.records import accounts, history, plan, snoozes
from kamflow.records.scores import scores_of
from kamflow.reports.portfolio import summary
from kamflow.text import shell_quote

UTC_ZONE = ZoneInfo("UTC")


def account_details(
    session: Session,
    ref: str,
    *,
    actor: str,
    now: datetime,
    timezone: ZoneInfo = UTC_ZONE,
    calendar: WorkCalendar = UTC_CALENDAR,
) -> dict[str, Any]:
    """Everything ``account show`` shows about one account: its place and status, strategy, team,
    plan progress, actions, KPIs, latest review, scores, what each move from its stage still
    needs (judged for ``actor``), the snooze that pauses its reminders, and warnings about what
    deactivated people still own of it.

    ``timezone`` decides which day is today, and so which actions are overdue; a stage that counts
    business days counts those of ``calendar``. Raises NotFound for an unknown account.
    """
    account, owner, details = account_summary(session, ref, now=now, calendar=calendar)
    parts = plan_parts(session, account, now=now, timezone=timezone)
    questions = parts.pop("questions")
    details.update(parts)
    details["plan"] = {
        "questions": len(questions),
        "answered": sum(q["status"] == "answered" for q in questions),
        "not_applicable": sum(q["status"] == "n/a" for q in questions),
        "required": sum(q["required"] for q in questions),
        "required_answered": sum(q["required"] and q["status"] == "answered" for q in questions),
    }
    details["scores"] = scores_of(session, ref)
    details["next"] = engine.why(session, ref, actor=actor, now=now, calendar=calendar)["moves"]
    details["owner_active"] = owner.active
    details["snooze"] = snoozes.snooze_view(session, account, now)
    details["warnings"] = _warnings(session, account, owner)
    return details


def account_summary(
    session: Session, ref: str, *, now: datetime, calendar: WorkCalendar = UTC_CALENDAR
) -> tuple[Account, Person, dict[str, Any]]:
    """Account ``ref``, its owner, and its one-line facts as `account list` shows them (its place,
    days in it and status at ``now``, business days counted by ``calendar``, snoozed while a
    snooze runs). NotFound for an unknown account."""
    account = accounts.find_account(session, ref)
    owner = session.get(Person, account.owner_id)
    assert owner is not None
    snoozed = snoozes.active_snooze(session, account, now) is not None
    return (
        account,
        owner,
        summary(
            account, owner, get_workflow(account.workflow), now, snoozed=snoozed, calendar=calendar
        ),
    )


def plan_parts(
    session: Session, account: Account, *, now: datetime, timezone: ZoneInfo = UTC_ZONE
) -> dict[str, Any]:
    """The account plan of ``account`` as `account show` and `plan export` show it: the strategy
    (what, with whom, why; None when not set), the holders of each role, every question with its
    answer, the actions (overdue judged by today in ``timezone``), the KPIs against their latest
    values, and the latest review (None when there is none). A query or two each."""
    ref = account.name  # found again by the name index, which no other account shares
    strategy = session.get(Strategy, account.id)
    review = plan.latest_review(session, account)
    return {
        "strategy": (
            {
                "objective": strategy.objective,
                "who": strategy.stakeholders,
                "why": strategy.rationale,
            }
            if strategy
            else None
        ),
        "roles": plan.roles_view(session, account),
        "questions": plan.questions_view(session, ref),
        "actions": account_actions(session, ref, now=now, timezone=timezone),
        "kpis": plan.kpis_view(session, account),
        "latest_review": (
            {
                "conclusion": review.conclusion,
                "written_at": review.written_at.isoformat(),
                "written_by": review.written_by,
            }
            if review
            else None
        ),
    }


def _warnings(session: Session, account: Account, owner: Person) -> list[str]:
    """What nobody is reminded of: the account of a deactivated owner, and its open actions
    owned by deactivated people (one query)."""
    found = []
    if not owner.active:
        found.append(
            f"the owner {owner.email} is deactivated: nobody is reminded of this account "
            f"(kamflow account reassign {shell_quote(account.name)} EMAIL)"
        )
    orphans = session.execute(
        sa.select(col(Action.id), col(Person.email))
        .join(Person, col(Person.id) == col(Action.owner_id))
        .where(
            col(Action.account_id) == account.id,
            col(Action.status) == ActionStatus.OPEN.value,
            ~col(Person.active),
        )
        .order_by(col(Action.id))
    ).all()
    for action_id, email in orphans:
        found.append(
            f"open action #{action_id} is owned by {email}, who is deactivated "
            f"(kamflow person deactivate {email} --reassign-to EMAIL)"
        )
    return found


def account_questions(
    session: Session, ref: str, *, only_open: bool = False
) -> list[dict[str, Any]]:
    """The planning questions of an account with their answers; ``only_open``: the unanswered."""
    rows = plan.questions_view(session, ref)
    return [row for row in rows if row["status"] == "open"] if only_open else rows


def account_actions(
    session: Session, ref: str, *, now: datetime, timezone: ZoneInfo = UTC_ZONE
) -> list[dict[str, Any]]:
    """The actions of an account's plan; overdue is judged by today's date in ``timezone``."""
    return plan.actions_view(session, ref, today=now.astimezone(timezone).date())


def account_history(session: Session, ref: str) -> list[dict[str, Any]]:
    """Every change to an account, oldest first."""
    return history.entries(session, accounts.find_account(session, ref))
