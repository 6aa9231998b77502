"""The portfolio reports: the board, role coverage, KPIs, the workflow diagram and the HTML page.

Every report is read through the CLI (text and --json) on SQLite and on PostgreSQL. The HTML page
is also opened in a real headless Chromium, which must render every account of a small portfolio
and the charts, and, for a portfolio larger than a page, the most urgent accounts with the
commands that list the rest.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from kamflow.cli import app
from kamflow.clock import FixedClock
from kamflow.engine import add_account
from tests import account_steps as steps
from tests import bulk
from tests.browser import browse
from tests.conftest import (
    START,
    Cli,
    Runner,
    as_json,
    cli_on,
    dispose,
    fresh_schema,
    ok,
    snapshot,
)

OWNER = "owner@example.com"
LEADER = "lead@example.com"
ENGINEER = "engineer@example.com"
#: A name with every HTML special character: it must be shown as text, never parsed as markup.
AMPERSAND = "A&B <Co>"
#: A name that would run a script if the page pasted it in unescaped.
SCRIPTED = '<script>alert("kamflow")</script> Ltd'
ROLES = (
    "relationship-lead",
    "technical-expert",
    "collaborator",
    "project-manager",
    "innovator",
    "result-driver",
)
#: Every place of kam.yaml with its title, in process order.
KAM_PLACES = {
    "candidate": "Candidate",
    "strategy": "Strategy",
    "research": "Research",
    "action_plan": "Action plan",
    "execution": "Execution",
    "review": "Review",
    "disqualified": "Disqualified",
    "retired": "Retired",
}
CYCLE = ("strategy", "research", "action_plan", "execution", "review")
#: Every move of kam.yaml (and kam-lite.yaml), as (source, destination, transition).
KAM_EDGES = {
    ("candidate", "strategy", "promote"),
    ("strategy", "research", "advance"),
    ("research", "action_plan", "advance"),
    ("action_plan", "execution", "advance"),
    ("execution", "review", "advance"),
    ("review", "action_plan", "adjust"),
    ("review", "strategy", "replan"),
    *((place, "disqualified", "disqualify") for place in ("candidate", *CYCLE)),
    *((place, "retired", "retire") for place in ("candidate", *CYCLE)),
    ("disqualified", "strategy", "reinstate"),
    ("retired", "strategy", "reinstate"),
}
SCORES = {
    "--revenue": "5",
    "--growth": "4",
    "--renewal": "3",
    "--win-now": "2",
    "--effort": "1",
    "--relationship": "4",
    "--fit": "5",
    "--logo": "3",
}
#: 20 + 15 + 7.5 + 2.5 + 5 + 7.5 + 15 + 2.5 with the default weights.
SCORE_TOTAL = 75.0
#: What a self-contained page must never contain: each would fetch or run something.
EXTERNAL = ("src=", 'href="http', "<script", "<link", "@import", "url(http")


# --- helpers -------------------------------------------------------------------------------------


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a `simple` table, cells split on runs of two or more blanks."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def score(cli: Cli, name: str) -> None:
    ok(cli("account", "score", name, *(part for item in SCORES.items() for part in item)))


def add_people(cli: Cli) -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", ENGINEER))
    ok(cli("person", "add", LEADER, "--leader"))


def by_name(rows: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in rows}


def build_portfolio(cli: Cli, run: Runner, clock: FixedClock) -> None:
    """Accounts in several stages and states, ending 22 days after the last stuck one started.

    - Acme Corp: walked to Execution (8 days), then 22 days there: on track, roles all covered,
      one KPI off target.
    - A&B <Co>: in Strategy for 22 days: stuck (limit 14, escalated from day 21).
    - Globex: in Strategy for 17 days: behind.
    - the scripted name: in Strategy for 2 days: on track.
    - Hopeful Inc: a candidate scored 75.
    """
    add_people(cli)
    run(add_account, steps.ACCOUNT, owner=OWNER)
    steps.reach(run, clock, "execution")
    ok(cli("kpi", "record", steps.ACCOUNT, steps.KPI, "9.5"))
    ok(cli("account", "add", AMPERSAND, "--owner", OWNER))
    ok(cli("role", "assign", AMPERSAND, "collaborator", ENGINEER))
    ok(cli("role", "assign", AMPERSAND, "relationship-lead", OWNER))
    clock.advance(days=5)
    ok(cli("account", "add", "Globex", "--owner", ENGINEER))
    ok(cli("account", "add", "Hopeful Inc", "--owner", OWNER, "--candidate"))
    score(cli, "Hopeful Inc")
    clock.advance(days=15)
    ok(cli("account", "add", SCRIPTED, "--owner", ENGINEER))
    clock.advance(days=2)


# --- the board -----------------------------------------------------------------------------------


def test_portfolio_lists_accounts_by_stage_with_owner_days_status_and_score(
    cli: Cli, run: Runner, clock: FixedClock
) -> None:
    build_portfolio(cli, run, clock)

    rows = as_json(cli("portfolio", "--json"))

    expected = [
        # name, stage, owner, days in stage, status, score
        ("Hopeful Inc", "candidate", OWNER, 17, "candidate", SCORE_TOTAL),
        (AMPERSAND, "strategy", OWNER, 22, "stuck", None),
        ("Globex", "strategy", ENGINEER, 17, "behind", None),
        (SCRIPTED, "strategy", ENGINEER, 2, "on_track", None),
        (steps.ACCOUNT, "execution", OWNER, 22, "on_track", None),
    ]
    got = [
        (r["name"], r["stage"], r["owner"], r["days_in_stage"], r["status"], r["score"])
        for r in rows
    ]
    # Stage order is the process order; inside a stage any order will do.
    assert sorted(got) == sorted(expected)
    stage_order = [r["stage"] for r in rows]
    assert stage_order == sorted(stage_order, key=list(KAM_PLACES).index)
    limits = {r["name"]: r["limit_days"] for r in rows}
    assert limits == {
        "Hopeful Inc": None,
        AMPERSAND: 14,
        "Globex": 14,
        SCRIPTED: 14,
        steps.ACCOUNT: 90,
    }

    text = ok(cli("portfolio"))
    cells = {row[1]: row for row in table_rows(text)}
    assert set(cells) == {name for name, *_ in expected}
    assert cells["Hopeful Inc"][0] == "Candidate"
    assert cells["Hopeful Inc"][4:6] == ["candidate", "75"]
    assert cells[AMPERSAND][:5] == ["Strategy", AMPERSAND, OWNER, "22/14", "stuck"]
    assert cells["Globex"][:5] == ["Strategy", "Globex", ENGINEER, "17/14", "behind"]
    assert cells[steps.ACCOUNT][:5] == ["Execution", steps.ACCOUNT, OWNER, "22/90", "on_track"]
    assert table_rows(text)[0][0] == "Candidate"


def test_portfolio_orders_by_stage_across_workflows(cli: Cli) -> None:
    """A board is read stage by stage: a lite account in Strategy comes before Research."""
    add_people(cli)
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    ok(
        cli(
            "strategy",
            "set",
            "Acme Corp",
            "--objective",
            "Grow the managed services",
            "--who",
            "The CIO",
            "--why",
            "Their migration needs a partner",
        )
    )
    ok(cli("advance", "Acme Corp"))
    ok(cli("account", "add", "Blue Harbor Foods", "--owner", OWNER, "--workflow", "kam-lite"))
    ok(cli("account", "add", "Larkspur Energy", "--owner", OWNER, "--candidate"))

    rows = as_json(cli("portfolio", "--json"))

    assert [(r["name"], r["stage"]) for r in rows] == [
        ("Larkspur Energy", "candidate"),
        ("Blue Harbor Foods", "strategy"),
        ("Acme Corp", "research"),
    ]
    assert [row[1] for row in table_rows(ok(cli("portfolio")))] == [r["name"] for r in rows]


def test_portfolio_status_follows_the_clock(cli: Cli, clock: FixedClock) -> None:
    """Strategy's limit is 14 days: behind from day 14, stuck from day 21 (limit + 7)."""
    add_people(cli)
    ok(cli("account", "add", "Globex", "--owner", OWNER))

    def status() -> tuple[int, str]:
        (row,) = as_json(cli("portfolio", "--json"))
        return row["days_in_stage"], row["status"]

    seen = []
    for day in (0, 13, 14, 20, 21, 40):
        clock.set(START + timedelta(days=day))
        seen.append(status())
    assert seen == [
        (0, "on_track"),
        (13, "on_track"),
        (14, "behind"),
        (20, "behind"),
        (21, "stuck"),
        (40, "stuck"),
    ]


