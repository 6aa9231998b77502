"""Transitions: refusals, moves, dry runs, history, compare-and-set, exits; on both databases."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.definitions.discovery import get_workflow
from kamflow.engine import Outcome, advance, close
from kamflow.errors import Conflict, GuardRefused, InvalidInput, KamflowError, NotFound
from kamflow.models import Answer
from kamflow.records import plan
from tests.account_steps import (
    ACCOUNT,
    BANK,
    KPI,
    OWNER,
    account_row,
    add_action,
    add_kpi,
    add_person,
    answer_categories,
    conclude,
    cover_roles,
    define_strategy,
    go,
    new_account,
    reach,
    record,
    stage_of,
    transition_rows,
)
from tests.conftest import Runner, backend_pid, snapshot, wait_for_a_waiter

LEADER = "leader@example.com"
OPTIONAL = next(q.id for q in BANK.questions if not q.required)


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "unmet"),
    [
        ("research", ["roles_covered", "research_done"]),
        ("action_plan", ["plan_complete", "kpis_defined"]),
    ],
)
def test_a_refusal_lists_every_unmet_guard_not_only_the_first(
    engine: Engine, clock: FixedClock, run: Runner, stage: str, unmet: list[str]
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, stage)

    with pytest.raises(GuardRefused) as refused:
        go(run)

    error = refused.value
    assert error.exit_code == 3
    assert [verdict.guard for verdict in error.unmet] == unmet
    assert all(not verdict.ok for verdict in error.unmet)
    title = get_workflow("kam").title_of(stage)
    assert str(error).startswith(f"{ACCOUNT} cannot advance from {title} to ")
    assert error.lines() == [str(error), *(f"  - {v.message}" for v in error.unmet)]


def test_a_refusal_lists_only_the_unmet_guards(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    cover_roles(run)

    with pytest.raises(GuardRefused) as refused:
        go(run)

    assert [verdict.guard for verdict in refused.value.unmet] == ["research_done"]


def test_a_refused_transition_leaves_the_database_unchanged(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    cover_roles(run, ("innovator",))
    clock.advance(days=5)
    before = snapshot(engine)

    with pytest.raises(GuardRefused):
        go(run, note="trying anyway")
    with pytest.raises(GuardRefused):
        go(run, to="action_plan")

    assert snapshot(engine) == before


# --- which move `advance` makes ----------------------------------------------------------------


def test_a_bare_advance_goes_to_the_next_stage(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)

    outcome: Outcome = run(advance, ACCOUNT)

    assert (outcome.transition, outcome.from_stage, outcome.to_stage) == (
        "advance",
        "strategy",
        "research",
    )
    assert outcome.allowed and not outcome.dry_run
    assert stage_of(engine) == "research"


@pytest.mark.parametrize(
    ("to", "transition", "destination"),
    [
        (None, "adjust", "action_plan"),
        ("action_plan", "adjust", "action_plan"),
        ("Action plan", "adjust", "action_plan"),
        ("strategy", "replan", "strategy"),
    ],
)
def test_from_review_a_bare_advance_adjusts_and_to_strategy_replans(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    to: str | None,
    transition: str,
    destination: str,
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "review")
    conclude(run)

    outcome: Outcome = run(advance, ACCOUNT, to=to)

    assert (outcome.transition, outcome.from_stage, outcome.to_stage) == (
        transition,
        "review",
        destination,
    )
    assert stage_of(engine) == destination
    assert transition_rows(engine)[-1].transition == transition


@pytest.mark.parametrize(
    ("stage", "to", "message"),
    [
        (
            "strategy",
            "execution",
            "Acme Corp is in Strategy: it cannot move to Execution from there "
            "(it can move to Research)",
        ),
        (
            "review",
            "research",
            "Acme Corp is in Review: it cannot move to Research from there "
            "(it can move to Action plan, Strategy)",
        ),
    ],
)
def test_advance_to_a_stage_not_reachable_from_here_says_where_it_can_go(
    engine: Engine, clock: FixedClock, run: Runner, stage: str, to: str, message: str
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, stage)
    before = snapshot(engine)

    with pytest.raises(InvalidInput) as refused:
        run(advance, ACCOUNT, to=to)

    assert str(refused.value) == message
    assert refused.value.exit_code == 1
    assert snapshot(engine) == before


def test_advance_to_an_unknown_stage_names_the_stages(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)

    with pytest.raises(NotFound) as refused:
        run(advance, ACCOUNT, to="negotiation")

    assert "no stage 'negotiation'" in str(refused.value)
    assert "strategy, research, action_plan, execution, review" in str(refused.value)
    assert stage_of(engine) == "strategy"


def test_advance_to_the_current_stage_is_refused(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)
    before = snapshot(engine)

    with pytest.raises(InvalidInput, match="Acme Corp is already in Strategy"):
        run(advance, ACCOUNT, to="strategy")

    assert snapshot(engine) == before


# --- dry runs ----------------------------------------------------------------------------------


def test_a_dry_run_returns_the_verdicts_and_writes_nothing(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    before = snapshot(engine)

    refused: Outcome = run(advance, ACCOUNT, dry_run=True)

    assert refused.dry_run and not refused.allowed
    assert [(v.guard, v.ok) for v in refused.verdicts] == [("strategy_defined", False)]
    assert snapshot(engine) == before

    define_strategy(run)
    before = snapshot(engine)

    allowed: Outcome = run(advance, ACCOUNT, dry_run=True)
    retire: Outcome = run(close, ACCOUNT, "retire", reason="Just checking", dry_run=True)

    assert allowed.dry_run and allowed.allowed
    assert (allowed.from_stage, allowed.to_stage) == ("strategy", "research")
    assert [(v.guard, v.ok) for v in allowed.verdicts] == [("strategy_defined", True)]
    assert retire.dry_run and retire.allowed and retire.to_stage == "retired"
    assert snapshot(engine) == before
    assert stage_of(engine) == "strategy"


# --- what a transition writes ------------------------------------------------------------------


def test_a_transition_writes_one_history_row_and_bumps_version_and_entry_time(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    add_person(engine, clock, LEADER, leader=True)
    define_strategy(run)
    before = snapshot(engine)
    account = account_row(engine)
    rows_before = transition_rows(engine)
    entered = clock.advance(days=3, hours=2)

    outcome: Outcome = run(advance, ACCOUNT, note="  agreed with   the CFO ", actor=LEADER)

    [row] = transition_rows(engine)[len(rows_before) :]
    assert row.actor == LEADER
    assert row.at == entered
    assert (row.from_stage, row.to_stage, row.transition) == ("strategy", "research", "advance")
    assert row.note == "agreed with the CFO"
    assert json.loads(row.verdicts) == [v.as_dict() for v in outcome.verdicts]
    assert json.loads(row.verdicts) == [
        {
            "guard": "strategy_defined",
            "ok": True,
            "message": "the strategy says what, with whom and why",
            "warning": False,
            "overridden": False,
        }
    ]
    after = account_row(engine)
    assert after.stage == "research"
    assert after.version == account.version + 1
    assert after.stage_entered_at == entered
    # Nothing else was written: only the account row and the one history row changed.
    now = snapshot(engine)
    assert {name for name in now if now[name] != before[name]} == {"account", "history"}
    assert len(now["history"]) == len(before["history"]) + 1


def test_a_plan_change_bumps_the_account_version(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    version = account_row(engine).version

    run(plan.answer_question, ACCOUNT, OPTIONAL, "Three engineers, one architect")

    assert account_row(engine).version == version + 1


# --- compare-and-set ---------------------------------------------------------------------------


def _meddle_with_a_plan_change(run: Runner, engine: Engine) -> None:
    run(plan.answer_question, ACCOUNT, OPTIONAL, "Written by a colleague meanwhile")


def _meddle_with_a_version_update(run: Runner, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE account SET version = version + 1")


def _meddle_with_a_competing_advance(run: Runner, engine: Engine) -> None:
    assert go(run, to="research", actor=LEADER) == "research"


@pytest.mark.parametrize(
    "meddle",
    [_meddle_with_a_plan_change, _meddle_with_a_version_update, _meddle_with_a_competing_advance],
    ids=["plan-change", "version-update", "competing-advance"],
)
def test_a_change_another_session_makes_during_a_move_waits_for_the_move(
    engine: Engine, clock: FixedClock, run: Runner, meddle: Callable[[Runner, Engine], None]
) -> None:
    """The move holds the account's row from before its guards read: another writer waits for
    it, then sees the moved account (a competing move is refused, a plan change is made)."""
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "SQLite: advance begins IMMEDIATE and holds the write lock from its first read, so no "
            "other writer can even begin before it commits"
        )
    new_account(engine, clock, run)
    add_person(engine, clock, LEADER, leader=True)
    define_strategy(run)
    rows_before = len(transition_rows(engine))
    version_before = account_row(engine).version
    meddled: list[str] = []

    def in_another_session() -> None:
        try:
            meddle(run, engine)
            meddled.append("ok")
        except KamflowError as error:
            meddled.append(str(error))

    other = threading.Thread(target=in_another_session)
    with db.session_scope(engine) as session:
        holder = backend_pid(session)

        def meanwhile() -> None:
            other.start()
            wait_for_a_waiter(engine, holder)

        advance(
            session, ACCOUNT, to="research", actor=OWNER, now=clock.now(), before_write=meanwhile
        )
    other.join(timeout=30)

    rows = transition_rows(engine)[rows_before:]
    assert [(r.actor, r.to_stage) for r in rows] == [(OWNER, "research")]
    assert account_row(engine).stage == "research"
    if meddle is _meddle_with_a_competing_advance:
        assert meddled == [
            f"{ACCOUNT} is already in Research: it was moved there meanwhile; nothing was written"
        ]
        assert account_row(engine).version == version_before + 1
    else:  # made after the move, on top of it
        assert meddled == ["ok"]
        assert account_row(engine).version == version_before + 2


def test_a_plan_change_in_the_same_transaction_before_the_write_is_a_conflict(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)
    before = snapshot(engine)

    with pytest.raises(Conflict, match="changed meanwhile"), db.session_scope(engine) as session:

        def change_the_plan() -> None:
            plan.answer_question(
                session, ACCOUNT, OPTIONAL, "Changed after the guards", actor=OWNER, now=clock.now()
            )

        advance(session, ACCOUNT, actor=OWNER, now=clock.now(), before_write=change_the_plan)

    # The failed transaction is rolled back whole: the plan change and the move alike.
    assert snapshot(engine) == before
    with db.session_scope(engine) as session:
        assert session.exec(select(Answer)).all() == []


# --- history is append-only --------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    ["UPDATE history SET note = 'rewritten', actor = 'someone@else.com'", "DELETE FROM history"],
    ids=["update", "delete"],
)
def test_the_database_refuses_to_rewrite_history(
    engine: Engine, clock: FixedClock, run: Runner, statement: str
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)
    go(run)
    before = snapshot(engine)
    assert before["history"]

    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql(statement)

    assert snapshot(engine) == before


# --- disqualify and retire ---------------------------------------------------------------------


EXITS = [("disqualify", "disqualified"), ("retire", "retired")]


@pytest.mark.parametrize(("transition", "exit_stage"), EXITS)
def test_closing_an_account_needs_a_reason(
    engine: Engine, clock: FixedClock, run: Runner, transition: str, exit_stage: str
) -> None:
    new_account(engine, clock, run)
    before = snapshot(engine)

    for reason in ("", "   "):
        with pytest.raises(InvalidInput, match="--reason"):
            run(close, ACCOUNT, transition, reason=reason)

    assert snapshot(engine) == before
    assert stage_of(engine) == "strategy" != exit_stage


@pytest.mark.parametrize(
    ("transition", "exit_stage", "stage"),
    [
        ("disqualify", "disqualified", "research"),
        ("disqualify", "disqualified", "review"),
        ("retire", "retired", "execution"),
    ],
)
def test_closing_an_account_moves_it_to_the_exit_with_the_reason_on_record(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    transition: str,
    exit_stage: str,
    stage: str,
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, stage)
    at = clock.advance(days=1)

    outcome: Outcome = run(close, ACCOUNT, transition, reason="  Bought by a competitor ")

    assert (outcome.transition, outcome.to_stage) == (transition, exit_stage)
    assert stage_of(engine) == exit_stage
    row = transition_rows(engine)[-1]
    assert (row.transition, row.from_stage, row.to_stage) == (transition, stage, exit_stage)
    assert (row.actor, row.at, row.note) == (OWNER, at, "Bought by a competitor")


EDITS: list[tuple[str, Callable[[Runner], Any]]] = [
    ("advance", lambda run: run(advance, ACCOUNT)),
    ("advance --to", lambda run: run(advance, ACCOUNT, to="research")),
    ("retire", lambda run: run(close, ACCOUNT, "retire", reason="Again")),
    ("disqualify", lambda run: run(close, ACCOUNT, "disqualify", reason="Again")),
    (
        "strategy set",
        lambda run: run(plan.set_strategy, ACCOUNT, objective="o", who="w", why="y"),
    ),
    ("role assign", lambda run: run(plan.assign_role, ACCOUNT, "innovator", OWNER)),
    ("role unassign", lambda run: run(plan.unassign_role, ACCOUNT, "collaborator", OWNER)),
    ("plan answer", lambda run: run(plan.answer_question, ACCOUNT, OPTIONAL, "More")),
    ("plan na", lambda run: run(plan.mark_not_applicable, ACCOUNT, OPTIONAL, reason="No")),
    (
        "action add",
        lambda run: run(plan.add_action, ACCOUNT, "Call", owner=OWNER, due="2027-05-01"),
    ),
    ("action done", lambda run: run(plan.complete_action, ACCOUNT, "1")),
    ("kpi add", lambda run: run(plan.add_kpi, ACCOUNT, "NPS", target="40")),
    ("kpi record", lambda run: run(plan.record_kpi, ACCOUNT, KPI, "11")),
    ("kpi review", lambda run: run(plan.write_review, ACCOUNT, conclusion="Too late")),
]


def test_an_exited_account_cannot_advance_or_be_edited(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)
    cover_roles(run, ("collaborator",))
    add_action(run)
    add_kpi(run)
    with db.session_scope(engine) as session:
        actions = plan.actions_view(session, ACCOUNT, today=clock.now().date())
    assert [action["id"] for action in actions] == [1]
    run(close, ACCOUNT, "disqualify", reason="Not a key account after all")
    before = snapshot(engine)

    refusals: dict[str, str] = {}
    for name, edit in EDITS:
        try:
            edit(run)
        except InvalidInput as error:
            refusals[name] = str(error)
        else:
            refusals[name] = "accepted"

    assert {name: "disqualified" in message for name, message in refusals.items()} == {
        name: True for name, _ in EDITS
    }, refusals
    assert refusals["advance"] == "Acme Corp is disqualified: it no longer moves"
    assert refusals["kpi record"] == "Acme Corp is disqualified: its plan is closed"
    assert snapshot(engine) == before


# --- the whole cycle ---------------------------------------------------------------------------


def test_an_account_walks_all_five_stages_and_round_again(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    assert stage_of(engine) == "strategy"

    define_strategy(run)
    assert go(run) == "research"
    assert stage_of(engine) == "research"

    clock.advance(days=10)
    cover_roles(run)
    answer_categories(run)
    assert go(run) == "action_plan"
    assert stage_of(engine) == "action_plan"

    clock.advance(days=10)
    for question in BANK.required:
        run(plan.answer_question, ACCOUNT, question.id, f"Answer to {question.id}")
    add_action(run)
    add_kpi(run)
    assert go(run) == "execution"
    assert stage_of(engine) == "execution"

    clock.advance(days=80)
    record(run, value="10")
    assert go(run) == "review"
    assert stage_of(engine) == "review"

    clock.advance(days=7)
    conclude(run)
    assert go(run) == "action_plan"  # adjust
    assert stage_of(engine) == "action_plan"

    clock.advance(days=3)
    assert go(run) == "execution"
    assert stage_of(engine) == "execution"

    # Round two: last quarter's values and last review no longer count.
    clock.advance(days=85)
    with pytest.raises(GuardRefused) as refused:
        go(run)
    assert [v.guard for v in refused.value.unmet] == ["kpis_recorded"]
    record(run, value="12.5")
    assert go(run) == "review"
    assert stage_of(engine) == "review"

    clock.advance(days=5)
    with pytest.raises(GuardRefused) as refused:
        go(run, to="strategy")
    assert [v.guard for v in refused.value.unmet] == ["kpis_reviewed"]
    conclude(run)
    assert go(run, to="strategy") == "strategy"  # replan
    assert stage_of(engine) == "strategy"

    clock.advance(days=1)
    assert go(run) == "research"
    assert stage_of(engine) == "research"

    moves = [(row.transition, row.from_stage, row.to_stage) for row in transition_rows(engine)]
    assert moves == [
        ("advance", "strategy", "research"),
        ("advance", "research", "action_plan"),
        ("advance", "action_plan", "execution"),
        ("advance", "execution", "review"),
        ("adjust", "review", "action_plan"),
        ("advance", "action_plan", "execution"),
        ("advance", "execution", "review"),
        ("replan", "review", "strategy"),
        ("advance", "strategy", "research"),
    ]


# --- the workflow's Machine decides ---------------------------------------------------------------


def test_the_workflow_machine_is_what_moves_an_account(
    engine: Engine, clock: FixedClock, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transitions is load-bearing: with its trigger made to do nothing, no account moves, no
    verdict is given and nothing is written, and the engine says so instead of pretending."""
    from transitions.core import Event

    new_account(engine, clock, run)
    define_strategy(run)
    before = snapshot(engine)
    monkeypatch.setattr(Event, "trigger", lambda self, model, *args, **kwargs: True)

    with pytest.raises(RuntimeError, match="judged no move"):
        run(advance, ACCOUNT)
    with pytest.raises(RuntimeError, match="judged no move"):
        run(advance, ACCOUNT, dry_run=True)
    assert snapshot(engine) == before
    assert stage_of(engine) == "strategy"

    monkeypatch.undo()
    assert go(run) == "research"  # the same move, with the Machine at work


def test_the_machine_answers_which_moves_exist_and_refuses_the_others(
    engine: Engine, clock: FixedClock, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)
    kam = get_workflow("kam")
    # The Machine forgets the move from Strategy: the engine knows of no move either.
    monkeypatch.setitem(kam.machine.events["advance"].transitions, "strategy", [])
    with pytest.raises(InvalidInput, match="from which nothing advances"):
        run(advance, ACCOUNT)
    monkeypatch.undo()

    # A move the Machine does not know from the stage is its refusal, in one clear line.
    with pytest.raises(InvalidInput, match="workflow kam has no promote from Strategy"):
        run(close, ACCOUNT, "promote", reason="not a candidate")
    assert go(run) == "research"
