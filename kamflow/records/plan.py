"""The account plan: strategy, team roles, answers to the questions, actions, KPIs, reviews."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow import defaults
from kamflow.db import dialect_insert
from kamflow.definitions.discovery import get_workflow
from kamflow.definitions.guardspecs import KPIS_REVIEWED
from kamflow.definitions.workflow import Workflow
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
from kamflow.records.people import active_person, get_person
from kamflow.text import (
    MAX_LABEL,
    MAX_NAME,
    MAX_TITLE,
    clean_text,
    did_you_mean,
    format_number,
)


def _changed(
    session: Session, account: Account, kind: HistoryKind, note: str, *, actor: str, now: datetime
) -> None:
    touch(session, account)
    history.record(session, account, actor=actor, at=now, kind=kind, note=note)


# --- strategy -----------------------------------------------------------------------------


def set_strategy(
    session: Session,
    ref: str,
    *,
    objective: str | None = None,
    who: str | None = None,
    why: str | None = None,
    actor: str,
    now: datetime,
) -> Strategy:
    """Set the parts of the account's strategy that are given (the objective, the stakeholders,
    the rationale), keeping the others as they were; recorded in the history.

    Raises NotFound for an unknown account, InvalidInput when no part is given, for a closed
    account (disqualified or retired) or for a text that is empty, too long or has a control
    character.
    """
    account, _ = editable(session, ref, actor)
    parts = (
        ("objective", "--objective", objective),
        ("stakeholders", "--who", who),
        ("rationale", "--why", why),
    )
    given = {
        option: (column, clean_text(text, option))
        for column, option, text in parts
        if text is not None
    }
    if not given:
        raise InvalidInput("nothing to set: give --objective, --who or --why (or several)")
    strategy = session.get(Strategy, account.id)
    if strategy is None:
        # A part not given yet stays blank: the strategy_defined guard names what is missing.
        strategy = Strategy(account_id=account.id, updated_at=now, updated_by=actor)  # type: ignore[arg-type]
        session.add(strategy)
    for column, value in given.values():
        setattr(strategy, column, value)
    strategy.updated_at, strategy.updated_by = now, actor
    note = "strategy set: " + ", ".join(option.lstrip("-") for option in given)
    _changed(session, account, HistoryKind.STRATEGY, note, actor=actor, now=now)
    return strategy


# --- roles --------------------------------------------------------------------------------


def _role(role: str) -> str:
    cleaned = role.strip().lower().replace("_", "-").replace(" ", "-")
    if cleaned not in defaults.ROLES:
        suggestion = did_you_mean(cleaned, defaults.ROLES)
        hint = "" if suggestion is None else f"; {suggestion}"
        raise NotFound(f"no role {role!r}{hint} (roles: {', '.join(defaults.ROLES)})")
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
    """Let the person with ``email`` hold ``role`` on the account (a role may have several holders);
    recorded in the history. The role is one of the six, in any case, with ``-``, ``_`` or a blank
    between its words.

    Raises NotFound for an unknown account, role or person, InvalidInput for a closed account or a
    role the person holds already.
    """
    account, _ = editable(session, ref, actor)
    role = _role(role)
    person = active_person(session, email, "hold roles")
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
    """Take ``role`` on the account from the person with ``email``; recorded in the history.

    Raises NotFound for an unknown account, role or person or a role the person does not hold,
    InvalidInput for a closed account.
    """
    account, _ = editable(session, ref, actor)
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
    """Each of the six roles, in kamflow's order, with the emails of the people who hold it on the
    account (sorted; an empty list for a role nobody holds)."""
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


def team_view(session: Session, ref: str) -> dict[str, Any]:
    """The account team of account ``ref``: each of the six roles, in kamflow's order, with the
    emails of the people who hold it, and the roles nobody holds (the gaps); NotFound for an
    unknown account."""
    account = find_account(session, ref)
    holders = roles_view(session, account)
    return {
        "account": account.name,
        "roles": [{"role": role, "holders": emails} for role, emails in holders.items()],
        "gaps": [role for role, emails in holders.items() if not emails],
    }


# --- questions and answers ------------------------------------------------------------------


def questions_view(session: Session, ref: str) -> list[dict[str, Any]]:
    """Every question of the account's question bank, in file order, with its category, whether the
    workflow requires it, its status (``open``, ``answered`` or ``n/a``) and the answer or the
    reason; NotFound for an unknown account."""
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
    account, definition = editable(session, ref, actor)
    question = definition.questions.question(question_id.strip())
    if not_applicable and question.id in definition.required_questions:
        raise InvalidInput(f"{question.id} is required: it must be answered, not marked n/a")
    answer = Answer(
        account_id=account.id,  # type: ignore[arg-type]
        question_id=question.id,
        text=text,
        not_applicable=not_applicable,
        answered_at=now,
        answered_by=actor,
    )
    # One statement that inserts or replaces: two answers to the same question at once both
    # succeed (the one committed later stays), where an insert would fail the later one.
    replaced = ("text", "not_applicable", "answered_at", "answered_by")
    insert = dialect_insert(session)(Answer).values(answer.model_dump(exclude={"id"}))
    answer.id = session.execute(
        insert.on_conflict_do_update(
            index_elements=["account_id", "question_id"],
            set_={field: insert.excluded[field] for field in replaced},
        ).returning(col(Answer.id))
    ).scalar_one()
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
    """Answer a question of the account plan, replacing an earlier answer or not-applicable mark;
    recorded in the history. The text may span lines; blanks at its ends are dropped.

    Raises NotFound for an unknown account or question, InvalidInput for an empty answer, one with
    a control character other than a line break or a tab, or a closed account.
    """
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInput("an answer must not be empty")
    # Line breaks and tabs are a long answer's layout; any other control character is not text
    # (PostgreSQL refuses a NUL outright).
    if any(not ch.isprintable() and ch not in "\n\t" for ch in cleaned):
        raise InvalidInput("an answer contains a control character")
    return _store_answer(
        session, ref, question_id, text=cleaned, not_applicable=False, actor=actor, now=now
    )


def mark_not_applicable(
    session: Session, ref: str, question_id: str, *, reason: str, actor: str, now: datetime
) -> Answer:
    """Mark a question of the account plan as not applicable, with the reason, replacing an earlier
    answer; recorded in the history.

    Raises NotFound for an unknown account or question, InvalidInput for a required question (it
    must be answered), a closed account, or a reason that is empty, too long or has a control
    character.
    """
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
    """A date written as ISO 8601 (``2027-03-01``); InvalidInput when the text is not one."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date (YYYY-MM-DD)") from None