def test_portfolio_leaves_out_retired_and_disqualified_accounts(cli: Cli) -> None:
    add_people(cli)
    for name in ("Acme Corp", "Globex", "Initech"):
        ok(cli("account", "add", name, "--owner", OWNER))
    ok(cli("retire", "Globex", "--reason", "Sold to a competitor"))
    ok(cli("disqualify", "Initech", "--reason", "Not a fit after all"))

    assert [r["name"] for r in as_json(cli("portfolio", "--json"))] == ["Acme Corp"]
    assert [row[1] for row in table_rows(ok(cli("portfolio")))] == ["Acme Corp"]


def test_portfolio_of_an_empty_database_says_so(cli: Cli) -> None:
    assert as_json(cli("portfolio", "--json")) == []
    assert "(none)" in ok(cli("portfolio"))


# --- coverage ------------------------------------------------------------------------------------


def test_coverage_lists_who_holds_each_role_and_the_gaps(cli: Cli) -> None:
    add_people(cli)
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    ok(cli("account", "add", "Globex", "--owner", OWNER))
    ok(cli("account", "add", "Hopeful Inc", "--owner", OWNER, "--candidate"))
    for role in ROLES:
        ok(cli("role", "assign", "Acme Corp", role, OWNER))
    ok(cli("role", "assign", "Acme Corp", "innovator", ENGINEER))
    ok(cli("role", "assign", "Globex", "technical-expert", ENGINEER))

    rows = by_name(as_json(cli("coverage", "--json")), key="account")

    # Candidates are not key accounts yet: they have no team to cover.
    assert set(rows) == {"Acme Corp", "Globex"}
    assert rows["Acme Corp"]["gaps"] == []
    assert sorted(rows["Acme Corp"]["roles"]["innovator"]) == [ENGINEER, OWNER]
    assert rows["Acme Corp"]["roles"]["result-driver"] == [OWNER]
    assert set(rows["Globex"]["roles"]) == set(ROLES)
    assert rows["Globex"]["roles"]["technical-expert"] == [ENGINEER]
    assert sorted(rows["Globex"]["gaps"]) == sorted(set(ROLES) - {"technical-expert"})
    assert all(rows["Globex"]["roles"][role] == [] for role in rows["Globex"]["gaps"])

    text = ok(cli("coverage"))
    header = next(line for line in text.splitlines() if "ACCOUNT" in line)
    assert all(role.upper() in header for role in ROLES)
    cells = {row[0]: row for row in table_rows(text)}
    assert "GAP" not in " ".join(cells["Acme Corp"])
    globex = cells["Globex"]
    assert len(globex) == 1 + len(ROLES)
    marked = [role for role, cell in zip(ROLES, globex[1:], strict=True) if "GAP" in cell]
    assert sorted(marked) == sorted(set(ROLES) - {"technical-expert"})
    assert globex[1 + ROLES.index("technical-expert")] == ENGINEER
    assert "5 gaps" in text


# --- KPIs ----------------------------------------------------------------------------------------


