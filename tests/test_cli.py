"""The CLI end to end: every command of the contract, its output, its errors and exit codes.

In-process through the ``cli`` fixture (CliRunner) on SQLite and on PostgreSQL, plus real
subprocesses of the installed ``kamflow`` console script.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.clock import FixedClock
from tests import bulk
from tests.conftest import START, Cli, as_json, failed, ok, snapshot

OWNER = "owner@example.com"
LEADER = "lead@example.com"
ENGINEER = "engineer@example.com"
ACME = "Acme Corp"

#: The questions kam.yaml's question bank marks required.
REQUIRED_QUESTIONS = (
    "our-team.exec-sponsor",
    "our-team.revenue-goal",
    "their-team.decision-maker",
    "their-team.champion",
    "trends.industry-shifts",
    "needs.top-business-needs",
    "competitors.main-competitor",
    "value.value-we-deliver",
    "value.expansion-opportunities",
    "unknowns.critical-gaps",
)
ROLES = (
    "relationship-lead",
    "technical-expert",
    "collaborator",
    "project-manager",
    "innovator",
    "result-driver",
)
KAMFLOW = Path(sys.executable).parent / "kamflow"


# --- helpers -------------------------------------------------------------------------------------


def setup_people(cli: Cli) -> None:
    ok(cli("person", "add", OWNER, "--name", "Olga Owner"))
    ok(cli("person", "add", LEADER, "--name", "Lea Leader", "--leader"))
    ok(cli("person", "add", ENGINEER, "--name", "Eli Engineer"))


def new_account(cli: Cli, name: str = ACME) -> None:
    ok(cli("account", "add", name, "--owner", OWNER))


def set_strategy(cli: Cli, name: str = ACME) -> None:
    ok(
        cli(
            "strategy",
            "set",
            name,
            "--objective",
            "Become their standard supplier",
            "--who",
            "COO office, plant operations",
            "--why",
            "Largest growth potential",
        )
    )


def do_research(cli: Cli, name: str = ACME) -> None:
    """Everything research -> action_plan needs: six roles held, every category answered."""
    for role in ROLES:
        ok(cli("role", "assign", name, role, ENGINEER if role == "innovator" else OWNER))
    for question in REQUIRED_QUESTIONS:
        ok(cli("plan", "answer", name, question, f"An answer to {question}."))
    ok(cli("plan", "na", name, "insights.culture", "--reason", "Not relevant here"))


def make_plan(cli: Cli, name: str = ACME) -> None:
    """Everything action_plan -> execution needs (the required answers are already there)."""
    ok(cli("action", "add", name, "Run a workshop", "--owner", ENGINEER, "--due", "2027-03-01"))
    ok(cli("kpi", "add", name, "Revenue", "--target", "1800000", "--unit", "EUR"))


def stage_of(cli: Cli, name: str = ACME) -> str:
    stage: str = as_json(cli("account", "show", name, "--json"))["stage"]
    return stage


def transitions(cli: Cli, name: str = ACME) -> list[tuple[str, str, str]]:
    rows = as_json(cli("history", name, "--json"))
    return [(r["transition"], r["from"], r["to"]) for r in rows if r["kind"] == "transition"]


# --- the database --------------------------------------------------------------------------------


def test_init_creates_the_database_then_says_it_is_up_to_date(new_cli: Cli) -> None:
    first = ok(new_cli("init"))
    assert "Created database" in first
    second = ok(new_cli("init"))
    assert "up to date" in second


def _database_made(url: str) -> bool:
    """Whether anything of a database is at ``url``: the SQLite file, or tables in the schema."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).exists()
    with db.engine_for(url).connect() as connection:
        return bool(sa.inspect(connection).get_table_names())


def test_only_init_creates_the_database_every_other_command_says_to_run_it(
    new_cli: Cli, database_url: str, tmp_path: Path
) -> None:
    commands = [
        ["account", "list"],
        ["person", "list", "--json"],
        ["person", "add", OWNER],
        ["status"],
        ["tick"],
        ["tick", "--dry-run"],
    ]
    for command in commands:
        line = failed(new_cli(*command))
        assert "no kamflow database at" in line, (command, line)
        assert "kamflow init" in line, (command, line)
        assert not _database_made(database_url), command
    # The daemon too, as the installed script runs it (a daemon that started would never end).
    daemon = _kamflow("--db", database_url, "daemon", env=_environment(), cwd=tmp_path, timeout=60)
    assert daemon.returncode == 1, daemon.stderr
    assert daemon.stderr.startswith("Error: no kamflow database at"), daemon.stderr
    assert len(daemon.stderr.splitlines()) == 1, daemon.stderr
    assert not _database_made(database_url)

    assert "Created database" in ok(new_cli("init"))
    assert ok(new_cli("person", "list")).strip() == "(none)"


def test_a_mistyped_database_file_is_named_and_not_created(tmp_path: Path) -> None:
    shown = _kamflow(
        "--db", "sqlite:///kamflow-dmo.db", "account", "list", env=_environment(), cwd=tmp_path
    )
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert shown.stdout == ""
    assert shown.stderr == (
        "Error: no kamflow database at 'kamflow-dmo.db' (run `kamflow init` to create one)\n"
    )
    assert list(tmp_path.iterdir()) == []


# --- people and accounts -------------------------------------------------------------------------


def test_person_add_and_list(cli: Cli) -> None:
    assert ok(cli("person", "add", "Lea.Leader@Example.com", "--name", "Lea", "--leader")) == (
        "Added lea.leader@example.com (leader).\n"
    )
    # The login that made the database names itself (KAMFLOW_USER): it becomes the first admin.
    added = ok(cli("person", "add", OWNER, "--name", "Olga Owner"))
    assert added.startswith(f"Added {OWNER} (admin), signs in as ")
    login = added.removeprefix(f"Added {OWNER} (admin), signs in as ").removesuffix(".\n")
    listing = ok(cli("person", "list"))
    assert "lea.leader@example.com" in listing
    assert "Olga Owner" in listing
    people = as_json(cli("person", "list", "--json"))
    assert people == [
        {
            "email": "lea.leader@example.com",
            "name": "Lea",
            "leader": True,
            "admin": False,
            "login": None,
            "active": True,
        },
        {
            "email": OWNER,
            "name": "Olga Owner",
            "leader": False,
            "admin": True,
            "login": login,
            "active": True,
        },
    ]