def is_past(day: date, *, now: datetime, timezone: tzinfo = UTC) -> bool:
    """Whether ``day`` is over at ``now``: before today, where today is judged in ``timezone``
    (as the overdue reminders judge it)."""
    return day < now.astimezone(timezone).date()


#: A due date relative to today: ``+14``, ``+14d`` or ``+2w``.
_AHEAD = re.compile(r"\+(?P<count>\d{1,5})(?P<unit>[dw]?)")
#: The furthest a relative due date may reach.
MAX_DAYS_AHEAD = 3653


def due_date(text: str, *, past: bool, now: datetime, timezone: tzinfo = UTC) -> date:
    """An action's due date from ``--due``; a date already over is refused unless ``past`` says
    it is meant (it would make the action overdue, and remind its owner, at once).

    Besides a date, ``+N`` or ``+Nd`` (N days from today) and ``+Nw`` (N weeks) are taken, today
    being judged in ``timezone``.

    Raises InvalidInput for a text that is not a date, or a date in the past without ``past``.
    """
    ahead = _AHEAD.fullmatch(text.strip().lower())
    if ahead is not None:
        count = int(ahead["count"]) * (7 if ahead["unit"] == "w" else 1)
        if count > MAX_DAYS_AHEAD:
            raise InvalidInput(f"--due {text.strip()!r} is too far ahead (at most ten years)")
        return now.astimezone(timezone).date() + timedelta(days=count)
    day = parse_date(text)
    if not past and is_past(day, now=now, timezone=timezone):
        today = now.astimezone(timezone).date().isoformat()
        raise InvalidInput(
            f"the due date {day.isoformat()} is in the past (today is {today}): "
            "give a later date, or add --past to record it as it is"
        )
    return day


