"""The account plan: strategy, team roles, answers to the questions, actions, KPIs, reviews."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.definitions.discovery import get_workflow
from kamflow.errors import InvalidInput, NotFound
from kamflow.models import (
    Account,
    Action,
    ActionStatus,
    Answer,
    HistoryKind,
    Kpi,
    KpiValue,
    Person,
    Review,
    RoleAssignment,
    Strategy,
)
from kamflow.records import history
from kamflow.records.accounts import editable, find_account, touch
from kamflow.records.people import get_person
from kamflow.text import MAX_LABEL, MAX_NAME, MAX_TITLE, clean_text
from kamflow.text import format_number as format_number  # the CLI imports it from here


def _changed(
    session: Session, account: Account, kind: HistoryKind, note: str, *, actor: str, now: datetime
) -> None:
    touch(session, account)
    history.record(session, account, actor=actor, at=now, kind=kind, note=note)


# --- strategy -----------------------------------------------------------------------------


def set_strategy(
    session: Session, ref: str, *, objective: str, who: str, why: str, actor: str, now: datetime
) -> Strategy:
    account, _ = editable(session, ref)
    values = {
        "objective": clean_text(objective, "--objective"),
        "stakeholders": clean_text(who, "--who"),
        "rationale": clean_text(why, "--why"),
    }
    strategy = session.get(Strategy, account.id)
    if strategy is None:
        strategy = Strategy(account_id=account.id, updated_at=now, updated_by=actor, **values)  # type: ignore[arg-type]
        session.add(strategy)
    else:
        for field, value in values.items():
            setattr(strategy, field, value)
        strategy.updated_at, strategy.updated_by = now, actor
    _changed(session, account, HistoryKind.STRATEGY, "strategy set", actor=actor, now=now)
    return strategy


# --- roles --------------------------------------------------------------------------------


def _role(role: str) -> str:
    cleaned = role.strip().lower().replace("_", "-").replace(" ", "-")
    if cleaned not in defaults.ROLES:
        raise NotFound(f"no role {role!r} (roles: {', '.join(defaults.ROLES)})")
    return cleaned


def _holding(
    session: Session, account: Account, role: str, person: Person
) -> RoleAssignment | None:
    return session.exec(
        select(RoleAssignment).where(
            RoleAssignment.account_id == account.id,
            RoleAssignment.role == role,
            RoleAssignment.person_id == person.id,
        )
    ).first()


def assign_role(
    session: Session, ref: str, role: str, email: str, *, actor: str, now: datetime
) -> None:
    account, _ = editable(session, ref)
    role = _role(role)
    person = get_person(session, email)
    existing = _holding(session, account, role, person)
    if existing is not None:
        raise InvalidInput(f"{person.email} already holds {role} on {account.name}")
    session.add(
        RoleAssignment(account_id=account.id, role=role, person_id=person.id, assigned_at=now)  # type: ignore[arg-type]
    )
    _changed(
        session, account, HistoryKind.ROLE, f"{person.email} holds {role}", actor=actor, now=now
    )


def unassign_role(
    session: Session, ref: str, role: str, email: str, *, actor: str, now: datetime
) -> None:
    account, _ = editable(session, ref)
    role = _role(role)
    person = get_person(session, email)
    existing = _holding(session, account, role, person)
    if existing is None:
        raise NotFound(f"{person.email} does not hold {role} on {account.name}")
    session.delete(existing)
    _changed(
        session,
        account,
        HistoryKind.ROLE,
        f"{person.email} no longer holds {role}",
        actor=actor,
        now=now,
    )


def roles_view(session: Session, account: Account) -> dict[str, list[str]]:
    rows = session.exec(
        select(RoleAssignment.role, Person.email)
        .join(Person, col(RoleAssignment.person_id) == col(Person.id))
        .where(RoleAssignment.account_id == account.id)
        .order_by(col(Person.email))
    ).all()
    holders: dict[str, list[str]] = {role: [] for role in defaults.ROLES}
    for role, email in rows:
        holders.setdefault(role, []).append(email)
    return holders


# --- questions and answers ------------------------------------------------------------------


def questions_view(session: Session, ref: str) -> list[dict[str, Any]]:
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    bank, required = definition.questions, set(definition.required_questions)
    answers = {
        a.question_id: a
        for a in session.exec(select(Answer).where(Answer.account_id == account.id)).all()
    }
    rows = []
    for question in bank.questions:
        answer = answers.get(question.id)
        rows.append(
            {
                "id": question.id,
                "category": question.category,
                "category_title": bank.category_title(question.category),
                "text": question.text,
                "hint": question.hint,
                "required": question.id in required,
                "status": (
                    "open" if answer is None else "n/a" if answer.not_applicable else "answered"
                ),
                "answer": answer.text if answer else None,
            }
        )
    return rows


def _store_answer(
    session: Session,
    ref: str,
    question_id: str,
    *,
    text: str,
    not_applicable: bool,
    actor: str,
    now: datetime,
) -> Answer:
    account, definition = editable(session, ref)
    question = definition.questions.question(question_id.strip())
    if not_applicable and question.id in definition.required_questions:
        raise InvalidInput(f"{question.id} is required: it must be answered, not marked n/a")
    answer = session.exec(
        select(Answer).where(Answer.account_id == account.id, Answer.question_id == question.id)
    ).first()
    if answer is None:
        answer = Answer(
            account_id=account.id,  # type: ignore[arg-type]
            question_id=question.id,
            answered_at=now,
            answered_by=actor,
        )
        session.add(answer)
    answer.text, answer.not_applicable = text, not_applicable
    answer.answered_at, answer.answered_by = now, actor
    what = (
        f"marked {question.id} not applicable: {text}"
        if not_applicable
        else f"answered {question.id}"
    )
    _changed(session, account, HistoryKind.ANSWER, what, actor=actor, now=now)
    return answer


def answer_question(
    session: Session, ref: str, question_id: str, text: str, *, actor: str, now: datetime
) -> Answer:
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInput("an answer must not be empty")
    return _store_answer(
        session, ref, question_id, text=cleaned, not_applicable=False, actor=actor, now=now
    )


def mark_not_applicable(
    session: Session, ref: str, question_id: str, *, reason: str, actor: str, now: datetime
) -> Answer:
    return _store_answer(
        session,
        ref,
        question_id,
        text=clean_text(reason, "--reason"),
        not_applicable=True,
        actor=actor,
        now=now,
    )


# --- actions --------------------------------------------------------------------------------


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_action(
    session: Session,
    ref: str,
    title: str,
    *,
    owner: str,
    due: str,
    resources: str = "",
    actor: str,
    now: datetime,
) -> Action:
    account, _ = editable(session, ref)
    title = clean_text(title, "an action's title", max_length=MAX_TITLE)
    due_date = parse_date(due)
    person = get_person(session, owner)
    action = Action(
        account_id=account.id,  # type: ignore[arg-type]
        title=title,
        owner_id=person.id,
        due=due_date,
        resources=clean_text(resources, "--resources", required=False),
        created_at=now,
    )
    session.add(action)
    session.flush()
    _changed(
        session,
        account,
        HistoryKind.ACTION,
        f"action #{action.id} added: {title} ({person.email}, due {due_date.isoformat()})",
        actor=actor,
        now=now,
    )
    return action


def complete_action(
    session: Session, ref: str, action_id: str, *, actor: str, now: datetime
) -> Action:
    account, _ = editable(session, ref)
    action = None
    if action_id.strip().lstrip("#").isdigit():
        action = session.get(Action, int(action_id.strip().lstrip("#")))
    if action is None or action.account_id != account.id:
        raise NotFound(f"no action {action_id!r} on {account.name} (see: kamflow action list)")
    if action.status == ActionStatus.DONE:
        raise InvalidInput(f"action #{action.id} is already done")
    action.status, action.done_at = ActionStatus.DONE, now
    _changed(
        session,
        account,
        HistoryKind.ACTION,
        f"action #{action.id} done: {action.title}",
        actor=actor,
        now=now,
    )
    return action


def actions_view(session: Session, ref: str, *, today: date) -> list[dict[str, Any]]:
    account = find_account(session, ref)
    rows = session.exec(
        select(Action, Person)
        .join(Person, col(Action.owner_id) == col(Person.id), isouter=True)
        .where(Action.account_id == account.id)
        .order_by(col(Action.due), col(Action.id))
    ).all()
    return [
        {
            "id": action.id,
            "title": action.title,
            "owner": person.email if person else None,
            "due": action.due.isoformat() if action.due else None,
            "resources": action.resources,
            "status": action.status,
            "overdue": action.status == ActionStatus.OPEN
            and action.due is not None
            and action.due < today,
        }
        for action, person in rows
    ]


# --- KPIs and reviews -------------------------------------------------------------------------


def parse_number(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{what} {text!r} is not a finite number")
    return value


def quarter_of(moment: datetime) -> str:
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def add_kpi(
    session: Session,
    ref: str,
    name: str,
    *,
    target: str,
    unit: str = "",
    lower_is_better: bool = False,
    actor: str,
    now: datetime,
) -> Kpi:
    account, _ = editable(session, ref)
    name = clean_text(name, "a KPI's name", max_length=MAX_NAME)
    value = parse_number(target, "--target")
    if _find_kpi(session, account, name) is not None:
        raise InvalidInput(f"{account.name} already has a KPI named {name!r}")
    kpi = Kpi(
        account_id=account.id,  # type: ignore[arg-type]
        name=name,
        target=value,
        unit=clean_text(unit, "--unit", required=False, max_length=MAX_LABEL),
        lower_is_better=lower_is_better,
        created_at=now,
    )
    session.add(kpi)
    direction = "lower" if lower_is_better else "higher"
    _changed(
        session,
        account,
        HistoryKind.KPI,
        f"KPI {name} added: target {format_number(value)}{(' ' + kpi.unit) if kpi.unit else ''}, "
        f"{direction} is better",
        actor=actor,
        now=now,
    )
    return kpi


def _find_kpi(session: Session, account: Account, name: str) -> Kpi | None:
    for kpi in session.exec(select(Kpi).where(Kpi.account_id == account.id)).all():
        if kpi.name.lower() == name.strip().lower():
            return kpi
    return None


def record_kpi(
    session: Session,
    ref: str,
    name: str,
    value: str,
    *,
    period: str | None = None,
    actor: str,
    now: datetime,
) -> KpiValue:
    account, _ = editable(session, ref)
    kpi = _find_kpi(session, account, name)
    if kpi is None:
        raise NotFound(f"{account.name} has no KPI {name!r} (see: kamflow account show)")
    number = parse_number(value, "value")
    label = quarter_of(now)
    if period is not None:
        label = clean_text(period, "--period", max_length=MAX_LABEL)
    row = KpiValue(kpi_id=kpi.id, value=number, period=label, recorded_at=now, recorded_by=actor)  # type: ignore[arg-type]
    session.add(row)
    _changed(
        session,
        account,
        HistoryKind.KPI,
        f"{kpi.name} = {format_number(number)} for {label}",
        actor=actor,
        now=now,
    )
    return row


def write_review(
    session: Session, ref: str, *, conclusion: str, actor: str, now: datetime
) -> Review:
    account, _ = editable(session, ref)
    review = Review(
        account_id=account.id,  # type: ignore[arg-type]
        conclusion=clean_text(conclusion, "--conclusion"),
        written_at=now,
        written_by=actor,
    )
    session.add(review)
    _changed(
        session, account, HistoryKind.REVIEW, f"review: {review.conclusion}", actor=actor, now=now
    )
    return review


def kpi_rows(where: Any) -> Any:
    """SQL: the KPIs of the accounts ``where`` selects, each with its latest value (NULLs when
    none), unordered: the account's id and name, the KPI's id and columns, then the value's.

    The latest value's id is a correlated subquery (one probe of ``ix_kpi_value_latest`` per
    KPI), joined back by primary key outside, so no plan has to compare every value with every
    KPI.
    """
    latest = (
        select(KpiValue.id)
        .where(col(KpiValue.kpi_id) == col(Kpi.id))
        .order_by(col(KpiValue.recorded_at).desc(), col(KpiValue.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    inner = (
        sa.select(
            col(Account.id).label("account_id"),
            col(Account.name).label("account_name"),
            col(Kpi.id).label("kpi_id"),
            col(Kpi.name),
            col(Kpi.target),
            col(Kpi.unit),
            col(Kpi.lower_is_better),
            latest.label("latest_id"),
        )
        .join(Kpi, col(Kpi.account_id) == col(Account.id))
        .where(where)
        .subquery("kpis")
    )
    return (
        sa.select(
            inner.c.account_id,
            inner.c.account_name,
            inner.c.kpi_id,
            inner.c.name,
            inner.c.target,
            inner.c.unit,
            inner.c.lower_is_better,
            col(KpiValue.value),
            col(KpiValue.period),
            col(KpiValue.recorded_at),
        )
        .select_from(inner)
        .outerjoin(KpiValue, col(KpiValue.id) == inner.c.latest_id)
    )


def kpi_view(row: Any) -> dict[str, Any]:
    """A row of kpi_rows() as the views show it: target against the latest value."""
    on_target = None
    if row.value is not None:
        on_target = row.value <= row.target if row.lower_is_better else row.value >= row.target
    return {
        "name": row.name,
        "target": row.target,
        "unit": row.unit,
        "lower_is_better": row.lower_is_better,
        "latest": row.value,
        "period": row.period,
        "recorded_at": None if row.recorded_at is None else row.recorded_at.isoformat(),
        "on_target": on_target,
    }


def kpis_view(session: Session, account: Account) -> list[dict[str, Any]]:
    """An account's KPIs, in the order they were added, each against its latest value."""
    statement = kpi_rows(col(Account.id) == account.id)
    statement = statement.order_by(statement.selected_columns.kpi_id)
    return [kpi_view(row) for row in session.execute(statement)]


def latest_review(session: Session, account: Account) -> Review | None:
    return session.exec(
        select(Review)
        .where(Review.account_id == account.id)
        .order_by(col(Review.written_at).desc(), col(Review.id).desc())
    ).first()
