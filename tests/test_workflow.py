"""Workflow definitions and the question bank: the shipped ones, validation errors, the CLI."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from kamflow import defaults
from kamflow.cli import app
from kamflow.definitions import specfile
from kamflow.definitions.guardspecs import SPECS
from kamflow.definitions.questions import load_bank
from kamflow.definitions.workflow import load_workflow
from kamflow.errors import InvalidWorkflow
from tests.conftest import snapshot

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "workflows"
KAM = SHIPPED / "kam.yaml"
BANK = SHIPPED / "questions.yaml"

#: The eight question categories of KAM.md, in order.
CATEGORY_TITLES = [
    "What does our team look like?",
    "Who is on the account's team?",
    "What trends affect this account?",
    "What needs do they have?",
    "What other insights do we know about this account?",
    "Who are our competitors?",
    "What value can we deliver?",
    "What else do we need to know?",
]

#: A small valid workflow; the cases below break it one line at a time (line numbers matter).
SMALL = """\
name: small
title: "Small"
stages:
  - name: strategy
    limit_days: 14
  - name: research
    limit_days: 21
exits:
  - name: retired
transitions:
  - name: advance
    from: strategy
    to: research
    guards:
      - strategy_defined
  - name: back
    from: research
    to: strategy
  - name: retire
    from: "*"
    to: retired
    allowed: [owner, leader]
"""


def edit(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (so a typo in a case fails loudly)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def write(folder: Path, text: str, name: str = "small", bank: bool = True) -> Path:
    """Write a workflow file into ``folder``, with a copy of the shipped question bank beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    if bank:
        shutil.copy(BANK, folder / "questions.yaml")
    return path


def problems(path: Path) -> InvalidWorkflow:
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow(path)
    return caught.value