def test_kpis_mark_off_target_by_each_kpis_direction(cli: Cli, clock: FixedClock) -> None:
    add_people(cli)
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    kpis = {
        # name: (target, lower is better, older value, latest value)
        "Revenue growth": ("12", False, "15", "9.5"),  # higher is better, below: off
        "Retention": ("90", False, "80", "95"),  # higher is better, above: on
        "Churn": ("5", True, "3", "7"),  # lower is better, above: off
        "Order lead time": ("3", True, "4", "2.5"),  # lower is better, below: on
        "Exact": ("10", True, "11", "10"),  # exactly on the target is on target
    }
    for name, (target, lower, _, _) in kpis.items():
        flags = ["--lower-is-better"] if lower else []
        ok(cli("kpi", "add", "Acme Corp", name, "--target", target, "--unit", "%", *flags))
    ok(cli("kpi", "add", "Acme Corp", "NPS", "--target", "40"))
    for name, (*_, older, _latest) in kpis.items():
        ok(cli("kpi", "record", "Acme Corp", name, older, "--period", "2026-Q4"))
    clock.advance(days=1)
    for name, (*_, latest) in kpis.items():
        ok(cli("kpi", "record", "Acme Corp", name, latest, "--period", "2027-Q1"))

    rows = by_name(as_json(cli("kpis", "--json")))

    assert set(rows) == {*kpis, "NPS"}
    assert {name: row["latest"] for name, row in rows.items()} == {
        "Revenue growth": 9.5,
        "Retention": 95,
        "Churn": 7,
        "Order lead time": 2.5,
        "Exact": 10,
        "NPS": None,
    }
    assert {name: row["off_target"] for name, row in rows.items()} == {
        "Revenue growth": True,
        "Retention": False,
        "Churn": True,
        "Order lead time": False,
        "Exact": False,
        "NPS": False,  # no value yet: not off target, just unknown
    }
    assert rows["Churn"]["lower_is_better"] is True
    assert rows["Retention"]["lower_is_better"] is False
    assert rows["Churn"]["target"] == 5
    assert rows["Churn"]["period"] == "2027-Q1"
    assert all(row["account"] == "Acme Corp" for row in rows.values())

    text = ok(cli("kpis"))
    lines = {name: next(line for line in text.splitlines() if name in line) for name in rows}
    for name in ("Revenue growth", "Churn"):
        assert "OFF TARGET" in lines[name], text
    for name in ("Retention", "Order lead time", "Exact", "NPS"):
        assert "OFF TARGET" not in lines[name], text
    assert "<= 5" in lines["Churn"] and ">= 90" in lines["Retention"]


def test_kpis_leave_out_accounts_that_are_no_longer_key(cli: Cli) -> None:
    add_people(cli)
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    ok(cli("account", "add", "Globex", "--owner", OWNER))
    for name in ("Acme Corp", "Globex"):
        ok(cli("kpi", "add", name, "NPS", "--target", "40"))
    ok(cli("retire", "Globex", "--reason", "Sold"))

    assert [r["account"] for r in as_json(cli("kpis", "--json"))] == ["Acme Corp"]


# --- the workflow diagram ------------------------------------------------------------------------

#: The statements a Mermaid state diagram of a workflow may hold (after the title block).
MERMAID_LINE = re.compile(
    r"""^(stateDiagram-v2
        |direction\ (LR|TB|RL|BT)
        |classDef\ \w+\ [\w#:,.\ -]+
        |state\ "[^"\n]+"\ as\ \w+(\ \{)?
        |\}
        |class\ \w+(,\w+)*\ \w+
        |(\[\*\]|\w+)\ -->\ \w+(:\ \w+)?
    )$""",
    re.VERBOSE,
)
#: The moves of kam.yaml drawn from one place to another, as (source, destination, transition).
KAM_MOVES = {edge for edge in KAM_EDGES if edge[1] not in ("disqualified", "retired")}


def show(*args: str) -> Result:
    """`kamflow workflow show`: it needs no database."""
    return CliRunner().invoke(app, ["workflow", "show", *args], catch_exceptions=False)


class Mermaid:
    """A Mermaid state diagram read statement by statement, as Mermaid's grammar would take it:
    the front matter, every statement of a known form, composite states closed, every state an
    edge or a class names declared, every class applied defined."""

    def __init__(self, text: str) -> None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        assert lines[0] == "---", text
        end = lines.index("---", 1)
        self.front = yaml.safe_load("\n".join(lines[1:end]))
        self.body = lines[end + 1 :]
        assert self.body[0] == "stateDiagram-v2", text
        strange = [line for line in self.body if not MERMAID_LINE.match(line)]
        assert strange == [], text
        self.labels: dict[str, str] = {}
        #: The composite state each state is declared in (None: the top level).
        self.parent: dict[str, str | None] = {}
        self.edges: list[tuple[str, str, str | None, str | None]] = []
        self.classes: dict[str, str] = {}
        self.class_defs: set[str] = set()
        open_boxes: list[str] = []
        for line in self.body[1:]:
            where = open_boxes[-1] if open_boxes else None
            if line == "}":
                assert open_boxes, f"a }} closes nothing: {text}"
                open_boxes.pop()
            elif found := re.match(r'state "([^"]+)" as (\w+)( \{)?$', line):
                label, name, opens = found.groups()
                assert name not in self.labels, f"{name} declared twice: {text}"
                self.labels[name], self.parent[name] = label, where
                if opens:
                    open_boxes.append(name)
            elif found := re.match(r"(\[\*\]|\w+) --> (\w+)(?:: (\w+))?$", line):
                source, dest, name = found.groups()
                self.edges.append((source, dest, name, where))
            elif found := re.match(r"classDef (\w+) ", line):
                self.class_defs.add(found.group(1))
            elif found := re.match(r"class ([\w,]+) (\w+)$", line):
                for name in found.group(1).split(","):
                    self.classes[name] = found.group(2)
        assert open_boxes == [], f"composite states left open: {open_boxes}"
        for source, dest, _, _ in self.edges:
            for end_point in (source, dest):
                assert end_point == "[*]" or end_point in self.labels, (end_point, text)
        assert set(self.classes) <= set(self.labels), text
        assert set(self.classes.values()) <= self.class_defs, text

    def moves(self) -> set[tuple[str, str, str | None]]:
        """Every edge that is not the start marker's, as (source, destination, transition)."""
        return {(s, d, n) for s, d, n, _ in self.edges if s != "[*]"}


