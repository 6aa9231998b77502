"""Each guard of kamflow/guards.py, met and unmet, through the core functions, on both databases.

The guards are read the way a user meets them: the verdicts of a dry-run `advance`, `why`, the
refusal of a real `advance`, and `evaluate` on a transition of the workflow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.definitions.discovery import get_workflow
from kamflow.engine import close, evaluate, why
from kamflow.errors import GuardRefused, InvalidInput, NotAllowed
from kamflow.records import plan
from kamflow.records.accounts import find_account
from tests.account_steps import (
    ACCOUNT,
    BANK,
    KPI,
    OWNER,
    add_action,
    add_kpi,
    add_person,
    answer_categories,
    answer_required,
    conclude,
    cover_roles,
    define_strategy,
    go,
    new_account,
    reach,
    record,
    stage_of,
    verdicts,
)
from tests.conftest import Runner, snapshot

LEADER = "leader@example.com"
COLLEAGUE = "colleague@example.com"
STRANGER = "stranger@example.com"

STRATEGY_PARTS = {
    "objective": "the objective (what)",
    "stakeholders": "the stakeholders and buying centres (with whom)",
    "rationale": "the rationale (why)",
}


# --- strategy_defined --------------------------------------------------------------------------


def test_strategy_defined_unmet_names_what_who_and_why(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)

    verdict = verdicts(run)["strategy_defined"]

    assert not verdict.ok
    for label in STRATEGY_PARTS.values():
        assert label in verdict.message
    assert "kamflow strategy set" in verdict.message


@pytest.mark.parametrize("column", list(STRATEGY_PARTS))
def test_strategy_defined_names_the_one_part_that_is_blank(
    engine: Engine, clock: FixedClock, run: Runner, column: str
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)
    # `strategy set` refuses a blank part (next test), so a strategy with a hole can only come
    # from the database itself, e.g. edited by hand: blank one column there.
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE strategy SET {column} = ''")

    verdict = verdicts(run)["strategy_defined"]

    assert not verdict.ok
    assert STRATEGY_PARTS[column] in verdict.message
    for other, label in STRATEGY_PARTS.items():
        if other != column:
            assert label not in verdict.message


@pytest.mark.parametrize("option", ["objective", "who", "why"])
def test_set_strategy_refuses_a_blank_part_and_names_it(
    engine: Engine, clock: FixedClock, run: Runner, option: str
) -> None:
    new_account(engine, clock, run)
    texts = {"objective": "Grow services", "who": "The CFO", "why": "They migrate to cloud"}
    texts[option] = "   "
    before = snapshot(engine)

    with pytest.raises(InvalidInput, match=f"--{option} must not be empty"):
        run(plan.set_strategy, ACCOUNT, **texts)

    assert snapshot(engine) == before


def test_strategy_defined_met_lets_the_account_into_research(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    define_strategy(run)

    verdict = verdicts(run)["strategy_defined"]

    assert verdict.ok, verdict.message
    assert verdict.message == "the strategy says what, with whom and why"
    assert go(run) == "research"
    assert stage_of(engine) == "research"


# --- roles_covered -----------------------------------------------------------------------------


def test_roles_covered_unmet_names_every_role_when_nobody_holds_one(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")

    verdict = verdicts(run)["roles_covered"]

    assert not verdict.ok
    for role in (
        "relationship-lead",
        "technical-expert",
        "collaborator",
        "project-manager",
        "innovator",
        "result-driver",
    ):
        assert role in verdict.message


def test_roles_covered_names_only_the_missing_roles(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    add_person(engine, clock, COLLEAGUE)
    cover_roles(run, ("relationship-lead", "technical-expert", "collaborator"))
    cover_roles(run, ("project-manager",), holder=COLLEAGUE)

    verdict = verdicts(run)["roles_covered"]

    assert not verdict.ok
    assert "innovator" in verdict.message
    assert "result-driver" in verdict.message
    for held in ("relationship-lead", "technical-expert", "collaborator", "project-manager"):
        assert held not in verdict.message


def test_roles_covered_met_when_one_person_holds_all_six_roles(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    cover_roles(run, holder=OWNER)

    verdict = verdicts(run)["roles_covered"]

    assert verdict.ok, verdict.message
    assert verdict.message == "all 6 roles are held"


def test_roles_covered_unmet_again_when_a_role_is_unassigned(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    cover_roles(run)
    run(plan.unassign_role, ACCOUNT, "innovator", OWNER)

    verdict = verdicts(run)["roles_covered"]

    assert not verdict.ok
    assert "innovator" in verdict.message
    assert "collaborator" not in verdict.message


TWO_ROLE_WORKFLOW = """\
name: tworoles
title: "A lighter process that needs only two roles"
questions: questions.yaml
stages:
  - name: research
    title: "Research"
    limit_days: 7
  - name: action_plan
    title: "Action plan"
    limit_days: 7