def add_action(
    session: Session,
    ref: str,
    title: str,
    *,
    owner: str,
    due: str,
    resources: str = "",
    past: bool = False,
    timezone: tzinfo = UTC,
    actor: str,
    now: datetime,
) -> Action:
    """Add an action to the account plan: its title, its owner (a known person's email), its due
    date (``YYYY-MM-DD``) and the resources it needs, if any; recorded in the history. A due date
    before today (in ``timezone``) is taken only with ``past``.

    Raises NotFound for an unknown account or owner, InvalidInput for a closed account, a bad date
    or one in the past without ``past``, or a title or resources that are too long or have a
    control character (the title must not be empty).
    """
    account, _ = editable(session, ref, actor)
    title = clean_text(title, "an action's title", max_length=MAX_TITLE)
    due_day = due_date(due, past=past, now=now, timezone=timezone)
    person = active_person(session, owner, "own actions")
    action = Action(
        account_id=account.id,  # type: ignore[arg-type]
        title=title,
        owner_id=person.id,
        due=due_day,
        resources=clean_text(resources, "--resources", required=False),
        created_at=now,
    )
    session.add(action)
    session.flush()
    over = ", a date in the past" if is_past(due_day, now=now, timezone=timezone) else ""
    _changed(
        session,
        account,
        HistoryKind.ACTION,
        f"action #{action.id} added: {title} ({person.email}, due {due_day.isoformat()}{over})",
        actor=actor,
        now=now,
    )
    return action


def find_action(session: Session, account: Account, action_id: str) -> Action:
    """The account's action ``action_id`` (``12`` or ``#12``), locked until the transaction ends
    so that two changes to it cannot both read it as it was; NotFound when the account has none
    such."""
    number = action_id.strip().lstrip("#")
    action = None
    if number.isdigit():
        action = session.exec(
            select(Action).where(Action.id == int(number)).with_for_update()
        ).first()
    if action is None or action.account_id != account.id:
        raise NotFound(f"no action {action_id!r} on {account.name} (see: kamflow action list)")
    return action