def test_account_add_list_and_show(cli: Cli) -> None:
    setup_people(cli)
    added = ok(cli("account", "add", ACME, "--owner", OWNER, "--kind", "new"))
    assert ACME in added
    assert "strategy" in added.lower()
    ok(cli("account", "add", "Northwind", "--owner", OWNER))

    listing = ok(cli("account", "list"))
    assert ACME in listing
    assert "Northwind" in listing
    assert "Strategy" in listing

    rows = as_json(cli("account", "list", "--json"))
    assert [r["name"] for r in rows] == [ACME, "Northwind"]
    acme = rows[0]
    assert acme["owner"] == OWNER
    assert acme["kind"] == "new"
    assert acme["workflow"] == "kam"
    assert acme["stage"] == "strategy"
    assert acme["days_in_stage"] == 0
    assert acme["limit_days"] == 14
    assert isinstance(acme["id"], int)

    shown = ok(cli("account", "show", ACME))
    assert ACME in shown
    assert OWNER in shown
    assert "Strategy" in shown
    assert "the strategy lacks" in shown  # what the next move still needs

    details = as_json(cli("account", "show", ACME, "--json"))
    assert details["name"] == ACME
    assert details["owner"] == OWNER
    assert details["stage"] == "strategy"
    assert details["strategy"] is None
    assert set(details["roles"]) == set(ROLES)
    assert details["plan"]["questions"] == 57
    assert details["plan"]["required"] == len(REQUIRED_QUESTIONS)
    assert details["actions"] == []
    assert details["kpis"] == []
    assert [m["to"] for m in details["next"]] == ["research"]