transitions:
  - name: advance
    from: research
    to: action_plan
    guards:
      - roles_covered:
          roles: [relationship-lead, technical-expert]
"""


def test_roles_covered_checks_only_the_roles_its_parameter_lists(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "tworoles.yaml").write_text(TWO_ROLE_WORKFLOW, encoding="utf-8")
    shutil.copy(BANK.path, folder / "questions.yaml")
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    new_account(engine, clock, run, workflow="tworoles")
    cover_roles(run, ("relationship-lead",))

    with db.session_scope(engine) as session:
        account = find_account(session, ACCOUNT)
        definition = get_workflow("tworoles")
        [move] = definition.moves_from(account.stage)
        [verdict] = evaluate(session, account, definition, move, actor=OWNER, now=clock.now())

    assert not verdict.ok
    assert "technical-expert" in verdict.message
    # The four roles the parameter leaves out are not asked for.
    for role in ("relationship-lead", "collaborator", "project-manager", "innovator"):
        assert role not in verdict.message

    cover_roles(run, ("technical-expert",))
    assert verdicts(run)["roles_covered"].message == "all 2 roles are held"
    assert go(run) == "action_plan"


# --- research_done -----------------------------------------------------------------------------


def test_research_done_unmet_names_every_category_when_nothing_is_answered(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")

    verdict = verdicts(run)["research_done"]

    assert not verdict.ok
    assert verdict.message.startswith("8 question categories have no answer yet")
    for category in BANK.categories:
        assert f"{category.id} ({category.title})" in verdict.message


def test_research_done_names_only_the_categories_without_an_answer(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    answer_categories(run, skip=("competitors", "unknowns"))

    verdict = verdicts(run)["research_done"]

    assert not verdict.ok
    assert "2 question categories have no answer yet" in verdict.message
    assert "competitors (Who are our competitors?)" in verdict.message
    assert "unknowns (What else do we need to know?)" in verdict.message
    for category in BANK.categories:
        if category.id not in ("competitors", "unknowns"):
            assert f"{category.id} (" not in verdict.message


def test_research_done_counts_a_not_applicable_mark(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    answer_categories(run, skip=("competitors",))
    optional = next(q for q in BANK.questions if q.category == "competitors" and not q.required)
    run(
        plan.mark_not_applicable,
        ACCOUNT,
        optional.id,
        reason="A sole supplier: nobody else sells this",
    )

    verdict = verdicts(run)["research_done"]

    assert verdict.ok, verdict.message
    assert verdict.message == "all 8 question categories have answers"


def test_research_done_and_roles_covered_met_let_the_account_into_action_plan(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "research")
    cover_roles(run)
    answer_categories(run)

    found = verdicts(run)

    assert found["research_done"].ok and found["roles_covered"].ok
    assert go(run) == "action_plan"


# --- plan_complete -----------------------------------------------------------------------------


def test_plan_complete_names_the_unanswered_required_questions(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")
    left_open = (BANK.required[0].id, BANK.required[-1].id)
    answer_required(run, skip=left_open)
    add_action(run)

    verdict = verdicts(run)["plan_complete"]

    assert not verdict.ok
    assert "2 required questions are unanswered" in verdict.message
    for question in BANK.required:
        assert (question.id in verdict.message) == (question.id in left_open), question.id
    assert "no action" not in verdict.message


def test_plan_complete_needs_an_action(engine: Engine, clock: FixedClock, run: Runner) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")
    answer_required(run)

    verdict = verdicts(run)["plan_complete"]

    assert not verdict.ok
    assert "the plan has no action yet" in verdict.message
    assert "required" not in verdict.message


def test_plan_complete_names_every_problem_at_once(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")

    verdict = verdicts(run)["plan_complete"]

    assert not verdict.ok
    assert f"{len(BANK.required)} required questions are unanswered" in verdict.message
    assert "the plan has no action yet" in verdict.message


def test_plan_complete_met_with_required_answers_and_an_owned_dated_action(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")
    answer_required(run)
    add_action(run)

    verdict = verdicts(run)["plan_complete"]

    assert verdict.ok, verdict.message
    assert verdict.message.endswith("has 1 action")


def test_a_required_question_cannot_be_marked_not_applicable(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    required = BANK.required[0].id
    before = snapshot(engine)

    with pytest.raises(InvalidInput, match=f"{required} is required: it must be answered"):
        run(plan.mark_not_applicable, ACCOUNT, required, reason="Does not apply")

    assert snapshot(engine) == before


def test_a_required_answer_cannot_be_replaced_by_a_not_applicable_mark(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")
    answer_required(run)
    add_action(run)
    required = BANK.required[0].id

    with pytest.raises(InvalidInput):
        run(plan.mark_not_applicable, ACCOUNT, required, reason="Changed our mind")

    assert verdicts(run)["plan_complete"].ok


# --- kpis_defined ------------------------------------------------------------------------------


def test_kpis_defined_unmet_without_a_kpi_then_met_with_one(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")
    answer_required(run)
    add_action(run)

    unmet = verdicts(run)["kpis_defined"]
    assert not unmet.ok
    assert "0 KPIs defined, 1 needed" in unmet.message
    assert "kamflow kpi add" in unmet.message
    with pytest.raises(GuardRefused) as refused:
        go(run)
    assert [v.guard for v in refused.value.unmet] == ["kpis_defined"]

    add_kpi(run)

    met = verdicts(run)["kpis_defined"]
    assert met.ok, met.message
    assert met.message == "1 KPI with targets"
    assert go(run) == "execution"


# --- kpis_recorded -----------------------------------------------------------------------------


def test_kpis_recorded_counts_only_values_recorded_after_entering_execution(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "action_plan")
    answer_required(run)
    add_action(run)
    add_kpi(run, KPI)
    add_kpi(run, "NPS")
    # Values recorded while still planning: they must not count for Execution.
    record(run, KPI, "8")
    record(run, "NPS", "31")
    clock.advance(days=1)
    assert go(run) == "execution"
    clock.advance(days=30)

    with pytest.raises(GuardRefused) as refused:
        go(run)
    [verdict] = refused.value.unmet
    assert verdict.guard == "kpis_recorded"
    assert "no value recorded since entering Execution" in verdict.message
    assert KPI in verdict.message and "NPS" in verdict.message

    record(run, KPI, "10")

    verdict = verdicts(run)["kpis_recorded"]
    assert not verdict.ok
    assert "NPS" in verdict.message
    assert KPI not in verdict.message

    record(run, "NPS", "35")

    verdict = verdicts(run)["kpis_recorded"]
    assert verdict.ok, verdict.message
    assert go(run) == "review"


# --- kpis_reviewed -----------------------------------------------------------------------------


def test_kpis_reviewed_needs_a_conclusion_written_since_entering_review(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "execution")
    clock.advance(days=10)
    record(run)
    # A conclusion cannot be written during Execution: it would not be this review's.
    with pytest.raises(InvalidInput, match="a review counts only in Review"):
        conclude(run)
    clock.advance(days=1)
    assert go(run) == "review"
    clock.advance(days=2)

    for to in (None, "strategy"):
        verdict = verdicts(run, to=to)["kpis_reviewed"]
        assert not verdict.ok
        assert "no review conclusion written yet in this stage" in verdict.message
        assert "no value recorded" not in verdict.message

    conclude(run)

    for to in (None, "strategy"):
        verdict = verdicts(run, to=to)["kpis_reviewed"]
        assert verdict.ok, verdict.message


def test_kpis_reviewed_needs_values_recorded_since_entering_execution(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "review")
    clock.advance(days=1)
    conclude(run)
    # A KPI added during Review has no value of this cycle yet.
    add_kpi(run, "Share of wallet")

    verdict = verdicts(run)["kpis_reviewed"]
    assert not verdict.ok
    assert "no value recorded since entering Execution for: Share of wallet" in verdict.message
    assert KPI not in verdict.message
    assert "no review conclusion" not in verdict.message

    record(run, "Share of wallet", "0.18")

    with db.session_scope(engine) as session:
        report = why(session, ACCOUNT, actor=OWNER, now=clock.now())
    moves = {move["to"]: move for move in report["moves"]}
    assert set(moves) == {"action_plan", "strategy"}
    assert moves["action_plan"]["transition"] == "adjust" and moves["action_plan"]["default"]
    assert moves["strategy"]["transition"] == "replan"
    for move in moves.values():
        assert [(v["guard"], v["ok"]) for v in move["verdicts"]] == [("kpis_reviewed", True)]


# --- who may disqualify or retire ------------------------------------------------------------


EXITS = [("disqualify", "disqualified"), ("retire", "retired")]


@pytest.mark.parametrize(("transition", "exit_stage"), EXITS)
@pytest.mark.parametrize("actor", [OWNER, LEADER])
def test_the_owner_or_a_leader_may_close_an_account(
    engine: Engine, clock: FixedClock, run: Runner, transition: str, exit_stage: str, actor: str
) -> None:
    new_account(engine, clock, run)
    add_person(engine, clock, LEADER, leader=True)

    outcome = run(close, ACCOUNT, transition, reason="No growth left", actor=actor)

    [verdict] = outcome.verdicts
    assert verdict.guard == "allowed" and verdict.ok
    assert actor in verdict.message
    assert outcome.to_stage == exit_stage
    assert stage_of(engine) == exit_stage


@pytest.mark.parametrize(("transition", "exit_stage"), EXITS)
@pytest.mark.parametrize(("actor", "known"), [(COLLEAGUE, True), (STRANGER, False)])
def test_anyone_else_may_not_close_an_account_and_is_told_who_may(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    transition: str,
    exit_stage: str,
    actor: str,
    known: bool,
) -> None:
    new_account(engine, clock, run)
    add_person(engine, clock, LEADER, leader=True)
    add_person(engine, clock, COLLEAGUE)
    # Holding a role on the account is not enough either.
    cover_roles(run, ("relationship-lead",), holder=COLLEAGUE)
    before = snapshot(engine)

    with pytest.raises(NotAllowed) as refused:
        run(close, ACCOUNT, transition, reason="No growth left", actor=actor)

    # A permission, refused on its own (exit 5), not listed among missing items.
    message = str(refused.value)
    assert message.startswith(f"not allowed: only the owner or a leader may {transition} {ACCOUNT}")
    assert f"you are {actor}" in message
    assert ("not a known person" in message) == (not known)
    assert refused.value.exit_code == 5
    assert snapshot(engine) == before
    assert stage_of(engine) == "strategy" != exit_stage


def test_nobody_outside_the_account_team_may_advance_it(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    """A transition without an ``allowed:`` of its own follows the ``advance`` rule: the owner,
    the account team and leaders; an unknown actor is none of them."""
    new_account(engine, clock, run)
    define_strategy(run)
    add_person(engine, clock, COLLEAGUE)
    before = snapshot(engine)

    with pytest.raises(NotAllowed) as refused:
        go(run, actor=STRANGER)
    assert "only the owner, someone on the account team or a leader may advance" in str(
        refused.value
    )
    assert snapshot(engine) == before
    cover_roles(run, ("innovator",), holder=COLLEAGUE)
    assert go(run, actor=COLLEAGUE) == "research"