def complete_action(
    session: Session, ref: str, action_id: str, *, actor: str, now: datetime
) -> Action:
    """Mark an action of the account done (``action_id`` as ``12`` or ``#12``); recorded in the
    history.

    Raises NotFound when the account has no such action, InvalidInput when the action is done
    already or the account is closed.
    """
    # The action's owner may report it done (as their reminders ask), on the team or not.
    action = find_action(session, find_account(session, ref), action_id)
    account, _ = editable(session, ref, actor, doer_id=action.owner_id)
    if action.status == ActionStatus.DONE:
        raise InvalidInput(f"action #{action.id} is already done")
    if action.status == ActionStatus.CANCELLED:
        raise InvalidInput(
            f"action #{action.id} is cancelled: it is no longer part of the plan "
            "(add it again with kamflow action add)"
        )
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
    """The account's actions by due date (then by id): title, owner's email, due date, resources,
    status, and whether each is overdue (open and due before ``today``); NotFound for an unknown
    account."""
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
    """A finite number from the text; InvalidInput naming ``what`` when the text is not one."""
    try:
        value = float(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{what} {text!r} is not a finite number")
    return value


def quarter_of(moment: datetime) -> str:
    """The calendar quarter of ``moment``, as a KPI value's period: ``2027-Q2``."""
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


@dataclass(frozen=True)
class KpiAdded:
    """A KPI that `add_kpi` put in the plan: a new one, or a removed one brought back."""

    kpi: Kpi
    #: True when the KPI had been removed and is back, with its earlier values.
    restored: bool


#: The forms a KPI value's period may take: a year, a half, a quarter, a month, a day.
PERIOD_FORMS = "YYYY, YYYY-H1 or -H2, YYYY-Q1 to -Q4, YYYY-MM or YYYY-MM-DD"
_PERIOD = re.compile(
    r"""(?P<year>\d{4})
    (?: - (?: H[12] | Q[1-4] | (?P<month>\d{2}) (?: - (?P<day>\d{2}) )? ) )?""",
    re.VERBOSE,
)


def parse_period(text: str) -> str:
    """A KPI value's period in one of the forms of PERIOD_FORMS (``2027-q2`` is written
    ``2027-Q2``); InvalidInput naming the forms for anything else."""
    wanted = text.strip().upper()
    found = _PERIOD.fullmatch(wanted)
    try:
        if found is None or int(found["year"]) == 0:
            raise ValueError(wanted)
        if found["month"] is not None:
            # A real month, and a real day of it: date() refuses 2027-13 and 2027-02-29.
            date(int(found["year"]), int(found["month"]), int(found["day"] or 1))
    except ValueError:
        raise InvalidInput(
            f"--period {text!r} is not a period: write {PERIOD_FORMS} "
            "(for example 2027, 2027-H2, 2027-Q2, 2027-05 or 2027-05-31)"
        ) from None
    return wanted


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
) -> KpiAdded:
    """Add a KPI to the account plan: its name (unique on the account, in any case), its target, its
    unit, and whether a lower value is better; recorded in the history. The name of a KPI removed
    from the plan brings that one back, with the target, unit and direction given now and the
    values it had.

    Raises NotFound for an unknown account, InvalidInput for a closed account, a name the account
    has already, a target that is not a finite number, an empty name, or a name or unit that is too
    long or has a control character.
    """
    account, _ = editable(session, ref, actor)
    name = clean_text(name, "a KPI's name", max_length=MAX_NAME)
    value = parse_number(target, "--target")
    unit = clean_text(unit, "--unit", required=False, max_length=MAX_LABEL)
    kpi = kpi_named(session, account, name)
    if kpi is not None and kpi.removed_at is None:
        raise InvalidInput(f"{account.name} already has a KPI named {kpi.name!r}")
    restored = kpi is not None
    if kpi is None:
        kpi = Kpi(account_id=account.id, name=name, target=value, created_at=now)  # type: ignore[arg-type]
        session.add(kpi)
        what = "added"
    else:
        removed = kpi.removed_at.date().isoformat() if kpi.removed_at else ""
        what = f"brought back (removed on {removed}; its earlier values are kept)"
        kpi.name, kpi.target, kpi.removed_at = name, value, None
    kpi.unit, kpi.lower_is_better = unit, lower_is_better
    direction = "lower" if lower_is_better else "higher"
    _changed(
        session,
        account,
        HistoryKind.KPI,
        f"KPI {name} {what}: target {format_number(value)}{(' ' + unit) if unit else ''}, "
        f"{direction} is better",
        actor=actor,
        now=now,
    )
    return KpiAdded(kpi, restored)


def kpi_named(session: Session, account: Account, name: str) -> Kpi | None:
    """The account's KPI called ``name`` (in any case), whether in the plan or removed from it,
    locked until the transaction ends; None when it has none such."""
    return session.exec(
        select(Kpi)
        .where(Kpi.account_id == account.id, func.lower(Kpi.name) == name.strip().lower())
        .with_for_update()
    ).first()


def _no_kpi(session: Session, account: Account, name: str) -> NotFound:
    """The error for a KPI the account does not have (or no longer has), naming its closest
    ones still in the plan."""
    removed = kpi_named(session, account, name)
    if removed is not None and removed.removed_at is not None:
        return NotFound(
            f"the KPI {removed.name!r} of {account.name} was removed from the plan on "
            f"{removed.removed_at:%Y-%m-%d}; `kamflow kpi add` with its name brings it back"
        )
    known = session.exec(
        select(Kpi.name).where(Kpi.account_id == account.id, col(Kpi.removed_at).is_(None))
    ).all()
    suggestion = did_you_mean(name, known)
    if suggestion is None:
        return NotFound(f"{account.name} has no KPI {name!r} (see: kamflow account show)")
    return NotFound(f"{account.name} has no KPI {name!r}; {suggestion}")


