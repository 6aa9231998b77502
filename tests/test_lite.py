"""The lighter process (workflows/kam-lite.yaml) and moving an account between workflows.

Through the CLI, on SQLite and on PostgreSQL: an account on kam-lite goes round the five stages
with three roles and three required questions; its longer limits, in business days; `account
set-workflow`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from kamflow.clock import FixedClock
from kamflow.definitions.discovery import get_workflow
from tests.conftest import Cli, as_json, ok, refused, snapshot

OWNER = "owner@example.com"
LEADER = "lead@example.com"
STRANGER = "stranger@example.com"

LITE_ROLES = ("relationship-lead", "technical-expert", "collaborator")
OTHER_ROLES = ("project-manager", "innovator", "result-driver")
LITE_REQUIRED = (
    "their-team.decision-maker",
    "needs.top-business-needs",
    "value.value-we-deliver",
)
#: Required by the full bank (and so by kam), not by kam-lite.
FULL_ONLY_REQUIRED = (
    "our-team.exec-sponsor",
    "our-team.revenue-goal",
    "their-team.champion",
    "trends.industry-shifts",
    "competitors.main-competitor",
    "value.expansion-opportunities",
    "unknowns.critical-gaps",
)
KPI = "Revenue growth"


def people(cli: Cli) -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", STRANGER))
    ok(cli("person", "add", LEADER, "--leader"))


def stage(cli: Cli, name: str) -> str:
    found: str = as_json(cli("account", "show", name, "--json"))["stage"]
    return found


def advance(cli: Cli, name: str, *args: str) -> str:
    """Advance for real; the stage reached."""
    ok(cli("advance", name, *args))
    return stage(cli, name)


def set_strategy(cli: Cli, name: str) -> None:
    ok(
        cli(
            "strategy", "set", name,
            "--objective", "Keep the maintenance contract and add the spare-parts business",
            "--who", "The head of maintenance and the purchasing lead",
            "--why", "They standardise on two suppliers next year",
        )
    )  # fmt: skip


def answer_one_optional_per_category(cli: Cli, name: str) -> None:
    bank = get_workflow("kam-lite").questions
    for category in bank.categories:
        question = next(
            q
            for q in bank.questions
            if q.category == category.id and not q.required and q.id not in LITE_REQUIRED
        )
        ok(cli("plan", "answer", name, question.id, f"What we know about {category.id}"))


def open_questions(cli: Cli, name: str) -> dict[str, bool]:
    """The open questions' ids, each with whether the account's workflow requires it."""
    rows = as_json(cli("plan", "questions", name, "--open", "--json"))
    return {row["id"]: row["required"] for row in rows}


def statuses(cli: Cli) -> dict[str, str]:
    return {row["name"]: row["status"] for row in as_json(cli("account", "list", "--json"))}


# --- the lite workflow end to end ----------------------------------------------------------------


def test_a_lite_account_goes_round_the_five_stages_and_again(cli: Cli, clock: FixedClock) -> None:
    people(cli)
    name = "Lite Ltd"
    ok(cli("account", "add", name, "--owner", OWNER, "--workflow", "kam-lite"))
    shown = as_json(cli("account", "show", name, "--json"))
    assert (shown["workflow"], shown["stage"]) == ("kam-lite", "strategy")
    assert (shown["limit_business_days"], shown["limit_days"]) == (15, None)

    clock.advance(days=1)
    set_strategy(cli, name)
    assert advance(cli, name) == "research"

    clock.advance(days=1)
    for role in LITE_ROLES:
        ok(cli("role", "assign", name, role, OWNER))
    answer_one_optional_per_category(cli, name)
    assert advance(cli, name) == "action_plan"
    roles = as_json(cli("account", "show", name, "--json"))["roles"]
    assert all(not roles[role] for role in OTHER_ROLES)

    # the plan needs only the lite list of required questions
    clock.advance(days=1)
    dry = cli("advance", name, "--dry-run")
    assert dry.exit_code == 3
    for question in LITE_REQUIRED:
        assert question in dry.output
    for question in FULL_ONLY_REQUIRED:
        assert question not in dry.output
    for question in LITE_REQUIRED:
        ok(cli("plan", "answer", name, question, f"Answer to {question}"))
    ok(cli("action", "add", name, "Plant visit", "--owner", OWNER, "--due", "2027-02-15"))
    ok(cli("kpi", "add", name, KPI, "--target", "8", "--unit", "%"))
    still_open = open_questions(cli, name)
    for question in FULL_ONLY_REQUIRED:
        assert still_open[question] is False  # open, and not required by kam-lite
    assert not any(still_open.values())
    assert advance(cli, name) == "execution"

    clock.advance(days=10)
    ok(cli("kpi", "record", name, KPI, "6.5"))
    assert advance(cli, name) == "review"

    clock.advance(days=1)
    ok(cli("kpi", "review", name, "--conclusion", "Behind target; add a second plant"))
    assert advance(cli, name) == "action_plan"  # adjust: round again

    clock.advance(days=1)
    assert advance(cli, name) == "execution"
    clock.advance(days=10)
    ok(cli("kpi", "record", name, KPI, "8.5"))
    assert advance(cli, name) == "review"
    clock.advance(days=1)
    ok(cli("kpi", "review", name, "--conclusion", "On target; re-plan for next year"))
    assert advance(cli, name, "--to", "strategy") == "strategy"  # replan

    moves = [
        (row["transition"], row["from"], row["to"])
        for row in as_json(cli("history", name, "--json"))
        if row["kind"] == "transition"
    ]
    assert moves == [
        ("advance", "strategy", "research"),
        ("advance", "research", "action_plan"),
        ("advance", "action_plan", "execution"),
        ("advance", "execution", "review"),
        ("adjust", "review", "action_plan"),
        ("advance", "action_plan", "execution"),
        ("advance", "execution", "review"),
        ("replan", "review", "strategy"),
    ]


def test_the_same_work_is_not_enough_on_the_full_workflow(cli: Cli, engine: Engine) -> None:
    people(cli)
    name = "Full Corp"
    ok(cli("account", "add", name, "--owner", OWNER))
    set_strategy(cli, name)
    assert advance(cli, name) == "research"
    for role in LITE_ROLES:
        ok(cli("role", "assign", name, role, OWNER))
    answer_one_optional_per_category(cli, name)
    before = snapshot(engine)
    err = refused(cli("advance", name), 3)
    for role in OTHER_ROLES:
        assert role in err
    assert snapshot(engine) == before


def test_a_lite_candidate_is_promoted_like_any_other(cli: Cli) -> None:
    people(cli)
    ok(
        cli(
            "account", "add", "Lite Cand", "--owner", OWNER, "--workflow", "kam-lite", "--candidate"
        )
    )
    assert stage(cli, "Lite Cand") == "candidate"
    refused(cli("account", "promote", "Lite Cand"), 3)
    ok(
        cli(
            "account", "score", "Lite Cand", "--revenue", "4", "--growth", "4", "--renewal", "4",
            "--win-now", "4", "--effort", "2", "--relationship", "4", "--fit", "4", "--logo", "4",
        )
    )  # fmt: skip
    ok(cli("account", "promote", "Lite Cand"))
    shown = as_json(cli("account", "show", "Lite Cand", "--json"))
    assert (shown["workflow"], shown["stage"]) == ("kam-lite", "strategy")


# --- the lite limits -----------------------------------------------------------------------------


def test_lite_strategy_has_15_business_days_where_kam_has_14_days(
    cli: Cli, clock: FixedClock
) -> None:
    people(cli)
    # Added on a Monday: 15 business days are three weeks, with no public holidays set.
    ok(cli("account", "add", "Lite Ltd", "--owner", OWNER, "--workflow", "kam-lite"))
    ok(cli("account", "add", "Full Corp", "--owner", OWNER))

    clock.advance(days=13)
    assert statuses(cli) == {"Lite Ltd": "on_track", "Full Corp": "on_track"}
    clock.advance(days=1)  # day 14 (a Monday): kam's limit; 10 business days for kam-lite
    assert statuses(cli) == {"Lite Ltd": "on_track", "Full Corp": "behind"}
    clock.advance(days=6)  # day 20, a Sunday: still 14 business days
    assert statuses(cli) == {"Lite Ltd": "on_track", "Full Corp": "behind"}
    clock.advance(days=1)  # day 21 (a Monday): kam-lite's limit, kam's limit + 7
    assert statuses(cli) == {"Lite Ltd": "behind", "Full Corp": "stuck"}
    clock.advance(days=13)  # day 34, a Sunday: kam-lite escalates 10 business days on
    assert statuses(cli)["Lite Ltd"] == "behind"
    clock.advance(days=1)  # day 35, a Monday: 25 business days
    assert statuses(cli)["Lite Ltd"] == "stuck"


def test_lite_reminds_on_business_days_only(cli: Cli, clock: FixedClock, tmp_path: Path) -> None:
    people(cli)
    ok(cli("account", "add", "Lite Ltd", "--owner", OWNER, "--workflow", "kam-lite"))
    mail = {"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(tmp_path / "outbox")}
    rows = as_json(cli("forecast", "--days", "60", "--json"))
    stalls = [(row["at"][:10], row["kind"], row["repeat"]) for row in rows]
    # Limit 15 business days, a reminder every 5, escalations 10 past the limit and every 10.
    assert stalls == [
        ("2027-01-25", "reminder", 0),
        ("2027-02-01", "reminder", 1),
        ("2027-02-08", "escalation", 0),
        ("2027-02-22", "escalation", 1),
    ]
    clock.set(datetime.fromisoformat(rows[0]["at"]))
    ticked = ok(cli("tick", env=mail))
    assert "queued: Lite Ltd has been in Strategy for 15 business days" in ticked


def test_the_lite_limits_are_the_documented_ones(cli: Cli) -> None:
    definition = as_json(cli("workflow", "show", "kam-lite", "--format", "json"))
    limits = {s["name"]: s["limit_business_days"] for s in definition["stages"]}
    assert limits == {
        "strategy": 15,
        "research": 22,
        "action_plan": 22,
        "execution": 85,
        "review": 15,
    }
    assert all(s["limit_days"] is None for s in definition["stages"])
    assert definition["ladder"] == {
        "remind_every_days": 5,
        "escalate_after_days": 10,
        "escalate_every_days": 10,
    }


# --- moving between workflows --------------------------------------------------------------------


def test_set_workflow_keeps_the_data_and_the_history(cli: Cli, clock: FixedClock) -> None:
    people(cli)
    name = "Acme Corp"
    ok(cli("account", "add", name, "--owner", OWNER))
    set_strategy(cli, name)
    clock.advance(days=2)
    assert advance(cli, name) == "research"
    for role in LITE_ROLES:
        ok(cli("role", "assign", name, role, OWNER))
    answer_one_optional_per_category(cli, name)
    ok(cli("plan", "answer", name, "our-team.exec-sponsor", "Our COO, monthly"))
    refused(cli("advance", name), 3)  # kam wants all six roles
    before = as_json(cli("account", "show", name, "--json"))
    history_before = as_json(cli("history", name, "--json"))

    clock.advance(days=1)
    out = ok(cli("account", "set-workflow", name, "kam-lite"))
    assert "kam-lite" in out

    after = as_json(cli("account", "show", name, "--json"))
    assert after["workflow"] == "kam-lite"
    assert after["stage"] == "research"
    assert after["stage_entered_at"] == before["stage_entered_at"]
    assert after["strategy"] == before["strategy"]
    assert after["roles"] == before["roles"]
    assert after["plan"]["answered"] == before["plan"]["answered"] == 9
    history_after = as_json(cli("history", name, "--json"))
    assert history_after[: len(history_before)] == history_before
    assert len(history_after) == len(history_before) + 1
    change = history_after[-1]
    assert change["kind"] == "workflow"
    assert change["actor"] == OWNER
    assert "kam" in change["note"] and "kam-lite" in change["note"]
    answers = {
        row["id"]: row["answer"] for row in as_json(cli("plan", "questions", name, "--json"))
    }
    assert answers["our-team.exec-sponsor"] == "Our COO, monthly"

    # the lite guards now apply: three roles are enough
    assert advance(cli, name) == "action_plan"


def test_a_leader_may_change_the_workflow(cli: Cli) -> None:
    people(cli)
    ok(cli("account", "add", "Acme", "--owner", OWNER))
    ok(cli("account", "set-workflow", "Acme", "kam-lite", actor=LEADER))
    row = as_json(cli("history", "Acme", "--json"))[-1]
    assert (row["kind"], row["actor"]) == ("workflow", LEADER)
    ok(cli("account", "set-workflow", "Acme", "kam", actor=LEADER))
    assert as_json(cli("account", "show", "Acme", "--json"))["workflow"] == "kam"


@pytest.mark.parametrize("actor", [STRANGER, "nobody@example.com"], ids=["known", "unknown"])
def test_set_workflow_by_someone_neither_owner_nor_leader_is_refused(
    cli: Cli, engine: Engine, actor: str
) -> None:
    people(cli)
    ok(cli("account", "add", "Acme", "--owner", OWNER))
    before = snapshot(engine)
    err = refused(cli("account", "set-workflow", "Acme", "kam-lite", actor=actor), 5)
    assert "not allowed: only the owner, a leader or an admin" in err
    assert actor in err
    assert snapshot(engine) == before


def test_set_workflow_to_an_unknown_workflow_is_refused(cli: Cli, engine: Engine) -> None:
    people(cli)
    ok(cli("account", "add", "Acme", "--owner", OWNER))
    before = snapshot(engine)
    err = refused(cli("account", "set-workflow", "Acme", "kam-extreme"), 1)
    assert len(err.splitlines()) == 1
    assert "kam-extreme" in err
    err = refused(cli("account", "set-workflow", "Acme", "kam"), 1)
    assert "already" in err
    refused(cli("account", "set-workflow", "Nobody Inc", "kam-lite"), 1)
    assert snapshot(engine) == before