@pytest.mark.parametrize("name", ["kam", "kam-lite"])
def test_workflow_show_mermaid_draws_the_process_once_with_its_title_and_start(name: str) -> None:
    text = ok(show(name, "--format", "mermaid"))
    diagram = Mermaid(text)

    # The title is the front matter Mermaid shows above the diagram.
    title = "Key account management" if name == "kam" else "Key account management, lite"
    assert diagram.front == {"title": title}
    # Every place, each under its own title (a stage with its limit in days).
    assert {n: label.split(" (")[0] for n, label in diagram.labels.items() if n in KAM_PLACES} == (
        KAM_PLACES
    )
    limit = "14 days" if name == "kam" else "15 business days"
    assert diagram.labels["strategy"] == f"Strategy ({limit})"
    # The candidate and the five stages are one box; the exits stand outside it.
    (box,) = [n for n in diagram.labels if n not in KAM_PLACES]
    assert {n for n, parent in diagram.parent.items() if parent == box} == {"candidate", *CYCLE}
    assert diagram.parent["disqualified"] is diagram.parent["retired"] is None
    # One start marker, at the stage a new key account starts in (not at the candidate place).
    starts = [(dest, where) for source, dest, _, where in diagram.edges if source == "[*]"]
    assert starts == [("strategy", box)], text
    # Each move between places once; each exit once, from the box around every active place.
    assert diagram.moves() == KAM_MOVES | {
        (box, "disqualified", "disqualify"),
        (box, "retired", "retire"),
    }
    assert len(diagram.edges) == len(KAM_MOVES) + 2 + 1
    for exit_name in ("disqualified", "retired"):
        assert sum(dest == exit_name for _, dest, _, _ in diagram.edges) == 1, exit_name
    # Styled like the report's drawing: intake, stage and exit classes; nothing marked active.
    assert diagram.classes["candidate"] == "intake"
    assert {diagram.classes[stage] for stage in CYCLE} == {"stage"}
    assert diagram.classes["retired"] == diagram.classes["disqualified"] == "exit"
    assert "s_active" not in text


def test_workflow_show_text_lists_stages_limits_and_guarded_transitions() -> None:
    text = ok(show("kam", "--format", "text"))
    assert text == ok(show("kam"))  # text stays the default
    for stage, limit in zip(CYCLE, (14, 21, 21, 90, 14), strict=True):
        assert re.search(rf"^\s*{stage}\s+{limit}\s", text, re.MULTILINE), (stage, text)
    assert re.search(r"promote\s+candidate\s+->\s+strategy\s.*score_at_least.*within_cap", text)
    assert re.search(r"replan\s+review\s+->\s+strategy", text)
    assert "stateDiagram" not in text


def test_workflow_show_json_is_the_definition() -> None:
    data = json.loads(ok(show("kam", "--format", "json")))
    assert data["name"] == "kam"
    assert [s["name"] for s in data["stages"]] == list(CYCLE)
    assert [s["limit_days"] for s in data["stages"]] == [14, 21, 21, 90, 14]
    assert {t["name"] for t in data["transitions"]} == {e[2] for e in KAM_EDGES}
    assert json.loads(ok(show("kam", "--json"))) == data


def test_workflow_show_of_an_unknown_workflow_is_an_error() -> None:
    result = show("no-such-flow", "--format", "mermaid")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "no-such-flow" in result.stderr
    assert "Traceback" not in result.output + result.stderr


# --- the HTML report -----------------------------------------------------------------------------