def test_account_list_filters_by_stage(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    new_account(cli, "Northwind")
    set_strategy(cli)
    ok(cli("advance", ACME))
    names = [r["name"] for r in as_json(cli("account", "list", "--stage", "research", "--json"))]
    assert names == [ACME]
    names = [r["name"] for r in as_json(cli("account", "list", "--stage", "Strategy", "--json"))]
    assert names == ["Northwind"]
    assert ok(cli("account", "list", "--stage", "review")).strip() == "(none)"


def test_accounts_are_named_by_name_in_any_case_or_by_id(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    account_id = as_json(cli("account", "list", "--json"))[0]["id"]
    assert as_json(cli("account", "show", "acme corp", "--json"))["name"] == ACME
    assert as_json(cli("account", "show", "ACME CORP", "--json"))["name"] == ACME
    assert as_json(cli("account", "show", str(account_id), "--json"))["name"] == ACME
    set_strategy(cli, "aCmE cOrP")
    ok(cli("advance", str(account_id)))
    assert stage_of(cli) == "research"


def test_confirmations_name_the_account_when_given_by_id(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    account_id = str(as_json(cli("account", "list", "--json"))[0]["id"])
    assert ACME in ok(
        cli("strategy", "set", account_id, "--objective", "o", "--who", "w", "--why", "y")
    )
    assert ACME in ok(cli("role", "assign", account_id, "innovator", ENGINEER))


# --- the plan ------------------------------------------------------------------------------------


def test_strategy_set_is_shown_and_meets_its_guard(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    out = ok(
        cli(
            "strategy",
            "set",
            ACME,
            "--objective",
            "Standard supplier",
            "--who",
            "COO office",
            "--why",
            "Growth",
        )
    )
    assert "Strategy" in out
    assert ACME in out
    details = as_json(cli("account", "show", ACME, "--json"))
    assert details["strategy"] == {
        "objective": "Standard supplier",
        "who": "COO office",
        "why": "Growth",
    }
    assert details["next"][0]["verdicts"][0]["ok"] is True


def test_role_assign_and_unassign(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    out = ok(cli("role", "assign", ACME, "technical-expert", ENGINEER))
    assert ENGINEER in out
    assert "technical-expert" in out
    ok(cli("role", "assign", ACME, "technical-expert", OWNER))
    roles = as_json(cli("account", "show", ACME, "--json"))["roles"]
    assert roles["technical-expert"] == [ENGINEER, OWNER]
    assert ENGINEER in ok(cli("account", "show", ACME))

    out = ok(cli("role", "unassign", ACME, "technical-expert", ENGINEER))
    assert "no longer" in out
    roles = as_json(cli("account", "show", ACME, "--json"))["roles"]
    assert roles["technical-expert"] == [OWNER]


def test_plan_questions_answer_and_not_applicable(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    questions = as_json(cli("plan", "questions", ACME, "--json"))
    assert len(questions) == 57
    assert {q["category"] for q in questions} == {
        "our-team",
        "their-team",
        "trends",
        "needs",
        "insights",
        "competitors",
        "value",
        "unknowns",
    }
    assert {q["id"] for q in questions if q["required"]} == set(REQUIRED_QUESTIONS)
    assert {q["status"] for q in questions} == {"open"}
    first = questions[0]
    assert set(first) >= {"id", "category", "text", "required", "status", "answer"}

    table = ok(cli("plan", "questions", ACME))
    assert "our-team.exec-sponsor" in table
    assert first["text"] in table

    assert "our-team.exec-sponsor" in ok(
        cli("plan", "answer", ACME, "our-team.exec-sponsor", "Our CSO, twice a year.")
    )
    assert "insights.culture" in ok(
        cli("plan", "na", ACME, "insights.culture", "--reason", "Too early to tell")
    )
    by_id = {q["id"]: q for q in as_json(cli("plan", "questions", ACME, "--json"))}
    assert by_id["our-team.exec-sponsor"]["status"] == "answered"
    assert by_id["our-team.exec-sponsor"]["answer"] == "Our CSO, twice a year."
    assert by_id["insights.culture"]["status"] == "n/a"
    assert by_id["insights.culture"]["answer"] == "Too early to tell"
    assert "Our CSO" not in ok(cli("plan", "questions", ACME, "--open"))


def test_required_question_cannot_be_marked_not_applicable(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    before = snapshot(engine)
    line = failed(cli("plan", "na", ACME, "our-team.exec-sponsor", "--reason", "Nope"))
    assert "our-team.exec-sponsor" in line
    assert "required" in line
    assert snapshot(engine) == before


def test_action_add_done_and_list(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    out = ok(
        cli(
            "action",
            "add",
            ACME,
            "Run a workshop",
            "--owner",
            ENGINEER,
            "--due",
            "2027-01-10",
            "--resources",
            "Two engineers",
        )
    )
    assert "Run a workshop" in out
    assert "2027-01-10" in out
    ok(cli("action", "add", ACME, "Send the proposal", "--owner", OWNER, "--due", "2027-02-01"))
    actions = as_json(cli("action", "list", ACME, "--json"))
    assert [a["title"] for a in actions] == ["Run a workshop", "Send the proposal"]
    workshop = actions[0]
    assert workshop["owner"] == ENGINEER
    assert workshop["due"] == "2027-01-10"
    assert workshop["resources"] == "Two engineers"
    assert workshop["status"] == "open"
    assert workshop["overdue"] is False

    listing = ok(cli("action", "list", ACME))
    assert "Run a workshop" in listing
    assert ENGINEER in listing

    out = ok(cli("action", "done", ACME, str(workshop["id"])))
    assert f"#{workshop['id']}" in out
    assert "done" in out
    statuses = {a["title"]: a["status"] for a in as_json(cli("action", "list", ACME, "--json"))}
    assert statuses == {"Run a workshop": "done", "Send the proposal": "open"}


def test_an_action_past_its_due_date_is_listed_overdue(cli: Cli, clock: FixedClock) -> None:
    setup_people(cli)
    new_account(cli)
    ok(cli("action", "add", ACME, "Call the COO", "--owner", OWNER, "--due", "2027-01-10"))
    clock.advance(days=10)
    [action] = as_json(cli("action", "list", ACME, "--json"))
    assert action["overdue"] is True
    assert "overdue" in ok(cli("action", "list", ACME))


def test_kpi_add_record_and_review(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    out = ok(cli("kpi", "add", ACME, "Revenue", "--target", "1800000", "--unit", "EUR"))
    assert "Revenue" in out
    assert "1,800,000" in out
    ok(cli("kpi", "add", ACME, "Lead time", "--target", "3", "--unit", "days", "--lower-is-better"))
    out = ok(cli("kpi", "record", ACME, "Revenue", "1450000"))
    assert "1,450,000" in out
    ok(cli("kpi", "record", ACME, "Lead time", "2.5"))
    kpis = {k["name"]: k for k in as_json(cli("account", "show", ACME, "--json"))["kpis"]}
    assert kpis["Revenue"]["target"] == 1800000
    assert kpis["Revenue"]["unit"] == "EUR"
    assert kpis["Revenue"]["latest"] == 1450000
    assert kpis["Revenue"]["on_target"] is False
    assert kpis["Lead time"]["lower_is_better"] is True
    assert kpis["Lead time"]["on_target"] is True

    # A review counts only in Review (adjust and replan need it): in Strategy it is refused.
    early = cli("kpi", "review", ACME, "--conclusion", "Revenue behind; keep going")
    assert early.exit_code == 1
    assert early.stderr.startswith(f"Error: {ACME} is in Strategy: a review counts only in Review")
    assert as_json(cli("account", "show", ACME, "--json"))["latest_review"] is None


def test_kpi_period_defaults_to_the_quarter_of_now(cli: Cli, clock: FixedClock) -> None:
    setup_people(cli)
    new_account(cli)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    assert "for 2027-Q1" in ok(cli("kpi", "record", ACME, "Revenue", "90"))
    [kpi] = as_json(cli("account", "show", ACME, "--json"))["kpis"]
    assert kpi["period"] == "2027-Q1"

    clock.set(START.replace(month=5, day=10))
    assert "for 2027-Q2" in ok(cli("kpi", "record", ACME, "Revenue", "95"))
    clock.set(START.replace(month=12, day=31))
    assert "for 2027-Q4" in ok(cli("kpi", "record", ACME, "Revenue", "97"))

    assert "for 2027-H2" in ok(cli("kpi", "record", ACME, "Revenue", "99", "--period", "2027-H2"))
    [kpi] = as_json(cli("account", "show", ACME, "--json"))["kpis"]
    assert kpi["period"] == "2027-H2"
    assert kpi["latest"] == 99


def test_a_kpi_value_or_target_may_be_negative_and_a_mistyped_option_is_still_named(
    cli: Cli, engine: Engine
) -> None:
    setup_people(cli)
    new_account(cli)
    assert "target -2.5 pts" in ok(
        cli("kpi", "add", ACME, "Margin", "--target", "-2.5", "--unit", "pts")
    )
    assert "Margin = -3 " in ok(cli("kpi", "record", ACME, "Margin", "-3"))
    assert "Margin = -0.5 for 2027-H1" in ok(
        cli("kpi", "record", ACME, "Margin", "-.5", "--period", "2027-H1")
    )
    assert "Margin = -1 for 2027-H2" in ok(
        cli("kpi", "record", ACME, "Margin", "--period", "2027-H2", "-1")
    )
    assert "Margin = -4 " in ok(cli("kpi", "record", ACME, "Margin", "--", "-4"))
    [kpi] = as_json(cli("account", "show", ACME, "--json"))["kpis"]
    assert (kpi["target"], kpi["latest"]) == (-2.5, -4)

    before = snapshot(engine)
    mistyped = cli("kpi", "record", ACME, "Margin", "-3", "--perod", "2027-Q3")
    assert mistyped.exit_code == 2
    assert "No such option '--perod'" in mistyped.stderr
    assert "Did you mean '--period'?" in mistyped.stderr
    unfinished = cli("kpi", "record", ACME, "Margin", "-3", "--period")
    assert unfinished.exit_code == 2
    assert "'--period' requires an argument" in unfinished.stderr
    assert "'-3x' is not a number" in failed(cli("kpi", "record", ACME, "Margin", "-3x"))
    assert snapshot(engine) == before


# --- stage changes -------------------------------------------------------------------------------


def test_an_account_goes_through_all_five_stages_and_round_again(
    cli: Cli, clock: FixedClock
) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    assert ok(cli("advance", ACME)).strip() == f"{ACME}: strategy -> research (advance)."

    clock.advance(days=7)
    do_research(cli)
    assert "research -> action_plan" in ok(cli("advance", ACME))

    clock.advance(days=7)
    make_plan(cli)
    assert "action_plan -> execution" in ok(cli("advance", ACME))

    clock.advance(days=60)
    ok(cli("kpi", "record", ACME, "Revenue", "1500000"))
    assert "execution -> review" in ok(cli("advance", ACME))

    clock.advance(days=3)
    ok(cli("kpi", "review", ACME, "--conclusion", "Behind on revenue: adjust"))
    assert "review -> action_plan (adjust)" in ok(cli("advance", ACME, "--note", "Adjusting"))

    clock.advance(days=1)
    assert "action_plan -> execution" in ok(cli("advance", ACME))
    clock.advance(days=80)
    ok(cli("kpi", "record", ACME, "Revenue", "1900000"))
    ok(cli("advance", ACME, "--to", "review"))
    clock.advance(days=2)
    ok(cli("kpi", "review", ACME, "--conclusion", "Target met: new strategy"))
    assert "review -> strategy (replan)" in ok(cli("advance", ACME, "--to", "strategy"))

    assert stage_of(cli) == "strategy"
    assert transitions(cli) == [
        ("advance", "strategy", "research"),
        ("advance", "research", "action_plan"),
        ("advance", "action_plan", "execution"),
        ("advance", "execution", "review"),
        ("adjust", "review", "action_plan"),
        ("advance", "action_plan", "execution"),
        ("advance", "execution", "review"),
        ("replan", "review", "strategy"),
    ]


def test_advance_to_a_named_stage_and_note_in_history(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    ok(cli("advance", ACME, "--to", "Research", "--note", "Agreed with   sales"))
    [transition] = [r for r in as_json(cli("history", ACME, "--json")) if r["kind"] == "transition"]
    assert transition["from"] == "strategy"
    assert transition["to"] == "research"
    assert transition["note"] == "Agreed with sales"
    assert transition["verdicts"][0]["guard"] == "strategy_defined"
    assert transition["verdicts"][0]["ok"] is True
    assert "Agreed with sales" in ok(cli("history", ACME))


def test_advance_to_a_stage_it_cannot_reach_names_where_it_can_go(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    before = snapshot(engine)
    line = failed(cli("advance", ACME, "--to", "execution"))
    assert "Execution" in line
    assert "Research" in line
    line = failed(cli("advance", ACME, "--to", "strategy"))
    assert "already in Strategy" in line
    assert snapshot(engine) == before


def test_dry_run_reports_and_changes_nothing(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    before = snapshot(engine)
    refused = cli("advance", ACME, "--dry-run")
    assert refused.exit_code == 3, refused.output + refused.stderr
    assert "would not advance" in refused.output
    assert "strategy lacks" in refused.output
    assert snapshot(engine) == before

    refused = cli("advance", ACME, "--dry-run", "--json")
    assert refused.exit_code == 3, refused.output + refused.stderr
    report = json.loads(refused.output)
    assert report["allowed"] is False
    assert report["dry_run"] is True
    assert report["from"] == "strategy"
    assert report["to"] == "research"
    assert [v["guard"] for v in report["verdicts"]] == ["strategy_defined"]
    assert snapshot(engine) == before

    set_strategy(cli)
    before = snapshot(engine)
    out = ok(cli("advance", ACME, "--dry-run"))
    assert "would advance" in out
    assert "nothing written" in out
    report = as_json(cli("advance", ACME, "--dry-run", "--json"))
    assert report["allowed"] is True
    assert snapshot(engine) == before
    assert stage_of(cli) == "strategy"


def test_advance_json_reports_the_move(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    report = as_json(cli("advance", ACME, "--json"))
    assert report["account"] == ACME
    assert report["transition"] == "advance"
    assert (report["from"], report["to"]) == ("strategy", "research")
    assert report["allowed"] is True
    assert report["dry_run"] is False


def test_refusal_exits_3_with_one_line_per_unmet_guard(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    ok(cli("advance", ACME))
    before = snapshot(engine)
    refused = cli("advance", ACME)
    assert refused.exit_code == 3, refused.output + refused.stderr
    assert "Traceback" not in refused.stderr
    first, *reasons = refused.stderr.splitlines()
    assert first.startswith(f"Error: {ACME} cannot advance from Research to Action plan")
    assert len(reasons) == 2, refused.stderr
    assert all(line.startswith("  - ") for line in reasons)
    assert "relationship-lead" in reasons[0]
    assert "result-driver" in reasons[0]
    assert "question categor" in reasons[1]
    assert snapshot(engine) == before

    # Partly met: only what is still missing is listed.
    for role in ROLES[:-1]:
        ok(cli("role", "assign", ACME, role, OWNER))
    refused = cli("advance", ACME)
    assert refused.exit_code == 3
    reasons = refused.stderr.splitlines()[1:]
    assert len(reasons) == 2
    assert "result-driver" in reasons[0]
    assert "relationship-lead" not in reasons[0]


def test_why_says_what_each_move_still_needs(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    text = ok(cli("why", ACME))
    assert f"{ACME} is in Strategy" in text
    assert OWNER in text
    assert "[missing]" in text
    assert "strategy set" in text

    report = as_json(cli("why", ACME, "--json"))
    assert report["account"] == ACME
    assert report["stage"] == "strategy"
    assert report["owner"] == OWNER
    [move] = report["moves"]
    assert move["to"] == "research"
    assert move["verdicts"] == [
        {
            "guard": "strategy_defined",
            "ok": False,
            "message": move["verdicts"][0]["message"],
            "warning": False,
            "overridden": False,
        }
    ]
    set_strategy(cli)
    report = as_json(cli("why", ACME, "--json"))
    assert report["moves"][0]["verdicts"][0]["ok"] is True
    assert "[ok]" in ok(cli("why", ACME))


def test_why_in_review_lists_adjust_and_replan(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    ok(cli("advance", ACME))
    do_research(cli)
    ok(cli("advance", ACME))
    make_plan(cli)
    ok(cli("advance", ACME))
    ok(cli("kpi", "record", ACME, "Revenue", "1"))
    ok(cli("advance", ACME))
    report = as_json(cli("why", ACME, "--json"))
    assert [(m["transition"], m["to"], m["default"]) for m in report["moves"]] == [
        ("adjust", "action_plan", True),
        ("replan", "strategy", False),
    ]
    text = ok(cli("why", ACME))
    assert "adjust" in text
    assert "replan" in text
    assert "review" in text.lower()


def test_disqualify_needs_the_owner_or_a_leader(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    before = snapshot(engine)
    refused = cli("disqualify", ACME, "--reason", "Too small", actor=ENGINEER)
    # Not allowed is a permission: its own exit code and one line, not a missing item.
    line = failed(refused, 5)
    assert line.startswith("Error: not allowed: only the owner or a leader may disqualify")
    assert ENGINEER in line
    assert snapshot(engine) == before

    out = ok(cli("disqualify", ACME, "--reason", "No budget for three years", actor=LEADER))
    assert "disqualified" in out
    assert stage_of(cli) == "disqualified"
    [row] = [r for r in as_json(cli("history", ACME, "--json")) if r["kind"] == "transition"]
    assert row["actor"] == LEADER
    assert row["note"] == "No budget for three years"

    before = snapshot(engine)
    line = failed(cli("advance", ACME))
    assert "disqualified" in line
    line = failed(cli("strategy", "set", ACME, "--objective", "o", "--who", "w", "--why", "y"))
    assert "disqualified" in line
    assert snapshot(engine) == before


def test_retire_by_the_owner(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    set_strategy(cli)
    ok(cli("advance", ACME))
    before = snapshot(engine)
    failed(cli("retire", ACME, "--reason", "   "))
    assert snapshot(engine) == before
    out = ok(cli("retire", ACME, "--reason", "Bought by a competitor"))
    assert "retired" in out
    assert stage_of(cli) == "retired"
    assert transitions(cli)[-1] == ("retire", "research", "retired")
    names = [r["name"] for r in as_json(cli("account", "list", "--stage", "retired", "--json"))]
    assert names == [ACME]


def test_history_records_who_acted(cli: Cli) -> None:
    setup_people(cli)
    new_account(cli)
    ok(cli("role", "assign", ACME, "innovator", ENGINEER))
    ok(cli("role", "assign", ACME, "technical-expert", ENGINEER, actor=ENGINEER))
    ok(cli("--as", LEADER.upper(), "role", "assign", ACME, "collaborator", OWNER))
    # --as wins over KAMFLOW_USER
    ok(cli("--as", LEADER, "strategy", "set", ACME, "--objective", "o", "--who", "w", "--why", "y"))
    rows = as_json(cli("history", ACME, "--json"))
    # The owner's login made the database: the owner is its admin, acting for the others.
    assert [(r["kind"], r["actor"], r["acted_by"]) for r in rows] == [
        ("created", OWNER, None),
        ("role", OWNER, None),
        ("role", ENGINEER, OWNER),
        ("role", LEADER, OWNER),
        ("strategy", LEADER, OWNER),
    ]
    assert set(rows[0]) >= {"at", "actor", "kind", "transition", "from", "to", "note", "verdicts"}
    table = ok(cli("history", ACME))
    assert ENGINEER in table
    assert LEADER in table
    assert "created" in table


def test_kamflow_now_sets_the_time(cli: Cli, clock: FixedClock) -> None:
    setup_people(cli)
    new_account(cli)
    [row] = as_json(cli("account", "list", "--json"))
    assert row["days_in_stage"] == 0
    clock.advance(days=5)
    [row] = as_json(cli("account", "list", "--json"))
    assert row["days_in_stage"] == 5
    later = (START + timedelta(days=30)).isoformat()
    [row] = as_json(cli("account", "list", "--json", env={"KAMFLOW_NOW": later}))
    assert row["days_in_stage"] == 30
    set_strategy(cli)
    ok(cli("advance", ACME))
    [row] = as_json(cli("account", "list", "--json"))
    assert row["days_in_stage"] == 0
    assert row["stage_entered_at"] == (START + timedelta(days=5)).isoformat()
    created = as_json(cli("history", ACME, "--json"))[0]
    assert created["at"] == START.isoformat()
    assert "day 0 of 21" in ok(cli("why", ACME))


# --- workflows -----------------------------------------------------------------------------------


def test_workflow_list_and_show(cli: Cli) -> None:
    listing = ok(cli("workflow", "list"))
    assert "kam" in listing
    rows = as_json(cli("workflow", "list", "--json"))
    kam = next(r for r in rows if r["name"] == "kam")
    assert kam["stages"] == ["strategy", "research", "action_plan", "execution", "review"]
    assert Path(kam["path"]).is_file()

    shown = ok(cli("workflow", "show", "kam"))
    for text in ("strategy", "research", "action_plan", "execution", "review", "strategy_defined"):
        assert text in shown
    spec = as_json(cli("workflow", "show", "kam", "--json"))
    assert spec["name"] == "kam"
    limits = {s["name"]: s["limit_days"] for s in spec["stages"]}
    assert limits == {
        "strategy": 14,
        "research": 21,
        "action_plan": 21,
        "execution": 90,
        "review": 14,
    }
    assert {t["name"] for t in spec["transitions"]} >= {
        "advance",
        "adjust",
        "replan",
        "disqualify",
        "retire",
    }
    line = failed(cli("workflow", "show", "nowhere"))
    assert "nowhere" in line


# --- errors --------------------------------------------------------------------------------------

ERRORS: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    # (case, arguments, extra environment, fragments the Error: line must contain)
    ("unknown account: show", ["account", "show", "Nowhere Inc"], {}, ["Nowhere Inc"]),
    ("unknown account: advance", ["advance", "Nowhere Inc"], {}, ["Nowhere Inc"]),
    ("unknown account: id", ["history", "999"], {}, ["999"]),
    (
        "unknown account: strategy",
        ["strategy", "set", "Nowhere Inc", "--objective", "o", "--who", "w", "--why", "y"],
        {},
        ["Nowhere Inc"],
    ),
    (
        "unknown person: account owner",
        ["account", "add", "Globex", "--owner", "nobody@example.com"],
        {},
        ["nobody@example.com"],
    ),
    (
        "unknown person: action owner",
        ["action", "add", ACME, "Call", "--owner", "nobody@example.com", "--due", "2027-02-01"],
        {},
        ["nobody@example.com"],
    ),
    (
        "unknown person: role",
        ["role", "assign", ACME, "innovator", "nobody@example.com"],
        {},
        ["nobody@example.com"],
    ),
    ("unknown role", ["role", "assign", ACME, "boss", OWNER], {}, ["boss"]),
    (
        "role not held",
        ["role", "unassign", ACME, "innovator", OWNER],
        {},
        ["innovator", OWNER],
    ),
    ("unknown stage: list", ["account", "list", "--stage", "nowhere"], {}, ["nowhere"]),
    ("unknown stage: advance", ["advance", ACME, "--to", "nowhere"], {}, ["nowhere"]),
    ("unknown question: answer", ["plan", "answer", ACME, "no.such", "Yes"], {}, ["no.such"]),
    (
        "unknown question: na",
        ["plan", "na", ACME, "no.such", "--reason", "r"],
        {},
        ["no.such"],
    ),
    (
        "bad date",
        ["action", "add", ACME, "Call", "--owner", OWNER, "--due", "2027-13-45"],
        {},
        ["2027-13-45"],
    ),
    ("bad number: target", ["kpi", "add", ACME, "NPS", "--target", "abc"], {}, ["abc"]),
    ("bad number: value", ["kpi", "record", ACME, "Revenue", "x"], {}, ["'x'"]),
    ("unknown KPI", ["kpi", "record", ACME, "Churn", "3"], {}, ["Churn"]),
    ("unknown action", ["action", "done", ACME, "42"], {}, ["42"]),
    (
        "duplicate account name",
        ["account", "add", "ACME corp", "--owner", OWNER],
        {},
        ["already", "ACME corp"],
    ),
    ("duplicate person", ["person", "add", OWNER], {}, [OWNER]),
    ("bad email", ["person", "add", "not-an-email"], {}, ["not-an-email"]),
    (
        "KAMFLOW_NOW not ISO 8601",
        ["person", "list"],
        {"KAMFLOW_NOW": "next tuesday"},
        ["KAMFLOW_NOW", "next tuesday"],
    ),
    (
        "KAMFLOW_NOW not ISO 8601 on a write",
        ["person", "add", "new@example.com"],
        {"KAMFLOW_NOW": "2027-02-30"},
        ["KAMFLOW_NOW", "2027-02-30"],
    ),
    # The last --db wins: the test database stays untouched.
    ("bad --db URL: scheme", ["--db", "nowhere://x", "person", "list"], {}, ["nowhere://x"]),
    ("bad --db URL: not a URL", ["--db", "not a url", "person", "list"], {}, ["not a url"]),
    (
        "bad --db URL: no such directory",
        ["--db", "sqlite:////no/such/dir/kamflow.db", "person", "list"],
        {},
        ["/no/such/dir/kamflow.db"],
    ),
]


def test_errors_exit_1_with_one_line_and_change_nothing(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    before = snapshot(engine)
    problems = []
    for case, arguments, environment, fragments in ERRORS:
        result = cli(*arguments, env=environment)
        lines = result.stderr.splitlines()
        if result.exit_code != 1:
            problems.append(f"{case}: exit {result.exit_code}, stderr {result.stderr!r}")
        elif "Traceback" in result.output + result.stderr:
            problems.append(f"{case}: a traceback reached the user")
        elif len(lines) != 1 or not lines[0].startswith("Error: "):
            problems.append(f"{case}: not one Error: line: {result.stderr!r}")
        elif missing := [f for f in fragments if f not in lines[0]]:
            problems.append(f"{case}: {lines[0]!r} does not name {missing}")
        if snapshot(engine) != before:
            problems.append(f"{case}: the database changed")
            before = snapshot(engine)
    assert not problems, "\n".join(problems)


SUGGESTIONS: list[tuple[str, list[str], str]] = [
    # (case, arguments, the end of the Error: line)
    (
        "account: show",
        ["account", "show", "Globex Industry"],
        "no account 'Globex Industry'; did you mean Globex Industries?",
    ),
    (
        "account: advance",
        ["advance", "globex industies"],
        "no account 'globex industies'; did you mean Globex Industries?",
    ),
    (
        "account: a word too many in front",
        ["strategy", "set", "The Initech", "--objective", "o", "--who", "w", "--why", "y"],
        "no account 'The Initech'; did you mean Initech?",
    ),
    (
        "account: nothing close",
        ["account", "show", "Zzyzx"],
        "no account 'Zzyzx' (see: kamflow account list)",
    ),
    (
        "question",
        ["plan", "answer", ACME, "need.top-business-need", "Speed"],
        "no question 'need.top-business-need' in the plan; did you mean needs.top-business-needs?",
    ),
    (
        "KPI",
        ["kpi", "record", ACME, "Revnue", "3"],
        "Acme Corp has no KPI 'Revnue'; did you mean Revenue?",
    ),
    (
        "KPI: nothing close",
        ["kpi", "record", ACME, "Churn", "3"],
        "Acme Corp has no KPI 'Churn' (see: kamflow account show)",
    ),
    (
        "role",
        ["role", "assign", ACME, "relationship-led", OWNER],
        "no role 'relationship-led'; did you mean relationship-lead? (roles: "
        + ", ".join(ROLES)
        + ")",
    ),
]


def test_a_name_not_found_suggests_the_closest_existing_ones(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    for name in (ACME, "Globex Industries", "Globex", "Initech"):
        new_account(cli, name)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    ok(cli("kpi", "add", ACME, "Net promoter score", "--target", "40"))
    before = snapshot(engine)
    for case, arguments, message in SUGGESTIONS:
        line = failed(cli(*arguments))
        assert line == f"Error: {message}", case
    assert snapshot(engine) == before


def test_bad_db_url_never_creates_a_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "kamflow.db"
    failed(cli("--db", f"sqlite:///{target}", "init"))
    assert not target.parent.exists()


USAGE_ERRORS: list[tuple[str, list[str]]] = [
    ("account add without --owner", ["account", "add", "Globex"]),
    ("strategy set without an account", ["strategy", "set", "--objective", "o"]),
    ("action add without --due", ["action", "add", ACME, "Call", "--owner", OWNER]),
    ("kpi add without --target", ["kpi", "add", ACME, "NPS"]),
    ("kpi review without --conclusion", ["kpi", "review", ACME]),
    ("plan na without --reason", ["plan", "na", ACME, "insights.culture"]),
    ("disqualify without --reason", ["disqualify", ACME]),
    ("retire without --reason", ["retire", ACME]),
    ("role assign without email", ["role", "assign", ACME, "innovator"]),
    ("account add bad --kind", ["account", "add", "Globex", "--owner", OWNER, "--kind", "big"]),
    ("unknown command", ["promote", ACME]),
]


def test_usage_errors_exit_2_and_change_nothing(cli: Cli, engine: Engine) -> None:
    setup_people(cli)
    new_account(cli)
    before = snapshot(engine)
    problems = []
    for case, arguments in USAGE_ERRORS:
        result = cli(*arguments)
        if result.exit_code != 2:
            problems.append(f"{case}: exit {result.exit_code}, stderr {result.stderr!r}")
        elif "Error:" not in result.stderr or "Traceback" in result.stderr:
            problems.append(f"{case}: no usage error: {result.stderr!r}")
    assert not problems, "\n".join(problems)
    assert snapshot(engine) == before


# --- the installed console script ----------------------------------------------------------------


def _environment(**extra: str) -> dict[str, str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAMFLOW_DB", "KAMFLOW_NOW", "KAMFLOW_USER", "KAMFLOW_DEBUG")
    }
    environment.update(extra)
    return environment


def _kamflow(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAMFLOW), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_installed_console_script(tmp_path: Path) -> None:
    assert KAMFLOW.exists(), f"{KAMFLOW} is not installed"
    url = f"sqlite:///{tmp_path / 'sub.db'}"
    env = _environment(KAMFLOW_NOW=START.isoformat(), KAMFLOW_USER=OWNER)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _kamflow("--db", url, *args, env=env, cwd=tmp_path)

    init = run("init")
    assert init.returncode == 0, init.stderr
    assert "Created database" in init.stdout
    assert run("person", "add", OWNER).returncode == 0
    added = run("account", "add", ACME, "--owner", OWNER)
    assert added.returncode == 0, added.stderr
    refused = run("advance", ACME)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    first, *reasons = refused.stderr.splitlines()
    assert first.startswith("Error: ")
    assert len(reasons) == 1
    assert reasons[0].startswith("  - the strategy lacks")
    shown = run("history", ACME, "--json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [(r["kind"], r["actor"], r["at"]) for r in rows] == [
        ("created", OWNER, START.isoformat())
    ]
    assert not (tmp_path / "kamflow.db").exists()


def test_installed_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    env = _environment(KAMFLOW_NOW="yesterday-ish")
    bad = _kamflow(
        "--db", f"sqlite:///{tmp_path / 'x.db'}", "person", "list", env=env, cwd=tmp_path
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: KAMFLOW_NOW")
    assert "Traceback" not in bad.stderr


def test_demo_runs_on_a_database_of_its_own(tmp_path: Path) -> None:
    demo = subprocess.run(
        [str(KAMFLOW), "demo"],
        env=_environment(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout
    output = demo.stdout
    assert "Traceback" not in output
    assert (tmp_path / "kamflow-demo.db").is_file()
    assert not (tmp_path / "kamflow.db").exists()
    # A refusal with its reason.
    assert "cannot advance from Strategy to Research" in output
    assert "  - the strategy lacks" in output
    assert "(exit code 3)" in output
    # Through all five stages, and round again both ways.
    moves = [
        "strategy -> research (advance)",
        "research -> action_plan (advance)",
        "action_plan -> execution (advance)",
        "execution -> review (advance)",
        "review -> action_plan (adjust)",
        "review -> strategy (replan)",
    ]
    positions = [output.find(move) for move in moves]
    assert all(p >= 0 for p in positions), dict(zip(moves, positions, strict=True))
    assert positions == sorted(positions)
    # The daemon's work: time moves on, a reminder and an escalation land in ./outbox/.
    outbox = tmp_path / "outbox"
    kinds = sorted(path.name.split("-")[0] for path in outbox.glob("*.eml"))
    assert "reminder" in kinds and "escalation" in kinds, kinds
    assert "./outbox/" in output
    # Selection: a candidate scored and promoted, a promotion refused at the cap, the report.
    assert "Meridian Health Group: candidate -> strategy (promote)" in output
    assert "cannot promote from Candidate to Strategy" in output
    assert "already owns 5 key accounts, the cap is 5" in output
    report = tmp_path / "kamflow-report.html"
    assert report.is_file()
    assert "Meridian Health Group" in report.read_text(encoding="utf-8")
    assert "kamflow-report.html" in output
    # The account plan as a document and the deadlines as a calendar, beside the outbox.
    plan = (tmp_path / "kamflow-demo-plan.html").read_text(encoding="utf-8")
    assert "Account plan: Acme Corp" in plan and "Stage history" in plan
    calendar = (tmp_path / "kamflow-demo.ics").read_text(encoding="utf-8")
    assert calendar.startswith("BEGIN:VCALENDAR") and "UID:review-" in calendar


# --- output into a pipe that closes early --------------------------------------------------------

#: Commands that print more than a small pipe holds: tables, JSON, streamed listings, CSV.
LONG_OUTPUTS = [
    ["account", "list"],
    ["account", "list", "--json"],
    ["plan", "questions", bulk.name(1)],
    ["plan", "questions", bulk.name(1), "--json"],
    ["account", "export"],
    ["portfolio"],
    ["kpis"],
    ["plan", "export", bulk.name(1), "--format", "md"],
    ["calendar"],
]


def _first_line_then_close(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run the installed kamflow into a pipe, read its first line, close the pipe (as `| head -1`
    does) and return the exit code and stderr."""
    reading, writing = os.pipe()
    # The smallest pipe Linux allows: every command here prints more than it holds, so kamflow
    # is still writing when the pipe closes, every time.
    fcntl.fcntl(writing, fcntl.F_SETPIPE_SZ, 4096)
    with subprocess.Popen(
        [str(KAMFLOW), *args], stdout=writing, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True
    ) as process:
        os.close(writing)
        seen = b""
        while b"\n" not in seen:
            piece = os.read(reading, 200)
            assert piece, f"{args}: no line before the end of the output"
            seen += piece
        os.close(reading)
        _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_output_cut_short_by_a_closed_pipe_ends_quietly(database_url: str, tmp_path: Path) -> None:
    def place(i: int) -> tuple[str, int]:
        return ("strategy", i % 30)

    def kpi(i: int) -> tuple[float, float | None]:
        return (100.0, float(i % 150))

    bulk.build(database_url, 300, bulk.Layout(place, kpi=kpi), now=START)
    env = _environment(KAMFLOW_NOW=START.isoformat(), KAMFLOW_USER=OWNER)
    problems, codes = [], set()
    for command in LONG_OUTPUTS:
        for _ in range(2):
            code, stderr = _first_line_then_close(["--db", database_url, *command], env, tmp_path)
            codes.add(code)
            # A write the pipe stops ends kamflow with 141 (as a shell reports SIGPIPE); a write
            # it cuts part-way through may return without an error, and kamflow ends with 0.
            if code not in (0, 141) or stderr:
                problems.append(f"{command}: exit {code}, stderr {stderr!r}")
    assert not problems, "\n".join(problems)
    assert 141 in codes


def test_a_run_started_without_stdout_ends_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(KAMFLOW), "--version"],
        preexec_fn=lambda: os.close(1),  # as `kamflow --version >&-` starts it
        stderr=subprocess.PIPE,
        env=_environment(),
        cwd=tmp_path,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


# --- KAMFLOW_NOW and other settings --------------------------------------------------------------


def test_a_time_outside_1970_to_9000_is_refused_at_start_up_and_changes_nothing(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    setup_people(cli)
    new_account(cli)
    mail = {"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(tmp_path / "outbox")}
    before = snapshot(engine)
    for moment in ("9999-12-31T23:59:59", "0001-01-01", "1969-12-31T23:59:59", "9001-01-01"):
        for command in (["tick"], ["account", "list"], ["forecast"]):
            line = failed(cli(*command, env={"KAMFLOW_NOW": moment, **mail}))
            assert line.startswith(f"Error: KAMFLOW_NOW={moment!r} "), line
            assert "1970" in line and "9000" in line, line
        assert snapshot(engine) == before, moment
    assert not (tmp_path / "outbox").exists()
    # The bounds themselves are times kamflow can work at.
    for moment in ("1970-01-01T00:00:00", "9000-12-31T23:59:59"):
        ok(cli("tick", env={"KAMFLOW_NOW": moment, **mail}))
        ok(cli("forecast", "--days", "366", env={"KAMFLOW_NOW": moment}))


def test_a_long_bad_setting_is_echoed_cut_short(cli: Cli, tmp_path: Path) -> None:
    garbage = "x" * 5000
    for name in ("KAMFLOW_NOW", "KAMFLOW_TIMEZONE"):
        line = failed(cli("account", "list", env={name: garbage}))
        assert line.startswith(f"Error: {name}='xxxx"), line
        assert "...' (5000 characters)" not in line
        assert "'... (5000 characters)" in line, line
        assert len(line) < 200, line
    failed_tick = failed(cli("tick", env={"KAMFLOW_MAIL_TRANSPORT": garbage}))
    assert len(failed_tick) < 200, failed_tick
    for command in (["account", "list"], ["init"]):
        line = failed(cli("--db", f"sqlite:///{tmp_path / ('q' * 300)}.db", *command))
        assert "characters)" in line and len(line) < 200, line


# --- counts in messages --------------------------------------------------------------------------


def test_counts_of_one_are_singular_and_a_count_of_nothing_is_left_out(
    cli: Cli, clock: FixedClock, tmp_path: Path
) -> None:
    globex = "Globex"
    setup_people(cli)
    new_account(cli)
    assert "Wrote 1 account to" in ok(cli("account", "export", str(tmp_path / "one.csv")))
    # Another account, planned: the plan's guard counts its actions and KPIs.
    new_account(cli, globex)
    set_strategy(cli, globex)
    ok(cli("advance", globex))
    do_research(cli, globex)
    ok(cli("advance", globex))
    make_plan(cli, globex)
    due = (START + timedelta(days=20)).date().isoformat()
    ok(cli("action", "add", globex, "Send the offer", "--owner", ENGINEER, "--due", due))
    shown = ok(cli("why", globex))
    assert "has 2 actions" in shown and "action(s)" not in shown
    assert "1 KPI with targets" in shown
    ok(cli("snooze", globex, "--days", "1", "--reason", "Their CFO is away"))
    [note] = [r["note"] for r in as_json(cli("history", globex, "--json")) if r["kind"] == "snooze"]
    assert note.startswith("reminders paused for 1 day, until ")

    csv_file = tmp_path / "more.csv"
    csv_file.write_text(f"name,owner,kind\nInitech,{ENGINEER},existing\n", encoding="utf-8")
    imported = ok(cli("account", "import", str(csv_file)))
    assert imported == f"Imported 1 account from {csv_file} (1 key account).\n"

    # The first tick after three weeks: an escalation that no reminder came before, and an
    # action one day late.
    clock.set(START + timedelta(days=21))
    outbox = tmp_path / "outbox"
    mail = {"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(outbox)}
    ticked = ok(cli("tick", env=mail))
    assert f"queued: Action 1 day overdue for {globex}: Send the offer" in ticked
    assert f"queued: Escalation: {ACME} has been in Strategy for 21 days" in ticked
    escalations = [p.read_text(encoding="utf-8") for p in outbox.glob("escalation-*.eml")]
    [text] = [body for body in escalations if f"Subject: Escalation: {ACME} " in body]
    assert "for 21 days, 7 days past the stage's limit of 14 days." in text
    assert "already had" not in text
    late = [p.read_text(encoding="utf-8") for p in outbox.glob("action-*.eml")]
    assert any("is 1 day overdue" in body for body in late), late
    assert not any("1 days" in body for body in late), late

    status = ok(cli("status"))
    assert "stuck\n" in status and "snoozed" not in status