def invoke(*args: str) -> Result:
    """Run the CLI in-process for commands that need no database."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# --- the shipped definitions ---------------------------------------------------------------------


def test_shipped_workflow_has_the_five_kam_stages_with_their_limits() -> None:
    kam = load_workflow(KAM)
    assert kam.name == "kam"
    assert kam.initial == "strategy"
    assert kam.stage_names == ["strategy", "research", "action_plan", "execution", "review"]
    assert kam.exit_names == ["disqualified", "retired"]
    assert {stage.name: stage.limit_days for stage in kam.spec.stages} == {
        "strategy": 14,
        "research": 21,
        "action_plan": 21,
        "execution": 90,
        "review": 14,
    }
    assert kam.title_of("action_plan") == "Action plan"


def test_shipped_workflow_names_the_issue_guards_on_each_transition() -> None:
    kam = load_workflow(KAM)
    guards = {
        (t.name, tuple(t.source), t.dest): {g.name: g.params for g in t.guards}
        for t in kam.spec.transitions
    }
    assert guards == {
        ("promote", ("candidate",), "strategy"): {"score_at_least": {}, "within_cap": {}},
        ("advance", ("strategy",), "research"): {"strategy_defined": {}},
        ("advance", ("research",), "action_plan"): {
            "roles_covered": {"roles": list(defaults.ROLES)},
            "research_done": {},
        },
        ("advance", ("action_plan",), "execution"): {
            "plan_complete": {},
            "kpis_defined": {"at_least": 1},
        },
        ("advance", ("execution",), "review"): {"kpis_recorded": {}},
        ("adjust", ("review",), "action_plan"): {"kpis_reviewed": {"since": "execution"}},
        ("replan", ("review",), "strategy"): {"kpis_reviewed": {"since": "execution"}},
        ("disqualify", ("*",), "disqualified"): {},
        ("retire", ("*",), "retired"): {},
        ("reinstate", ("disqualified", "retired"), "strategy"): {"within_cap": {}},
    }
    closing = {t.name: t for t in kam.spec.transitions if kam.is_exit(t.dest)}
    assert set(closing) == {"disqualify", "retire"}
    for transition in closing.values():
        assert transition.reason_required
        assert transition.allowed == ["owner", "leader"]
    # From Review a bare advance adjusts the plan; replanning is the second choice.
    assert [t.name for t in kam.moves_from("review")] == ["adjust", "replan"]


def test_shipped_workflow_machine_has_no_guard_bypassing_shortcuts() -> None:
    kam = load_workflow(KAM)
    assert not [event for event in kam.machine.events if event.startswith("to_")]
    advance = kam.moves_from("strategy")[0]
    assert (advance.name, advance.dest) == ("advance", "research")
    [known] = kam.machine.events["advance"].transitions["strategy"]
    assert known.dest == "research"


def test_shipped_question_bank_has_57_questions_in_the_eight_categories() -> None:
    bank = load_bank(BANK)
    assert [category.title for category in bank.categories] == CATEGORY_TITLES
    assert len(bank.questions) == 57
    ids = [question.id for question in bank.questions]
    assert len(set(ids)) == len(ids)
    category_ids = {category.id for category in bank.categories}
    assert {question.category for question in bank.questions} == category_ids
    assert 0 < len(bank.required) < len(bank.questions)
    assert all(question.text.strip() for question in bank.questions)
    assert load_workflow(KAM).questions == bank


# --- validation errors ---------------------------------------------------------------------------


def test_the_small_workflow_used_below_is_valid(tmp_path: Path) -> None:
    small = load_workflow(write(tmp_path, SMALL))
    assert small.stage_names == ["strategy", "research"]


def test_a_move_out_of_an_exit_back_to_a_stage_is_valid(tmp_path: Path) -> None:
    """An exit is left only by a transition that names it (reinstate, say), never by "*"."""
    text = SMALL + "  - name: reinstate\n    from: retired\n    to: strategy\n"
    small = load_workflow(write(tmp_path, text))
    assert [t.name for t in small.transitions_from("retired")] == ["reinstate"]
    assert [t.name for t in small.transitions_from("research")] == ["back", "retire"]
    assert small.machine.events["reinstate"].transitions["retired"][0].dest == "strategy"


CASES: dict[str, tuple[str, str]] = {
    # case: (broken text, "line N, place: words the problem's message must contain")
    "unknown guard": (
        edit(SMALL, "      - strategy_defined", "      - strategy_dreamed"),
        "line 15, transitions[0].guards[0]: unknown guard 'strategy_dreamed'",
    ),
    "unknown stage in to": (
        edit(SMALL, "    to: retired", "    to: retried"),
        "line 21, transitions[2].to: unknown stage 'retried'",
    ),
    "unknown stage in from": (
        edit(SMALL, "    from: research", "    from: reserch"),
        "line 17, transitions[1].from[0]: unknown stage 'reserch'",
    ),
    "a move out of an exit that does not lead to a stage": (
        edit(SMALL, '    from: "*"', "    from: [research, retired]"),
        "line 20, transitions[2].from[1]: 'retired' is an exit: a move out of it must lead "
        "back to a stage",
    ),
    "unreachable stage": (
        edit(
            SMALL,
            "    limit_days: 21\n",
            "    limit_days: 21\n  - name: lonely\n    limit_days: 5\n",
        ),
        "line 8, stages[2].name: no transition reaches 'lonely'",
    ),
    "missing limit_days": (
        edit(SMALL, "    limit_days: 21\n", ""),
        "line 6, stages[1]: needs limit_days (calendar days) or limit_business_days",
    ),
    "unknown field": (
        edit(SMALL, "    limit_days: 14\n", "    limit_days: 14\n    colour: blue\n"),
        "line 6, stages[0].colour: unknown field",
    ),
    "bad YAML syntax": (
        edit(SMALL, 'title: "Small"', "title: Small: the sequel"),
        "line 2: bad YAML: mapping values are not allowed here",
    ),
    "guard with an unknown role": (
        edit(
            SMALL,
            "      - strategy_defined",
            "      - roles_covered:\n          roles: [relationship-lead, wizard]",
        ),
        "line 16, transitions[0].guards[0].roles_covered.roles: unknown role 'wizard'",
    ),
    "guard with an unknown parameter": (
        edit(SMALL, "      - strategy_defined", "      - kpis_defined:\n          at_most: 3"),
        "line 16, transitions[0].guards[0].kpis_defined.at_most: unknown field",
    ),
    "guard naming an unknown stage": (
        edit(
            SMALL, "      - strategy_defined", "      - kpis_reviewed:\n          since: yesterday"
        ),
        "line 16, transitions[0].guards[0].kpis_reviewed.since: unknown stage 'yesterday'",
    ),
    "bad allowed entry": (
        edit(SMALL, "allowed: [owner, leader]", "allowed: [owner, boss]"),
        "line 22, transitions[2].allowed[1]: 'boss' is not owner, team, leader, admin or role:ROLE",
    ),
    "allowed with an unknown role": (
        edit(SMALL, "allowed: [owner, leader]", 'allowed: [owner, "role:wizard"]'),
        "line 22, transitions[2].allowed[1]: 'role:wizard' is not owner, team, leader, admin "
        "or role:ROLE",
    ),
    "two moves to the same target": (
        edit(
            SMALL,
            "    to: strategy\n",
            "    to: strategy\n  - name: forward\n    from: strategy\n    to: research\n",
        ),
        "line 19, transitions[2].name: "
        "transitions[0] already leaves 'strategy' with the same target",
    ),
    "two moves of the same name": (
        edit(
            SMALL,
            "  - name: back\n    from: research\n",
            "  - name: advance\n    from: [research, strategy]\n",
        ),
        "line 16, transitions[1].name: transitions[0] already leaves 'strategy' with the same name",
    ),
    "name not matching the file": (
        edit(SMALL, "name: small", "name: large"),
        "line 1, name: must match the file name 'small'",
    ),
    "missing title": (
        edit(SMALL, 'title: "Small"\n', ""),
        "line 1, title: missing field",
    ),
    "no stages": (
        SMALL.split("stages:")[0] + "stages: []\ntransitions:\n  - {name: a, from: x, to: x}\n",
        "line 3, stages: list should have at least 1 item",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_workflow_names_file_line_place_and_problem(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    path = write(tmp_path / case.replace(" ", "-"), text)
    error = problems(path)
    assert error.source == str(path)
    assert str(path) in str(error)
    assert len(error.problems) == 1, error.problems
    where, what = expected.split(": ", 1)
    assert error.problems[0].startswith(f"{where}: "), error.problems
    assert what in error.problems[0]
    assert error.lines() == [str(error), f"  {error.problems[0]}"]


def test_a_duplicated_transition_is_one_problem_not_two(tmp_path: Path) -> None:
    twice = "  - name: back\n    from: research\n    to: strategy\n"
    error = problems(write(tmp_path, edit(SMALL, twice, twice + twice)))
    assert len(error.problems) == 1, error.problems
    assert error.problems[0].startswith("line 19, transitions[2].name: transitions[1] already")


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = edit(SMALL, "      - strategy_defined", "      - strategy_dreamed")
    text = edit(text, "    to: retired", "    to: retried")
    text = edit(text, "allowed: [owner, leader]", "allowed: [owner, boss]")
    text = edit(text, "name: small", "name: large")
    error = problems(write(tmp_path, text))
    assert "(4 problems)" in str(error)
    assert [problem.split(":")[0] for problem in error.problems] == [
        "line 1, name",
        "line 15, transitions[0].guards[0]",
        "line 21, transitions[2].to",
        "line 22, transitions[2].allowed[1]",
    ]


def test_every_schema_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = edit(SMALL, "    limit_days: 21\n", "")
    text = edit(text, "    limit_days: 14\n", "    limit_days: 14\n    colour: blue\n")
    text = edit(text, "    to: research\n", "    too: research\n")
    error = problems(write(tmp_path, text))
    assert len(error.problems) == 4
    assert set(error.problems) == {
        "line 6, stages[0].colour: unknown field",
        "line 7, stages[1]: needs limit_days (calendar days) or limit_business_days",
        "line 11, transitions[0].to: missing field",
        "line 13, transitions[0].too: unknown field",
    }


def test_a_missing_question_bank_is_named(tmp_path: Path) -> None:
    text = edit(SMALL, 'title: "Small"\n', 'title: "Small"\nquestions: plan.yaml\n')
    path = write(tmp_path, text, bank=False)
    error = problems(path)
    assert error.source == str(path)
    assert error.problems == [
        f"line 3, questions: no question bank at {tmp_path / 'plan.yaml'}",
    ]


def test_a_missing_default_question_bank_is_named(tmp_path: Path) -> None:
    error = problems(write(tmp_path, SMALL, bank=False))
    assert len(error.problems) == 1
    assert "questions" in error.problems[0]
    assert str(tmp_path / "questions.yaml") in error.problems[0]


def _broken_bank(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    bank = folder / "questions.yaml"
    bank.write_text(text, encoding="utf-8")
    return bank


def _line_of(text: str, fragment: str, nth: int = 1) -> int:
    """The line of the ``nth`` occurrence of ``fragment`` in ``text``."""
    at = -1
    for _ in range(nth):
        at = text.index(fragment, at + 1)
    return text[:at].count("\n") + 1


def test_a_bad_question_bank_names_its_file_lines_and_problems(tmp_path: Path) -> None:
    shipped = BANK.read_text(encoding="utf-8")
    industry = "    text: \"Which changes in the account's industry"
    text = edit(shipped, f"category: trends\n{industry}", f"category: weather\n{industry}")
    text = edit(text, "id: our-team.capacity\n", "id: our-team.exec-sponsor\n")
    bank = _broken_bank(tmp_path / "bank", text)
    questions = yaml.safe_load(text)["questions"]
    weather = next(i for i, q in enumerate(questions) if q["category"] == "weather")
    duplicate = [i for i, q in enumerate(questions) if q["id"] == "our-team.exec-sponsor"][1]
    expected = [
        f"line {_line_of(text, 'id: our-team.exec-sponsor', nth=2)}, questions[{duplicate}].id: "
        "id used 2 times",
        f"line {_line_of(text, 'category: weather')}, questions[{weather}].category: "
        "unknown category 'weather'",
    ]

    with pytest.raises(InvalidWorkflow) as caught:
        load_bank(bank)
    assert caught.value.source == str(bank)
    assert len(caught.value.problems) == 2, caught.value.problems
    for problem, start in zip(caught.value.problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)

    # A workflow using that bank is not loaded either, and the error names the bank.
    workflow = write(tmp_path / "bank", SMALL, bank=False)
    error = problems(workflow)
    assert error.source == str(bank)


def test_a_question_bank_with_unknown_fields_and_no_categories(tmp_path: Path) -> None:
    bank = _broken_bank(
        tmp_path / "bank",
        "categories: []\nquestions:\n  - id: x\n    category: y\n    text: 'a'\n    bogus: 1\n",
    )
    with pytest.raises(InvalidWorkflow) as caught:
        load_bank(bank)
    assert caught.value.problems[0].startswith("line 1, categories: list should have at least 1")
    assert caught.value.problems[1] == "line 6, questions[0].bogus: unknown field"


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_validate_accepts_the_shipped_workflow(tmp_path: Path) -> None:
    unused = tmp_path / "unused.db"
    result = invoke("--db", f"sqlite:///{unused}", "workflow", "validate", str(KAM))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        f"{KAM} is valid: workflow kam, 5 stages, 10 transitions, 57 questions."
    )
    assert result.stderr == ""
    assert not unused.exists(), "validating a file must not create a database"


def test_cli_validate_names_the_file_and_every_problem(tmp_path: Path) -> None:
    text = edit(SMALL, "      - strategy_defined", "      - nope")
    text = edit(text, "    to: retired", "    to: retried")
    path = write(tmp_path, text)
    result = invoke("workflow", "validate", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: {path} is not valid (2 problems):"
    assert lines[1].startswith("  line 15, transitions[0].guards[0]: unknown guard 'nope'")
    assert lines[2].startswith("  line 21, transitions[2].to: unknown stage 'retried'")
    assert len(lines) == 3


def test_cli_validate_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = invoke("workflow", "validate", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert str(tmp_path / "absent.yaml") in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_bad_yaml_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, edit(SMALL, 'title: "Small"', "title: Small: the sequel"))
    result = invoke("workflow", "validate", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {path} is not valid (1 problem):",
        "  line 2: bad YAML: mapping values are not allowed here",
    ]


def test_cli_workflow_list_shows_the_shipped_workflow() -> None:
    result = invoke("workflow", "list")
    assert result.exit_code == 0, result.stderr
    assert "kam" in result.stdout
    assert "strategy -> research -> action_plan -> execution -> review" in result.stdout
    listed = json.loads(invoke("workflow", "list", "--json").stdout)
    kam = next(row for row in listed if row["name"] == "kam")
    assert kam["stages"] == ["strategy", "research", "action_plan", "execution", "review"]
    assert Path(kam["path"]) == KAM


def test_cli_workflow_show_lists_stages_limits_and_guards() -> None:
    result = invoke("workflow", "show", "kam")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    for stage, limit in [
        ("strategy", 14),
        ("research", 21),
        ("action_plan", 21),
        ("execution", 90),
        ("review", 14),
    ]:
        assert any(line.split()[:2] == [stage, str(limit)] for line in text.splitlines()), stage
    for guard in [
        "strategy_defined",
        "roles_covered",
        "research_done",
        "plan_complete",
        "kpis_defined",
        "kpis_recorded",
        "kpis_reviewed",
    ]:
        assert guard in text
    assert "Exits: disqualified, retired" in text
    assert "Questions: 57 in 8 categories" in text


def test_cli_workflow_show_json() -> None:
    result = invoke("workflow", "show", "kam", "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert [s["name"] for s in shown["stages"]] == [
        "strategy",
        "research",
        "action_plan",
        "execution",
        "review",
    ]
    assert [s["limit_days"] for s in shown["stages"]] == [14, 21, 21, 90, 14]
    assert [e["name"] for e in shown["exits"]] == ["disqualified", "retired"]
    assert [p["name"] for p in shown["intake"]] == ["candidate"]
    promote, first = shown["transitions"][:2]
    assert (promote["name"], promote["from"], promote["to"]) == (
        "promote",
        ["candidate"],
        "strategy",
    )
    assert (first["from"], first["to"]) == (["strategy"], "research")
    assert first["guards"] == [{"name": "strategy_defined", "params": {}}]


def test_cli_workflow_show_unknown_name() -> None:
    result = invoke("workflow", "show", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no workflow 'nope'")
    assert "kam" in result.stderr


# --- KAMFLOW_WORKFLOWS ---------------------------------------------------------------------------

LIGHT = """\
name: light
title: "A lighter process"
stages:
  - name: plan
    limit_days: 7
  - name: act
    limit_days: 30