def _find_kpi(session: Session, account: Account, name: str) -> Kpi | None:
    """The KPI of the account's plan called ``name`` (in any case); None when it has none such,
    or only one removed from the plan."""
    kpi = kpi_named(session, account, name)
    return kpi if kpi is not None and kpi.removed_at is None else None


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
    """Record a value of the account's KPI ``name`` (in any case) for ``period`` (one of the
    PERIOD_FORMS), by default the current quarter (``2027-Q2``); recorded in the history.

    Raises NotFound for an unknown account or KPI, InvalidInput for a closed account, a value that
    is not a finite number, or a bad period.
    """
    account, _ = editable(session, ref, actor)
    kpi = _find_kpi(session, account, name)
    if kpi is None:
        raise _no_kpi(session, account, name)
    number = parse_number(value, "value")
    label = quarter_of(now) if period is None else parse_period(period)
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
    """Write a review conclusion for the account (earlier ones are kept); recorded in the history.
    The kpis_reviewed guard counts those written since the account entered its current stage.

    Raises NotFound for an unknown account, InvalidInput for a closed account, an account in a
    stage from which no move needs a review (it would never count), or a conclusion that is
    empty, too long or has a control character.
    """
    account, definition = editable(session, ref, actor)
    _review_counts_in(definition, account)
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


def _review_counts_in(definition: Workflow, account: Account) -> None:
    """Refuse a review where no move of the workflow needs one: the kpis_reviewed guard counts
    only the reviews written in the stage its move leaves from."""
    stages = definition.stages_guarded_by(KPIS_REVIEWED)
    if account.stage in stages:
        return
    title = definition.title_of
    if not stages:
        raise InvalidInput(
            f"no move of workflow {definition.name} needs a review: a conclusion would never count"
        )
    moves = sorted(
        {
            transition.name
            for stage in stages
            for transition in definition.transitions_from(stage)
            if any(guard.name == KPIS_REVIEWED for guard in transition.guards)
        }
    )
    raise InvalidInput(
        f"{account.name} is in {title(account.stage)}: a review counts only in "
        f"{' or '.join(map(title, stages))}, where {' and '.join(moves)} "
        f"need{'s' if len(moves) == 1 else ''} it; write it once the account is there"
    )


def kpi_rows(where: Any) -> Any:
    """SQL: the KPIs in the plans of the accounts ``where`` selects (not those removed from
    them), each with its latest value (NULLs when none), unordered: the account's id and name,
    the KPI's id and columns, then the value's.

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
        # A KPI removed from the plan is no longer reported; its values stay in the history.
        .where(where, col(Kpi.removed_at).is_(None))
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
    """The account's most recently written review, or None when it has none."""
    return session.exec(
        select(Review)
        .where(Review.account_id == account.id)
        .order_by(col(Review.written_at).desc(), col(Review.id).desc())
    ).first()


def kpi_values(session: Session, account: Account) -> dict[str, list[dict[str, Any]]]:
    """Every value recorded for the KPIs in the account's plan, in one query: by KPI name (as
    kpis_view() names them), each KPI's values in the order they were recorded."""
    rows = session.execute(
        sa.select(
            col(Kpi.name), col(KpiValue.period), col(KpiValue.value), col(KpiValue.recorded_at)
        )
        .join(Kpi, col(Kpi.id) == col(KpiValue.kpi_id))
        .where(col(Kpi.account_id) == account.id, col(Kpi.removed_at).is_(None))
        .order_by(col(KpiValue.kpi_id), col(KpiValue.recorded_at), col(KpiValue.id))
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for name, period, value, recorded_at in rows:
        found.setdefault(name, []).append(
            {"period": period, "value": value, "recorded_at": recorded_at.isoformat()}
        )
    return found