class Page(HTMLParser):
    """The elements and the visible text of an HTML page, entity references decoded."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def sections(html: str) -> dict[str, str]:
    """The page cut at each <h2>: heading text -> the HTML up to the next heading."""
    found = {}
    for part in re.split(r"<h2\b", html)[1:]:
        heading = re.sub(r"<[^>]+>", "", part.split("</h2>", 1)[0].split(">", 1)[1]).strip()
        found[heading] = part.split("</h2>", 1)[1]
    return found


def section(html: str, word: str) -> str:
    matches = [body for heading, body in sections(html).items() if word.lower() in heading.lower()]
    assert len(matches) == 1, (word, list(sections(html)))
    return matches[0]


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, re.DOTALL)


def escaped(name: str) -> str:
    return name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_report_is_one_self_contained_page_of_the_portfolio(
    cli: Cli, run: Runner, clock: FixedClock, tmp_path: Path
) -> None:
    build_portfolio(cli, run, clock)
    target = tmp_path / "report.html"

    output = ok(cli("report", "--html", str(target)))

    assert str(target) in output
    html = target.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    for reference in EXTERNAL:
        assert reference not in html, reference
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)

    # Names are text, never markup.
    for name in (AMPERSAND, SCRIPTED):
        assert name not in html
        assert escaped(name) in html or escaped(name).replace('"', "&#34;") in html
    page = Page(html)
    assert "script" not in page.tags and "img" not in page.tags
    text = page.all_text()
    for name in (steps.ACCOUNT, AMPERSAND, SCRIPTED, "Globex", "Hopeful Inc"):
        assert name in text, name

    board = Page(section(html, "board")).all_text()
    for name in (steps.ACCOUNT, AMPERSAND, SCRIPTED, "Globex", "Hopeful Inc", OWNER, ENGINEER):
        assert name in board, name

    charts = svgs(html)
    assert len(charts) >= 3, len(charts)
    funnel = next(c for c in charts if "Action plan" in c and "promote" not in c)
    funnel_text = Page(funnel).all_text()
    for title, count in (("Candidate", 1), ("Strategy", 3), ("Research", 0), ("Execution", 1)):
        assert f"{title} {count}" in funnel_text, funnel_text
    days = next(c for c in charts if escaped(AMPERSAND) in c)
    for name in (steps.ACCOUNT, AMPERSAND, "Globex"):
        assert name in Page(days).all_text()
    assert "22" in Page(days).all_text()

    process = section(html, "process")
    diagram = next(c for c in svgs(process) if "promote" in c)
    diagram_text = Page(diagram).all_text()
    for title in KAM_PLACES.values():
        assert title in diagram_text, title
    for transition in ("promote", "advance", "adjust", "replan", "disqualify", "retire"):
        assert transition in diagram_text, transition
    assert "stateDiagram-v2" in process
    assert "candidate --&gt; strategy: promote" in process or (
        "candidate --> strategy: promote" in process
    )

    coverage = section(html, "coverage")
    coverage_text = Page(coverage).all_text()
    for role in ROLES:
        assert role in coverage_text, role
    assert "gap" in coverage_text.lower()
    assert escaped(AMPERSAND) in coverage and ENGINEER in coverage_text
    assert "Hopeful Inc" not in coverage_text  # a candidate has no team yet

    stuck = Page(section(html, "stuck")).all_text()
    assert AMPERSAND in stuck
    for name in (steps.ACCOUNT, "Globex", SCRIPTED, "Hopeful Inc"):
        assert name not in stuck, name

    kpis = Page(section(html, "KPI")).all_text()
    assert steps.KPI in kpis and "off target" in kpis.lower()


def test_report_json_returns_the_data_of_the_page(
    cli: Cli, run: Runner, clock: FixedClock, tmp_path: Path
) -> None:
    build_portfolio(cli, run, clock)
    target = tmp_path / "report.html"

    data = as_json(cli("report", "--html", str(target), "--json"))

    assert target.is_file()
    board = by_name(data["board"])
    assert set(board) == {steps.ACCOUNT, AMPERSAND, SCRIPTED, "Globex", "Hopeful Inc"}
    assert board[AMPERSAND]["status"] == "stuck"
    assert board["Globex"]["status"] == "behind"
    assert [r["name"] for r in data["stuck"]] == [AMPERSAND]
    # The funnel runs in process order, every place of the cycle shown, empty ones too.
    funnel = [(row["stage"], row["count"]) for row in data["funnel"]]
    assert funnel == [
        ("candidate", 1),
        ("strategy", 3),
        ("research", 0),
        ("action_plan", 0),
        ("execution", 1),
        ("review", 0),
    ]
    assert {row["account"] for row in data["coverage"]} == {
        steps.ACCOUNT,
        AMPERSAND,
        SCRIPTED,
        "Globex",
    }
    coverage = by_name(data["coverage"], key="account")
    assert coverage[steps.ACCOUNT]["gaps"] == []
    assert coverage[AMPERSAND]["roles"]["collaborator"] == [ENGINEER]
    (kpi,) = data["kpis"]
    assert (kpi["account"], kpi["name"], kpi["off_target"]) == (steps.ACCOUNT, steps.KPI, True)
    assert data["workflows"] == ["kam"]


def test_report_of_an_empty_portfolio(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "empty.html"
    ok(cli("report", "--html", str(target)))
    html = target.read_text(encoding="utf-8")
    for reference in EXTERNAL:
        assert reference not in html, reference
    assert "No accounts yet" in Page(html).all_text()


def test_report_into_a_missing_folder_is_a_clear_error(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    before = snapshot(engine)
    result = cli("report", "--html", str(tmp_path / "no-such-folder" / "report.html"))
    assert result.exit_code == 1, result.output + result.stderr
    assert result.stderr.startswith("Error: ") and "no-such-folder" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "no-such-folder").exists()
    assert snapshot(engine) == before


def test_report_shows_a_diagram_for_each_workflow_in_use(cli: Cli, tmp_path: Path) -> None:
    add_people(cli)
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    ok(cli("account", "add", "Globex", "--owner", OWNER, "--workflow", "kam-lite"))
    target = tmp_path / "report.html"

    data = as_json(cli("report", "--html", str(target), "--json"))

    assert data["workflows"] == ["kam", "kam-lite"]
    process = section(target.read_text(encoding="utf-8"), "process")
    diagrams = [c for c in svgs(process) if "promote" in c]
    assert len(diagrams) == 2
    assert process.count("stateDiagram-v2") == 2
    assert "15 business days" in diagrams[1]  # kam-lite's Strategy limit
    assert "business" not in diagrams[0]


def test_a_snoozed_account_shows_as_snoozed_not_stuck(
    cli: Cli, run: Runner, clock: FixedClock, tmp_path: Path
) -> None:
    """A snooze pauses the chase: the account past its limit is snoozed on the board, the page and
    `account show`, and it is neither in the stuck list nor counted as stuck."""
    build_portfolio(cli, run, clock)
    ok(cli("snooze", AMPERSAND, "--days", "10", "--reason", "Their board meets next month"))
    target = tmp_path / "report.html"

    data = as_json(cli("report", "--html", str(target), "--json"))

    assert by_name(data["board"])[AMPERSAND]["status"] == "snoozed"
    assert by_name(data["board"])["Globex"]["status"] == "behind"  # not snoozed: unchanged
    assert data["stuck"] == []
    assert (data["summary"]["stuck"], data["summary"]["snoozed"]) == (0, 1)
    strategy = next(row for row in data["summary"]["stages"] if row["stage"] == "strategy")
    assert (strategy["stuck"], strategy["snoozed"], strategy["behind"]) == (0, 1, 1)
    html = target.read_text(encoding="utf-8")
    board = section(html, "board")
    row = next(r for r in re.findall(r"<tr[^>]*>.*?</tr>", board, re.DOTALL) if "A&amp;B" in r)
    assert "snoozed" in Page(row).all_text() and "stuck" not in Page(row).all_text()
    assert "No account is stuck" in Page(section(html, "stuck")).all_text()
    assert "0 stuck, 1 behind, 1 snoozed" in Page(html).all_text()
    days = next(c for c in svgs(html) if "Days in stage" in c)
    bar = next(r for r in re.findall(r"<rect [^>]*>.*?</rect>", days) if "A&amp;B" in r)
    assert 'fill="#6c5b9e"' in bar and "snoozed" in bar  # the snoozed colour, not the stuck one
    # The same status wherever an account's place is listed.
    assert by_name(as_json(cli("portfolio", "--json")))[AMPERSAND]["status"] == "snoozed"
    assert by_name(as_json(cli("account", "list", "--json")))[AMPERSAND]["status"] == "snoozed"
    assert "(snoozed)" in ok(cli("account", "show", AMPERSAND))

    clock.advance(days=10)  # the snooze is over: stuck again
    assert by_name(as_json(cli("portfolio", "--json")))[AMPERSAND]["status"] == "stuck"


def test_the_funnel_draws_no_bar_for_an_empty_stage(
    cli: Cli, run: Runner, clock: FixedClock, tmp_path: Path
) -> None:
    """An empty stage is an empty track with 0, never a thin bar that looks like a marker."""
    build_portfolio(cli, run, clock)
    target = tmp_path / "report.html"
    ok(cli("report", "--html", str(target)))

    funnel = next(c for c in svgs(target.read_text(encoding="utf-8")) if "Accounts per stage" in c)

    rows = re.split(r"(?=<text x=\"-8\")", funnel)[1:]
    drawn = {Page(row).all_text(): row for row in rows}
    assert list(drawn) == [
        "Candidate 1",
        "Strategy 3",
        "Research 0",
        "Action plan 0",
        "Execution 1",
        "Review 0",
    ]
    for title, row in drawn.items():
        assert row.count('class="track"') == 1, title  # every stage has its track
        bars = re.findall(r'<rect class="bar" [^>]*width="([\d.]+)%"', row)
        if title.endswith(" 0"):
            assert bars == [], title
        else:
            (width,) = bars
            assert float(width) > 10, title
    assert re.findall(r'<rect class="bar" [^>]*width="([\d.]+)%"', funnel)[1] == "100.00"


# --- in a real browser ---------------------------------------------------------------------------


def test_report_renders_in_headless_chromium(
    chromium: str, cli: Cli, run: Runner, clock: FixedClock, tmp_path: Path
) -> None:
    build_portfolio(cli, run, clock)
    target = tmp_path / "report.html"
    ok(cli("report", "--html", str(target)))
    url = target.resolve().as_uri()

    dumped = browse(chromium, tmp_path / "profile-dom", "--dump-dom", url)

    dom = dumped.stdout.decode("utf-8")
    page = Page(dom)
    assert page.tags.count("svg") >= 3, page.tags
    assert {"rect", "text", "table"} <= set(page.tags)
    # The scripted name stayed text: the browser built no script or image from it.
    assert "script" not in page.tags and "img" not in page.tags
    text = page.all_text()
    for name in (steps.ACCOUNT, AMPERSAND, SCRIPTED, "Globex", "Hopeful Inc"):
        assert name in text, name
    assert "Action plan" in text and "replan" in text

    shot = tmp_path / "shot.png"
    browse(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        "--hide-scrollbars",
        url,
    )
    assert shot.is_file()
    picture = shot.read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(picture) > 10_000, len(picture)


def probe(chromium: str, page: Path, script: str, profile: Path, window: str) -> Any:
    """Lay ``page`` out in headless Chromium at ``window`` and return what ``script`` (an
    expression) measures, as JSON: a copy of the page gets a script that writes it into the DOM
    (the report itself has no script, and must not)."""
    copy = profile.with_name(profile.name + ".html")
    copy.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>",
            '<script>document.body.setAttribute("data-probe", '
            f"JSON.stringify({script}));</script></body>",
        ),
        encoding="utf-8",
    )
    dumped = browse(chromium, profile, f"--window-size={window}", "--dump-dom", copy.as_uri())
    found = re.search(r'data-probe="([^"]*)"', dumped.stdout.decode("utf-8"))
    assert found is not None, "the probe did not run"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


#: How far the page reaches past the window, in pixels (0 or less: no sideways scrolling).
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def test_report_fits_a_laptop_window_in_headless_chromium(
    chromium: str, cli: Cli, tmp_path: Path
) -> None:
    """Six roles held by people with everyday addresses must not push the page sideways, and no
    address may be broken over two lines: the coverage table scrolls in its own box instead."""
    team = {
        "relationship-lead": "maria.keller@example.com",
        "technical-expert": "tom.berg-larsen@example.com",
        "collaborator": "ana.silva.costa@example.com",
        "project-manager": "james.okafor@example.com",
        "innovator": "priya.nair@example.com",
        "result-driver": "claire.dubois@example.com",
    }
    ok(cli("person", "add", OWNER))
    for email in team.values():
        ok(cli("person", "add", email))
    ok(cli("account", "add", "Northwind Traders International", "--owner", OWNER))
    for role, email in team.items():
        ok(cli("role", "assign", "Northwind Traders International", role, email))
    ok(cli("role", "assign", "Northwind Traders International", "innovator", OWNER))
    target = tmp_path / "report.html"
    ok(cli("report", "--html", str(target)))
    # Each address in the coverage table: its text and on how many lines it was laid out.
    emails = (
        "[...document.querySelectorAll('table.coverage td')].flatMap(td => {"
        "const walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT); const found = [];"
        "for (let n = walk.nextNode(); n; n = walk.nextNode()) {"
        " for (const m of n.textContent.matchAll(/[^\\s,]+@[^\\s,]+/g)) {"
        "  const range = document.createRange();"
        "  range.setStart(n, m.index); range.setEnd(n, m.index + m[0].length);"
        "  const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));"
        "  found.push([m[0], tops.size]); } }"
        "return found; })"
    )

    for window in ("1200,1600", "800,1600"):
        found = probe(
            chromium,
            target,
            f"{{overflow: {OVERFLOW}, emails: {emails}}}",
            tmp_path / f"profile-{window.split(',')[0]}",
            window,
        )

        assert found["overflow"] <= 0, f"{window}: {found['overflow']} px wider than the window"
        shown = sorted(text for text, _ in found["emails"])
        assert shown == sorted([*team.values(), OWNER]), found["emails"]
        split = [text for text, lines in found["emails"] if lines != 1]
        assert split == [], f"{window}: addresses broken over lines: {split}"


def test_the_charts_take_the_width_of_the_page_in_headless_chromium(
    chromium: str, cli: Cli, run: Runner, clock: FixedClock, tmp_path: Path
) -> None:
    """The funnel and the days chart span the page's width, labels to numbers, in a wide window
    and in a narrow one, with their text at its normal size."""
    build_portfolio(cli, run, clock)
    target = tmp_path / "report.html"
    ok(cli("report", "--html", str(target)))
    measure = (
        "[...document.querySelectorAll('svg.chart')].map(svg => {"
        "const box = svg.parentElement.getBoundingClientRect();"
        "const texts = [...svg.querySelectorAll('text')].map(t => t.getBoundingClientRect());"
        "const marks = [...svg.querySelectorAll('rect, line')].map(r => r.getBoundingClientRect());"
        "return {kind: svg.getAttribute('class'), box: box.width,"
        " left: Math.min(...texts.map(t => t.left)) - box.left,"
        " right: box.right - Math.max(...texts.map(t => t.right)),"
        " reach: Math.max(...marks.map(m => m.right)) - box.left,"
        " font: parseFloat(getComputedStyle(svg.querySelector('text')).fontSize),"
        " scale: svg.getScreenCTM().a}})"
    )

    page = "document.querySelector('h2').getBoundingClientRect().width"

    for window in ("1280,1600", "600,1600"):
        charts = probe(
            chromium,
            target,
            f"{{overflow: {OVERFLOW}, page: {page}, charts: {measure}}}",
            tmp_path / f"profile-{window.split(',')[0]}",
            window,
        )

        assert charts["overflow"] <= 0, window
        assert charts["page"] > (1000 if window.startswith("1280") else 500), charts
        assert [c["kind"] for c in charts["charts"]] == ["chart funnel", "chart days"]
        for chart in charts["charts"]:
            # The figure spans the page; the chart's text starts at its left edge and the
            # numbers end near its right one; the bars (and limits) reach the numbers.
            assert abs(chart["box"] - charts["page"]) <= 1, (window, chart)
            assert -1 <= chart["left"] <= 40, (window, chart)
            assert -1 <= chart["right"] <= 60, (window, chart)
            assert chart["reach"] >= chart["box"] - 60, (window, chart)
            assert (chart["font"], chart["scale"]) == (12, 1), (window, chart)


def test_a_report_larger_than_a_page_renders_in_headless_chromium(
    chromium: str, database_url: str, tmp_path: Path
) -> None:
    """The bounded page of 400 accounts: its lists, their "and N more" lines, its charts, and no
    sideways scrolling in a laptop window."""
    large_report(database_url, 400, tmp_path)
    probe = tmp_path / "probe.html"
    probe.write_text(
        (tmp_path / "report-400.html")
        .read_text(encoding="utf-8")
        .replace(
            "</body>",
            '<script>document.body.setAttribute("data-overflow", '
            "document.documentElement.scrollWidth - window.innerWidth);</script></body>",
        ),
        encoding="utf-8",
    )

    dumped = browse(
        chromium,
        tmp_path / "profile",
        "--window-size=1200,1600",
        "--dump-dom",
        probe.resolve().as_uri(),
    )

    dom = dumped.stdout.decode("utf-8")
    page = Page(dom)
    assert page.tags.count("svg") >= 3, page.tags
    text = page.all_text()
    assert "400 accounts, 100 stuck, 100 behind" in text
    assert "... and 50 more: kamflow portfolio --json lists them all." in text
    assert "kamflow coverage --json" in text and "kamflow kpis --json" in text
    assert most_days(400, 14, 0)[0] in text
    found = re.search(r'data-overflow="(-?\d+)"', dom)
    assert found is not None, "the probe did not run"
    assert int(found.group(1)) <= 0, f"the page is {found.group(1)} px wider than the window"


def test_the_diagrams_draw_moves_from_every_stage_to_a_stage(tmp_path: Path) -> None:
    """A `from: "*"` move into the cycle (here: restart) is drawn, not only the exits."""
    from kamflow.definitions.workflow import load_workflow
    from kamflow.reports.diagram import mermaid, svg

    shipped = Path(__file__).resolve().parent.parent / "workflows"
    shutil.copy(shipped / "questions.yaml", tmp_path / "questions.yaml")
    (tmp_path / "loop.yaml").write_text(
        "name: loop\ntitle: Loop\nstages:\n"
        "  - {name: first, limit_days: 5}\n  - {name: second, limit_days: 5}\n"
        "transitions:\n"
        "  - {name: advance, from: first, to: second}\n"
        '  - {name: restart, from: "*", to: first}\n',
        encoding="utf-8",
    )
    definition = load_workflow(tmp_path / "loop.yaml")

    drawn = svg(definition)
    assert ">restart</text>" in drawn
    diagram = Mermaid(mermaid(definition))
    # A move back into the cycle is drawn from each place, and nothing needs a box.
    assert diagram.moves() == {
        ("first", "second", "advance"),
        ("first", "first", "restart"),
        ("second", "first", "restart"),
    }
    assert set(diagram.parent.values()) == {None}
    assert [dest for source, dest, _, _ in diagram.edges if source == "[*]"] == ["first"]


def test_the_mermaid_diagram_keeps_a_title_with_quotes_and_colons(tmp_path: Path) -> None:
    """The title is YAML front matter and labels are quoted: neither may break the diagram."""
    from kamflow.definitions.workflow import load_workflow
    from kamflow.reports.diagram import mermaid

    shipped = Path(__file__).resolve().parent.parent / "workflows"
    shutil.copy(shipped / "questions.yaml", tmp_path / "questions.yaml")
    (tmp_path / "odd.yaml").write_text(
        "name: odd\ntitle: 'Accounts: the \"big\" ones'\n"
        "stages:\n  - {name: active, title: 'The \"first\" stage', limit_days: 5}\n"
        "exits:\n  - {name: gone}\n"
        "transitions:\n"
        '  - {name: drop, from: "*", to: gone}\n',
        encoding="utf-8",
    )

    diagram = Mermaid(mermaid(load_workflow(tmp_path / "odd.yaml")))

    assert diagram.front == {"title": 'Accounts: the "big" ones'}
    assert diagram.labels["active"] == "The #quot;first#quot; stage (5 days)"
    # The box around the stages takes another name than the stage called "active".
    (box,) = [name for name in diagram.labels if name not in ("active", "gone")]
    assert diagram.parent["active"] == box
    assert diagram.moves() == {(box, "gone", "drop")}


# --- the HTML report of a portfolio larger than a page -------------------------------------------

LIST_LIMIT = 50


def urgent_layout(i: int) -> tuple[str, int]:
    """A quarter stuck in Strategy (21 days and more), a quarter behind, the rest on track."""
    if i % 4 == 0:
        return "strategy", 21 + i * 37 % 300
    if i % 4 == 1:
        return "strategy", 14 + i % 7
    return ("strategy" if i % 4 == 2 else "research"), i % 14


def team_layout(i: int) -> tuple[str, ...]:
    """A full team on a third of the accounts, nobody on another third, some roles on the rest."""
    return ROLES if i % 3 == 0 else () if i % 3 == 1 else ROLES[: i % 5]


def kpi_layout(i: int) -> tuple[float, float | None]:
    return 40.0, float(i % 50)


LARGE = bulk.Layout(urgent_layout, roles=team_layout, kpi=kpi_layout)


def large_report(database_url: str, count: int, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """The report --json data and the page of a bulk-written portfolio of ``count`` accounts."""
    bulk.build(database_url, count, LARGE, now=START)
    cli = cli_on(database_url, FixedClock(START))
    target = tmp_path / f"report-{count}.html"
    data = as_json(cli("report", "--html", str(target), "--json"))
    return data, target.read_text(encoding="utf-8")


def most_days(count: int, stage_limit: int, wanted: int) -> list[str]:
    """The names of the ``wanted`` accounts of a status longest past the limit, longest first."""
    found = [(urgent_layout(i)[1], i) for i in range(1, count + 1) if i % 4 == wanted]
    found.sort(key=lambda item: (-(item[0] - stage_limit), bulk.name(item[1])))
    return [bulk.name(i) for _, i in found]


def rows_of_table(html: str) -> list[str]:
    """The visible text of each body row of the first table in ``html``."""
    table = re.search(r"<table>(.*?)</table>", html, re.DOTALL)
    assert table is not None, html
    return [Page(row).all_text() for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))[1:]]


def test_a_report_larger_than_a_page_lists_the_most_urgent_and_names_the_full_lists(
    database_url: str, tmp_path: Path
) -> None:
    count = 400
    data, html = large_report(database_url, count, tmp_path)

    stuck = most_days(count, 14, 0)
    assert [r["name"] for r in data["stuck"]] == stuck[:LIST_LIMIT]
    assert data["more"]["stuck"] == {
        "count": len(stuck) - LIST_LIMIT,
        "command": "kamflow portfolio --json",
    }
    assert [r["name"] for r in data["behind"]][:1] == most_days(count, 14, 1)[:1]
    assert data["summary"]["accounts"] == count
    assert (data["summary"]["stuck"], data["summary"]["behind"]) == (count // 4, count // 4)
    assert data["board"] == [] and data["more"]["board"]["count"] == count

    listed = rows_of_table(section(html, "stuck"))
    assert len(listed) == LIST_LIMIT
    assert listed[0].startswith(stuck[0]) and listed[-1].startswith(stuck[LIST_LIMIT - 1])
    assert stuck[LIST_LIMIT] not in section(html, "stuck")
    stuck_text = Page(section(html, "stuck")).all_text()
    assert f"... and {len(stuck) - LIST_LIMIT} more: kamflow portfolio --json" in stuck_text
    board = Page(section(html, "board")).all_text()
    assert f"{count} accounts are on the board" in board
    assert "kamflow portfolio --json" in board and "kamflow account export FILE" in board
    # The days chart draws the accounts listed, stuck and behind, not the whole board.
    days = next(c for c in svgs(html) if "Days in stage" in c)
    assert days.count("<rect") == len(data["stuck"]) + len(data["behind"]) == 2 * LIST_LIMIT

    # Coverage: the teams with the most gaps, the gaps counted per role over every account.
    empty = [bulk.name(i) for i in range(1, count + 1) if not team_layout(i)]
    assert [row["account"] for row in data["coverage"]] == empty[:LIST_LIMIT]
    assert data["coverage_gaps"]["relationship-lead"] == sum(
        1 for i in range(1, count + 1) if "relationship-lead" not in team_layout(i)
    )
    coverage_text = Page(section(html, "coverage")).all_text()
    assert f"... and {count - LIST_LIMIT} more: kamflow coverage --json" in coverage_text

    # KPIs: the furthest off target first (a latest value of 0 against a target of 40).
    off = sum(1 for i in range(1, count + 1) if i % 50 < 40)
    assert data["kpi_counts"] == {"kpis": count, "off_target": off, "no_value": 0}
    assert [k["latest"] for k in data["kpis"][:8]] == [0.0] * 8
    assert all(k["off_target"] for k in data["kpis"])
    kpi_text = Page(section(html, "KPI")).all_text()
    assert f"{off} of {count} KPIs off target" in kpi_text
    assert f"... and {count - LIST_LIMIT} more: kamflow kpis --json" in kpi_text


@contextmanager
def fresh_database(like: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the same kind as ``like``."""
    if like.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'other.db'}"
        yield url
        dispose(url)
        return
    with fresh_schema() as url:
        yield url


def test_the_report_page_keeps_its_size_as_the_portfolio_grows(
    database_url: str, tmp_path: Path
) -> None:
    _, small = large_report(database_url, 200, tmp_path)
    with fresh_database(database_url, tmp_path) as other:
        _, large = large_report(other, 2_000, tmp_path)

    assert len(large.encode()) <= 1.02 * len(small.encode())
    assert len(large.encode()) < 300_000