exits:
  - name: retired
transitions:
  - name: advance
    from: plan
    to: act
  - name: advance
    from: act
    to: plan
  - name: retire
    from: "*"
    to: retired
"""


def test_kamflow_workflows_folders_come_before_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(first, edit(LIGHT, 'title: "A lighter process"', 'title: "First light"'), "light")
    write(second, LIGHT, "light")
    own_kam = write(
        second, edit(KAM.read_text(encoding="utf-8"), "Key account management", "Ours"), "kam"
    )
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", os.pathsep.join([str(first), str(second)]))

    listed = {row["name"]: row for row in json.loads(invoke("workflow", "list", "--json").stdout)}
    assert listed["light"]["title"] == "First light"
    assert Path(listed["light"]["path"]) == first / "light.yaml"
    assert Path(listed["kam"]["path"]) == own_kam
    shown = invoke("workflow", "show", "kam")
    assert shown.stdout.startswith("kam: Ours")


def test_account_add_uses_a_custom_workflow(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "custom", LIGHT, "light")
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(tmp_path / "custom"))
    assert cli("person", "add", "owner@example.com").exit_code == 0

    added = cli(
        "account", "add", "Acme Corp", "--owner", "owner@example.com", "--workflow", "light"
    )
    assert added.exit_code == 0, added.stderr
    assert "workflow light" in added.stdout
    shown = json.loads(cli("account", "show", "Acme Corp", "--json").stdout)
    assert (shown["workflow"], shown["stage"], shown["limit_days"]) == ("light", "plan", 7)

    moved = cli("advance", "Acme Corp")
    assert moved.exit_code == 0, moved.stderr
    assert json.loads(cli("account", "show", "Acme Corp", "--json").stdout)["stage"] == "act"


def test_account_add_with_a_broken_custom_workflow_adds_nothing(
    cli: Callable[..., Result], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = write(tmp_path / "custom", edit(LIGHT, "    to: act", "    to: acting"), "light")
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(tmp_path / "custom"))
    assert cli("person", "add", "owner@example.com").exit_code == 0
    before = snapshot(engine)

    result = cli(
        "account", "add", "Acme Corp", "--owner", "owner@example.com", "--workflow", "light"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: workflow 'light' cannot be used: {broken} is not valid: "
        "line 13, transitions[0].to: unknown stage 'acting'"
    )
    assert len(result.stderr.splitlines()) == 1
    assert snapshot(engine) == before


def test_a_broken_workflow_file_holds_up_only_what_needs_it(
    cli: Callable[..., Result], engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "custom"
    light = write(folder, LIGHT, "light")
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    owner = "owner@example.com"
    assert cli("person", "add", owner).exit_code == 0
    assert cli("account", "add", "Acme Corp", "--owner", owner).exit_code == 0
    assert cli("account", "add", "Globex", "--owner", owner, "--workflow", "light").exit_code == 0
    # Both files are edited afterwards: light (Globex follows it) and draft (nobody does).
    light.write_text(edit(LIGHT, "    to: act", "    to: acting"), encoding="utf-8")
    draft = write(folder, "name: draft\nstages:\n  - id: x\n", "draft")
    problem = (
        f"{light} is not valid: line 13, transitions[0].to: unknown stage 'acting' "
        "(known: plan, act, retired)"
    )

    # What does not need light goes on, and says once what it left out.
    mail = {"KAMFLOW_OUTBOX_DIR": str(tmp_path / "outbox")}
    for args in (["account", "list"], ["portfolio"], ["status"], ["tick"], ["forecast"]):
        result = cli(*args, env=mail)
        assert result.exit_code == 0, (args, result.stderr)
        assert result.stderr.splitlines() == [
            f"Warning: accounts following workflow 'light' skipped: {problem}"
        ], args
    listed = cli("account", "list").stdout
    assert "Acme Corp" in listed and "Globex" not in listed
    shown = cli("account", "show", "Acme Corp")
    assert (shown.exit_code, shown.stderr) == (0, "")
    workflows = cli("workflow", "list")
    assert workflows.exit_code == 0
    assert "kam" in workflows.stdout and "light" not in workflows.stdout
    assert workflows.stderr.splitlines() == [
        f"Warning: workflow 'draft' skipped: {draft} is not valid: line 1, title: missing field "
        f"(and 4 more problems: kamflow workflow validate {draft})",
        f"Warning: workflow 'light' skipped: {problem}",
    ]

    # What needs light is refused in one line naming the file, and changes nothing.
    before = snapshot(engine)
    for args in (
        ["account", "show", "Globex"],
        ["advance", "Globex"],
        ["why", "Globex"],
        ["plan", "answer", "Globex", "needs.top-business-needs", "Speed"],
    ):
        result = cli(*args)
        assert result.exit_code == 1, args
        assert result.stderr.splitlines() == [f"Error: workflow 'light' cannot be used: {problem}"]
    # The cap counts the key accounts of every workflow: none is added while one is broken.
    added = cli("account", "add", "Initech", "--owner", owner)
    assert added.exit_code == 1
    assert added.stderr.splitlines() == [
        "Error: the key-account cap counts the key accounts of every workflow, and workflow "
        f"'light' cannot be used: {problem}"
    ]
    assert snapshot(engine) == before

    # validate still names every problem of a file.
    checked = cli("workflow", "validate", str(draft))
    assert checked.exit_code == 1
    assert checked.stderr.splitlines()[0] == f"Error: {draft} is not valid (5 problems):"
    assert len(checked.stderr.splitlines()) == 6


def test_account_add_with_an_unknown_workflow(cli: Callable[..., Result], engine: Engine) -> None:
    assert cli("person", "add", "owner@example.com").exit_code == 0
    before = snapshot(engine)
    result = cli(
        "account", "add", "Acme Corp", "--owner", "owner@example.com", "--workflow", "nope"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no workflow 'nope' (available: ")
    assert snapshot(engine) == before


def test_an_edited_workflow_is_read_again(tmp_path: Path) -> None:
    """A running daemon sees an edited limit: a definition is re-read when its files change."""
    shutil.copy(BANK, tmp_path / "questions.yaml")
    copy = tmp_path / "kam.yaml"
    text = KAM.read_text(encoding="utf-8")
    copy.write_text(text, encoding="utf-8")
    assert load_workflow(copy).stage("strategy").limit_days == 14  # type: ignore[union-attr]

    copy.write_text(text.replace("limit_days: 14", "limit_days: 10", 1), encoding="utf-8")
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000))

    assert load_workflow(copy).stage("strategy").limit_days == 10  # type: ignore[union-attr]


# --- every problem in one pass -------------------------------------------------------------------


def test_cli_validate_reports_a_bad_limit_and_an_unknown_guard_together(tmp_path: Path) -> None:
    """A field of the wrong value (a negative limit) does not hide the problems found beyond the
    fields (an unknown guard, an unknown stage): one run of validate names them all."""
    text = edit(SMALL, "    limit_days: 14\n", "    limit_days: -3\n")
    text = edit(text, "      - strategy_defined", "      - strategy_dreamed")
    text = edit(text, "    to: retired", "    to: retried")
    path = write(tmp_path, text)

    result = invoke("workflow", "validate", str(path))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {path} is not valid (3 problems):",
        "  line 5, stages[0].limit_days: input should be greater than 0",
        "  line 15, transitions[0].guards[0]: unknown guard 'strategy_dreamed' (known: "
        + ", ".join(sorted(SPECS))
        + ")",
        "  line 21, transitions[2].to: unknown stage 'retried' "
        "(known: strategy, research, retired)",
    ]


def test_a_broken_structure_still_reports_everything_that_can_be_checked(tmp_path: Path) -> None:
    text = edit(SMALL, "name: small", "name: large")
    text = edit(text, "    limit_days: 21\n", "    limit_days: soon\n")
    text = edit(text, "    to: research\n", "    to: research\n    colour: red\n")
    text = edit(text, "      - strategy_defined", "      - kpis_defined:\n          at_most: 3")
    text = edit(text, "allowed: [owner, leader]", "allowed: [owner, boss]")
    text = edit(text, "  - name: back\n", "  - name: Back\n")

    error = problems(write(tmp_path, text))

    assert [problem.split(":")[0] for problem in error.problems] == [
        "line 1, name",
        "line 7, stages[1].limit_days",
        "line 14, transitions[0].colour",
        "line 17, transitions[0].guards[0].kpis_defined.at_most",
        "line 18, transitions[1].name",
        "line 24, transitions[2].allowed[1]",
    ], error.problems


def test_places_that_cannot_be_read_still_leave_the_guards_checked(tmp_path: Path) -> None:
    """With no list of stages, names of stages cannot be judged; the guards still can."""
    text = edit(
        SMALL,
        "  - name: strategy\n    limit_days: 14\n  - name: research\n    limit_days: 21\n",
        "  strategy, research\n",
    )
    text = edit(text, "      - strategy_defined", "      - strategy_dreamed")

    error = problems(write(tmp_path, text))

    assert [problem.split(":")[0] for problem in error.problems] == [
        "line 4, stages",
        "line 12, transitions[0].guards[0]",
    ], error.problems


#: YAML nested 5000 deep: brackets never closed, and closed ones.
DEEP = {"unclosed": "[" * 5000, "closed": "name: small\ntitle: " + "[" * 5000 + "]" * 5000}


@pytest.mark.parametrize("nesting", list(DEEP))
@pytest.mark.parametrize("parser", ["libyaml", "pure"])
def test_cli_validate_deeply_nested_yaml_is_one_clear_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str, nesting: str
) -> None:
    if parser == "pure":
        monkeypatch.setattr(specfile, "LOADER", yaml.SafeLoader)
    elif specfile.LOADER is yaml.SafeLoader:
        pytest.skip("PyYAML was built without libyaml")
    path = write(tmp_path, DEEP[nesting])

    result = invoke("workflow", "validate", str(path))

    assert result.exit_code == 1
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    first, reason = result.stderr.splitlines()
    assert first == f"Error: {path} is not valid (1 problem):"
    assert reason.startswith("  ") and "bad YAML" in reason, reason
