"""Steps that bring a test account through the KAM stages by meeting its guards.

Shared by test_guards.py and test_engine.py. Every step goes through the core functions (the ones
the CLI calls), each in its own committed transaction, at the test clock's time.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from kamflow import db, defaults
from kamflow.clock import FixedClock
from kamflow.definitions.discovery import get_workflow
from kamflow.engine import Outcome, add_account, advance
from kamflow.models import Account, HistoryEntry, HistoryKind
from kamflow.records import people, plan
from kamflow.records.accounts import find_account
from kamflow.verdict import Verdict
from tests.conftest import Runner

OWNER = "owner@example.com"
ACCOUNT = "Acme Corp"
KPI = "Revenue growth"
BANK = get_workflow("kam").questions


def add_person(engine: Engine, clock: FixedClock, email: str, *, leader: bool = False) -> None:
    with db.session_scope(engine) as session:
        people.add_person(session, email, leader=leader, now=clock.now())


def new_account(
    engine: Engine, clock: FixedClock, run: Runner, *, workflow: str = defaults.WORKFLOW
) -> str:
    """The owner (a known person) and the account ACCOUNT, in its first stage."""
    add_person(engine, clock, OWNER)
    run(add_account, ACCOUNT, owner=OWNER, workflow=workflow)
    return ACCOUNT


def account_row(engine: Engine) -> Account:
    with db.session_scope(engine) as session:
        return find_account(session, ACCOUNT)


def stage_of(engine: Engine) -> str:
    return account_row(engine).stage


def transition_rows(engine: Engine) -> list[HistoryEntry]:
    """The account's transition history entries, oldest first."""
    with db.session_scope(engine) as session:
        return list(
            session.exec(
                select(HistoryEntry)
                .where(HistoryEntry.kind == HistoryKind.TRANSITION.value)
                .order_by(col(HistoryEntry.id))
            ).all()
        )


def go(run: Runner, *, to: str | None = None, actor: str = OWNER, note: str = "") -> str:
    """Advance ACCOUNT for real; returns the stage it reached."""
    outcome: Outcome = run(advance, ACCOUNT, to=to, note=note, actor=actor)
    return outcome.to_stage


def verdicts(run: Runner, *, to: str | None = None, actor: str = OWNER) -> dict[str, Verdict]:
    """The verdicts a dry-run advance gives, by guard name (nothing is written)."""
    outcome: Outcome = run(advance, ACCOUNT, to=to, dry_run=True, actor=actor)
    assert outcome.dry_run
    return {verdict.guard: verdict for verdict in outcome.verdicts}


def define_strategy(run: Runner) -> None:
    run(
        plan.set_strategy,
        ACCOUNT,
        objective="Double the managed-services revenue within two years",
        who="The CFO, the CIO and the procurement board",
        why="Their cloud migration needs a partner that runs it end to end",
    )


def cover_roles(run: Runner, roles: tuple[str, ...] = defaults.ROLES, holder: str = OWNER) -> None:
    for role in roles:
        run(plan.assign_role, ACCOUNT, role, holder)


def answer_categories(run: Runner, *, skip: tuple[str, ...] = ()) -> None:
    """Answer one optional question of every category except those in ``skip``.

    Optional ones, so that research leaves every required question for the plan to answer.
    """
    for category in BANK.categories:
        if category.id in skip:
            continue
        optional = next(q for q in BANK.questions if q.category == category.id and not q.required)
        run(plan.answer_question, ACCOUNT, optional.id, f"What we know about {category.id}")


def answer_required(run: Runner, *, skip: tuple[str, ...] = ()) -> None:
    for question in BANK.required:
        if question.id not in skip:
            run(plan.answer_question, ACCOUNT, question.id, f"Answer to {question.id}")


def add_action(run: Runner) -> None:
    run(
        plan.add_action,
        ACCOUNT,
        "Quarterly meeting with the CIO",
        owner=OWNER,
        due="2027-03-01",
        resources="Two days of a solution architect",
    )


def add_kpi(run: Runner, name: str = KPI) -> None:
    run(plan.add_kpi, ACCOUNT, name, target="12", unit="%")


def record(run: Runner, name: str = KPI, value: str = "9.5") -> None:
    run(plan.record_kpi, ACCOUNT, name, value)


def conclude(run: Runner) -> None:
    run(plan.write_review, ACCOUNT, conclusion="On track; widen the pilot to two more plants")


def complete_research(run: Runner) -> None:
    cover_roles(run)
    answer_categories(run)


def complete_plan(run: Runner) -> None:
    answer_required(run)
    add_action(run)
    add_kpi(run)


def reach(run: Runner, clock: FixedClock, stage: str) -> None:
    """Walk ACCOUNT (just created, in Strategy) forward until it is in ``stage``.

    A day passes before each step, so every stage is entered at a later time than the last.
    """
    steps = [
        ("research", define_strategy),
        ("action_plan", complete_research),
        ("execution", complete_plan),
        ("review", record),
    ]
    if stage == "strategy":
        return
    for target, work in steps:
        clock.advance(days=1)
        work(run)
        clock.advance(days=1)
        assert go(run) == target
        if target == stage:
            return
    raise AssertionError(f"reach() cannot walk to {stage!r}")
