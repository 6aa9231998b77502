"""Accounts in and out as CSV: `kamflow account import` and `kamflow account export`.

An import is all or nothing: every problem of the file is reported with its line number (the
header is line 1) and a file with any problem imports nothing. Run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy.engine import Engine

from kamflow.clock import FixedClock
from tests.conftest import Cli, as_json, cli_on, fresh_schema, ok, snapshot

OWNER = "owner@example.com"
ENGINEER = "engineer@example.com"
THIRD = "third@example.com"
LEADER = "lead@example.com"
FACTORS = ("revenue", "growth", "renewal", "win_now", "effort", "relationship", "fit", "logo")
HEADER = "name,owner,kind"
SCORED_HEADER = HEADER + "," + ",".join(FACTORS)
#: Scores 75 with the default weights (see KAM.md): 20 + 15 + 7.5 + 2.5 + 5 + 7.5 + 15 + 2.5.
GOOD_SCORES = "5,4,3,2,1,4,5,3"
GOOD_TOTAL = 75.0
#: Every factor 3: 50 whatever the weights.
MIDDLE = "3,3,3,3,3,3,3,3"
BOM = "\ufeff"
#: A small cap, so that a few rows go over it.
SMALL_CAP = """\
selection:
  weights: {revenue: 20, growth: 20, renewal: 15, fit: 15, relationship: 10, win_now: 10,
            effort: 5, logo: 5}
  inverted: [effort]
  threshold: 60
cap:
  organisation: 4
  per_owner: 2
  warn_per_owner: 1
"""


# --- helpers -------------------------------------------------------------------------------------


def problems(result: Result, file: Path) -> list[str]:
    """The problems a refused import lists, one `line N: ...` each, in the order given."""
    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}\n{result.stderr}"
    assert "Traceback" not in result.output + result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith("Error: ") and file.name in first, result.stderr
    assert rest, result.stderr
    assert all(line.startswith("  line ") for line in rest), result.stderr
    return [line.strip() for line in rest]


def line_numbers(found: list[str]) -> list[int]:
    return [int(problem.split(":", 1)[0].removeprefix("line ")) for problem in found]


def write(
    folder: Path, text: str, *, bom: bool = False, crlf: bool = False, name: str = ""
) -> Path:
    """A CSV file the way a spreadsheet saves it: UTF-8, maybe a byte-order mark and CRLF."""
    path = folder / (name or f"accounts-{uuid.uuid4().hex[:6]}.csv")
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(((BOM if bom else "") + text).encode("utf-8"))
    return path


def accounts(cli: Cli) -> dict[str, dict[str, Any]]:
    """Every account by name, from `account list --json`."""
    return {row["name"]: row for row in as_json(cli("account", "list", "--json"))}


def add_people(cli: Cli) -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", ENGINEER))
    ok(cli("person", "add", THIRD))
    ok(cli("person", "add", LEADER, "--leader"))


def score_args(values: str) -> list[str]:
    flags = [f"--{factor.replace('_', '-')}" for factor in FACTORS]
    return [part for pair in zip(flags, values.split(","), strict=True) for part in pair]


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def small_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A portfolio.yaml with caps of 4 for the organisation and 2 per owner."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "portfolio.yaml").write_text(SMALL_CAP, encoding="utf-8")
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))


@pytest.fixture
def other_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def other_cli(other_url: str, clock: FixedClock) -> Cli:
    """Like ``cli``, on the second database."""
    return cli_on(other_url, clock)


# --- a good file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bom", "crlf"), [(True, True), (False, False)], ids=["excel-bom-crlf", "plain"]
)
def test_import_reads_utf8_with_or_without_a_byte_order_mark(
    cli: Cli, tmp_path: Path, bom: bool, crlf: bool
) -> None:
    add_people(cli)
    file = write(
        tmp_path,
        f"{HEADER}\nAcme Corp,{OWNER},existing\nSöderberg & Søn,{ENGINEER},new\n",
        bom=bom,
        crlf=crlf,
    )

    output = ok(cli("account", "import", str(file)))

    assert "Imported 2 accounts" in output
    found = accounts(cli)
    assert set(found) == {"Acme Corp", "Söderberg & Søn"}
    assert {name: (row["owner"], row["kind"], row["stage"]) for name, row in found.items()} == {
        "Acme Corp": (OWNER, "existing", "strategy"),
        "Söderberg & Søn": (ENGINEER, "new", "strategy"),
    }


def test_import_with_the_eight_factors_records_scores_in_history(cli: Cli, tmp_path: Path) -> None:
    add_people(cli)
    file = write(
        tmp_path,
        f"{SCORED_HEADER}\nHopeful Inc,{OWNER},new,{GOOD_SCORES}\nMaybe Ltd,{OWNER},new,{MIDDLE}\n",
        bom=True,
    )

    output = ok(cli("account", "import", str(file), "--candidate"))

    assert "Imported 2 accounts" in output and "2 scored" in output
    ranked = {row["name"]: row for row in as_json(cli("account", "rank", "--json"))}
    assert ranked["Hopeful Inc"]["score"] == GOOD_TOTAL
    assert ranked["Maybe Ltd"]["score"] == 50
    assert not ranked["Hopeful Inc"]["key_account"]
    scored = [e for e in as_json(cli("history", "Hopeful Inc", "--json")) if e["kind"] == "score"]
    assert len(scored) == 1
    note = scored[0]["note"]
    assert "75" in note
    for factor, value in zip(FACTORS, GOOD_SCORES.split(","), strict=True):
        assert f"{factor} {value}" in note, note


def test_import_as_candidates_puts_every_row_in_the_candidate_place(
    cli: Cli, tmp_path: Path, small_cap: None
) -> None:
    """Candidates are not key accounts: the cap does not count them."""
    add_people(cli)
    rows = "".join(f"Prospect {n},{OWNER},new\n" for n in range(6))
    file = write(tmp_path, f"{HEADER}\n{rows}")

    output = ok(cli("account", "import", str(file), "--candidate"))

    assert f"Imported 6 accounts from {file} (6 candidates)." in output
    found = accounts(cli)
    assert len(found) == 6
    assert {row["stage"] for row in found.values()} == {"candidate"}
    assert as_json(cli("coverage", "--json")) == []


# --- all or nothing ------------------------------------------------------------------------------


def test_a_bad_file_reports_every_problem_with_its_line_and_imports_nothing(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    add_people(cli)
    ok(cli("account", "add", "EXISTING CO", "--owner", OWNER))
    text = (
        f"{SCORED_HEADER}\n"  # 1
        f"Acme Corp,{OWNER},existing,{GOOD_SCORES}\n"  # 2
        "\n"  # 3: a blank line still counts
        f"Globex,nobody@example.com,new,{MIDDLE}\n"  # 4: unknown owner
        f'"Initech\nSystems",{OWNER},new,{MIDDLE}\n'  # 5-6: one quoted name over two lines
        f"Umbrella,{OWNER},existing,6,3,3,3,3,3,3,3\n"  # 7: revenue out of range
        f"acme corp,{ENGINEER},existing,{MIDDLE}\n"  # 8: also on line 2
        f"Existing Co,{OWNER},existing,{MIDDLE}\n"  # 9: already in the database
        "\n"  # 10
        "\n"  # 11
        f"Hooli,{OWNER},partner,3,3,3,3,0,3,3,x\n"  # 12: kind, effort and logo wrong
        f'"Stark ""Industries""",{OWNER},new,{MIDDLE}\n'  # 13: fine
    )
    file = write(tmp_path, text, bom=True)
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert line_numbers(found) == [4, 7, 8, 9, 12, 12, 12], found
    assert "nobody@example.com" in found[0]
    assert "revenue" in found[1] and "6" in found[1]
    assert "line 2" in found[2]  # the duplicate names the line it repeats
    assert "existing co" in found[3].lower() and "already" in found[3]
    assert "partner" in " ".join(found[4:])
    assert "effort" in " ".join(found[4:]) and "logo" in " ".join(found[4:])
    assert snapshot(engine) == before


BAD_ROWS = {
    # id: (the rows after the header, the line reported, words the problem names)
    "unknown-owner": (f"Acme Corp,{OWNER},existing\nGlobex,ghost@example.com,new\n", 3, ["ghost"]),
    "duplicate-in-file": (f"Acme Corp,{OWNER},existing\nACME CORP,{OWNER},new\n", 3, ["line 2"]),
    "duplicate-in-database": (
        f"Acme Corp,{OWNER},existing\nexisting co,{OWNER},new\n",
        3,
        ["already"],
    ),
    "bad-kind": (f"Acme Corp,{OWNER},key\n", 2, ["kind", "key"]),
    "empty-name": (f"Acme Corp,{OWNER},existing\n ,{OWNER},new\n", 3, ["name"]),
    "number-name": (f"4711,{OWNER},existing\n", 2, ["4711"]),
    "multi-line-row": ('"Acme\nCorp",ghost@example.com,existing\n', 2, ["ghost"]),
    "unclosed-quote": (f'Acme Corp,{OWNER},existing\n"Globex,{OWNER},new\n', 3, ["quote"]),
    "nul-in-name": (f"Acme Corp,{OWNER},existing\nGlo\x00bex,{OWNER},new\n", 3, ["name"]),
    "after-blank-lines": (
        f"Acme Corp,{OWNER},existing\n\n\nGlobex,ghost@example.com,new\n",
        5,
        ["ghost"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_one_bad_row_imports_nothing(cli: Cli, engine: Engine, tmp_path: Path, case: str) -> None:
    add_people(cli)
    ok(cli("account", "add", "Existing Co", "--owner", OWNER))
    rows, line, words = BAD_ROWS[case]
    file = write(tmp_path, f"{HEADER}\n{rows}")
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert line_numbers(found) == [line], found
    for word in words:
        assert word.lower() in found[0].lower(), found
    assert snapshot(engine) == before


def test_a_row_with_too_many_values_does_not_hide_the_other_problems(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    add_people(cli)
    file = write(
        tmp_path,
        f"{HEADER}\nAcme Corp,{OWNER},existing,surplus\nGlobex,ghost@example.com,new\n"
        f"Initech,{OWNER},partner\n",
    )
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert line_numbers(found) == [2, 3, 4], found
    assert snapshot(engine) == before


BAD_SCORES = {
    "too-high": ("6,3,3,3,3,3,3,3", "revenue"),
    "zero": ("3,3,3,3,3,3,3,0", "logo"),
    "not-a-number": ("3,3,three,3,3,3,3,3", "renewal"),
    "a-fraction": ("3,3,3,3,2.5,3,3,3", "effort"),
    "missing-one": ("3,3,3,,3,3,3,3", "win"),
}


@pytest.mark.parametrize("case", list(BAD_SCORES))
def test_a_score_out_of_range_imports_nothing(
    cli: Cli, engine: Engine, tmp_path: Path, case: str
) -> None:
    add_people(cli)
    values, factor = BAD_SCORES[case]
    file = write(
        tmp_path,
        f"{SCORED_HEADER}\nAcme Corp,{OWNER},existing,{MIDDLE}\nGlobex,{OWNER},new,{values}\n",
    )
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file), "--candidate"), file)

    assert line_numbers(found) == [3], found
    assert factor in found[0].replace("-", "_"), found
    assert snapshot(engine) == before


HEADER_PROBLEMS = {
    "no-owner-column": ("name,kind\nAcme Corp,existing\n", ["owner"]),
    "no-columns-at-all": ("", ["name"]),
    "some-factors-only": (f"{HEADER},revenue,growth\nAcme Corp,{OWNER},new,3,3\n", ["renewal"]),
}


@pytest.mark.parametrize("case", list(HEADER_PROBLEMS))
def test_a_header_problem_is_reported_on_line_1(
    cli: Cli, engine: Engine, tmp_path: Path, case: str
) -> None:
    add_people(cli)
    text, words = HEADER_PROBLEMS[case]
    file = write(tmp_path, text, bom=True)
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert set(line_numbers(found)) == {1}, found
    for word in words:
        assert word in " ".join(found), found
    assert snapshot(engine) == before


def test_a_missing_file_or_one_that_is_not_utf8_is_a_clear_error(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    add_people(cli)
    before = snapshot(engine)

    missing = cli("account", "import", str(tmp_path / "nowhere.csv"))
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: ") and "nowhere.csv" in missing.stderr

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(f"{HEADER}\nSöderberg,{OWNER},new\n".encode("latin-1"))
    refused = cli("account", "import", str(latin1))
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: ") and "UTF-8" in refused.stderr
    for result in (missing, refused):
        assert "Traceback" not in result.output + result.stderr
    assert snapshot(engine) == before


# --- the cap -------------------------------------------------------------------------------------


def test_the_owner_cap_is_checked_for_the_whole_file(
    cli: Cli, engine: Engine, tmp_path: Path, small_cap: None
) -> None:
    """Two key accounts per owner: the owner's third (line 4) and fourth (line 5) are over."""
    add_people(cli)
    ok(cli("account", "add", "Existing Co", "--owner", OWNER))
    file = write(
        tmp_path,
        f"{HEADER}\nAcme Corp,{OWNER},existing\nGlobex,{ENGINEER},new\n"
        f"Initech,{OWNER},existing\nUmbrella,{OWNER},existing\n",
    )
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert line_numbers(found) == [4, 5], found
    assert all(OWNER in problem and "the cap is 2" in problem for problem in found)
    assert "--candidate" in found[0] or "--override" in found[0]  # says what to do instead
    assert snapshot(engine) == before


def test_the_organisation_cap_is_checked_for_the_whole_file(
    cli: Cli, engine: Engine, tmp_path: Path, small_cap: None
) -> None:
    """Four key accounts in all: with one there already, the rows from line 5 on are over."""
    add_people(cli)
    ok(cli("account", "add", "Existing Co", "--owner", OWNER))
    file = write(
        tmp_path,
        f"{HEADER}\nAcme Corp,{ENGINEER},existing\nGlobex,{THIRD},new\n"
        f"Initech,{ENGINEER},existing\nUmbrella,{THIRD},existing\nHooli,{OWNER},new\n",
    )
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert line_numbers(found) == [5, 6], found
    assert all("organisation already has 4 key accounts" in problem for problem in found)
    assert snapshot(engine) == before


def test_a_leader_may_import_over_the_cap_with_a_recorded_reason(
    cli: Cli, tmp_path: Path, small_cap: None
) -> None:
    add_people(cli)
    ok(cli("account", "add", "Existing Co", "--owner", OWNER))
    file = write(
        tmp_path,
        f"{HEADER}\nAcme Corp,{OWNER},existing\nGlobex,{OWNER},new\nInitech,{OWNER},new\n",
    )
    reason = "Board decision after the merger"

    result = cli("account", "import", str(file), "--override", "--reason", reason, actor=LEADER)

    assert "Imported 3 accounts" in ok(result)
    assert reason in result.stderr  # the override is not silent
    found = accounts(cli)
    assert {name: row["stage"] for name, row in found.items() if row["owner"] == OWNER} == {
        "Existing Co": "strategy",
        "Acme Corp": "strategy",
        "Globex": "strategy",
        "Initech": "strategy",
    }
    created = as_json(cli("history", "Initech", "--json"))[0]
    assert created["kind"] == "created"
    assert created["actor"] == LEADER
    assert reason in created["note"] + json.dumps(created["verdicts"])


def test_a_non_leader_may_not_override_the_cap(
    cli: Cli, engine: Engine, tmp_path: Path, small_cap: None
) -> None:
    add_people(cli)
    ok(cli("account", "add", "Existing Co", "--owner", OWNER))
    file = write(
        tmp_path,
        f"{HEADER}\nAcme Corp,{OWNER},existing\nGlobex,{OWNER},new\n",
    )
    before = snapshot(engine)

    result = cli("account", "import", str(file), "--override", "--reason", "Because", actor=OWNER)

    # Refused by the cap's guard, as on `account add` and `promote`: exit 3, before any row.
    assert result.exit_code == 3, result.output + result.stderr
    first, reason = result.stderr.splitlines()
    assert first.startswith("Error: ") and file.name in first
    assert reason == f"  - only a leader may override the key-account cap; you are {OWNER}"
    assert snapshot(engine) == before


def test_override_needs_a_reason(cli: Cli, tmp_path: Path) -> None:
    add_people(cli)
    file = write(tmp_path, f"{HEADER}\nAcme Corp,{OWNER},existing\n")
    result = cli("account", "import", str(file), "--override", actor=LEADER)
    assert result.exit_code == 2
    assert "--reason" in result.stderr
    assert accounts(cli) == {}


# --- export --------------------------------------------------------------------------------------


def build_accounts(cli: Cli) -> None:
    """A key account scored twice, an unscored one moved on to Research, a scored candidate."""
    add_people(cli)
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    ok(cli("account", "score", "Acme Corp", *score_args(MIDDLE)))
    ok(cli("account", "score", "Acme Corp", *score_args(GOOD_SCORES)))
    ok(cli("account", "add", "Globex & Söhne", "--owner", ENGINEER, "--kind", "new"))
    ok(
        cli(
            "strategy",
            "set",
            "Globex & Söhne",
            "--objective",
            "Grow",
            "--who",
            "The CFO",
            "--why",
            "Because",
            actor=ENGINEER,
        )
    )
    ok(cli("advance", "Globex & Söhne", actor=ENGINEER))
    ok(cli("account", "add", 'Hopeful, "the" Inc', "--owner", OWNER, "--candidate"))
    ok(cli("account", "score", 'Hopeful, "the" Inc', *score_args(MIDDLE)))


def test_export_writes_the_import_columns_plus_stage_and_latest_score(
    cli: Cli, tmp_path: Path
) -> None:
    build_accounts(cli)
    target = tmp_path / "out.csv"

    output = ok(cli("account", "export", str(target)))

    assert "3 accounts" in output
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a byte-order mark, for spreadsheets
    text = raw.decode("utf-8-sig")
    assert text.splitlines()[0] == f"{SCORED_HEADER},stage,score"
    rows = {row["name"]: row for row in read_csv(text)}
    assert set(rows) == {"Acme Corp", "Globex & Söhne", 'Hopeful, "the" Inc'}
    acme = rows["Acme Corp"]
    assert (acme["owner"], acme["kind"], acme["stage"]) == (OWNER, "existing", "strategy")
    assert [acme[f] for f in FACTORS] == GOOD_SCORES.split(",")  # the latest scoring
    assert float(acme["score"]) == GOOD_TOTAL
    globex = rows["Globex & Söhne"]
    assert (globex["owner"], globex["kind"], globex["stage"]) == (ENGINEER, "new", "research")
    assert [globex[f] for f in FACTORS] == [""] * 8 and globex["score"] == ""
    hopeful = rows['Hopeful, "the" Inc']
    assert hopeful["stage"] == "candidate" and float(hopeful["score"]) == 50
    # Without a file, the same CSV goes to standard output.
    assert ok(cli("account", "export")) == text


def test_an_exported_file_imports_as_candidates_with_scores_from_the_factors(
    cli: Cli, other_cli: Cli, tmp_path: Path
) -> None:
    build_accounts(cli)
    exported = tmp_path / "out.csv"
    ok(cli("account", "export", str(exported)))
    # The score is the export's, for reading: the import computes it from the factors.
    text = exported.read_text(encoding="utf-8-sig")
    rows = read_csv(text)
    for row in rows:
        row["stage"], row["score"] = "", "99"
    tampered = io.StringIO()
    writer = csv.DictWriter(tampered, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    file = write(tmp_path, tampered.getvalue())
    add_people(other_cli)

    output = ok(other_cli("account", "import", str(file), "--candidate"))

    assert "Imported 3 accounts" in output and "2 scored" in output
    ranked = {row["name"]: row for row in as_json(other_cli("account", "rank", "--json"))}
    assert set(ranked) == {"Acme Corp", "Globex & Söhne", 'Hopeful, "the" Inc'}
    assert {row["stage"] for row in ranked.values()} == {"candidate"}
    assert ranked["Acme Corp"]["score"] == GOOD_TOTAL
    assert ranked['Hopeful, "the" Inc']["score"] == 50
    assert ranked["Globex & Söhne"]["score"] is None
    assert ranked["Globex & Söhne"]["owner"] == ENGINEER
    again = {row["name"]: row for row in read_csv(ok(other_cli("account", "export")))}
    assert [again["Acme Corp"][f] for f in FACTORS] == GOOD_SCORES.split(",")
    assert again["Globex & Söhne"]["kind"] == "new"


def build_portfolio(cli: Cli) -> None:
    """OWNER at the small cap (two key accounts) with a disqualified and a retired account besides,
    all scored; a scored candidate; an unscored account of ENGINEER in Action plan."""
    add_people(cli)
    for name, stage in (  # closed first, so that the cap lets the other two in
        ("Initech", "disqualified"),
        ("Umbrella", "retired"),
        ("Acme Corp", "strategy"),
        ("Globex", "research"),
    ):
        ok(cli("account", "add", name, "--owner", OWNER, "--kind", "new"))
        ok(cli("account", "score", name, *score_args(GOOD_SCORES)))
        if stage in ("disqualified", "retired"):
            verb = "disqualify" if stage == "disqualified" else "retire"
            ok(cli(verb, name, "--reason", "Not a fit after all"))
        elif stage == "research":
            ok(cli("strategy", "set", name, "--objective", "Grow", "--who", "CFO", "--why", "Size"))
            ok(cli("advance", name))
    ok(cli("account", "add", "Hopeful Inc", "--owner", OWNER, "--candidate"))
    ok(cli("account", "score", "Hopeful Inc", *score_args(MIDDLE)))
    ok(cli("account", "add", "Stark Industries", "--owner", ENGINEER))
    reach_action_plan(cli, "Stark Industries", ENGINEER)


def reach_action_plan(cli: Cli, name: str, owner: str) -> None:
    """Move a new key account to Action plan: a strategy, the whole team, one answer per
    question category."""
    ok(cli("strategy", "set", name, "--objective", "A", "--who", "B", "--why", "C", actor=owner))
    ok(cli("advance", name, actor=owner))
    for role in (
        "relationship-lead",
        "technical-expert",
        "collaborator",
        "project-manager",
        "innovator",
        "result-driver",
    ):
        ok(cli("role", "assign", name, role, owner, actor=owner))
    first_of_each: dict[str, str] = {}
    for question in as_json(cli("plan", "questions", name, "--json")):
        first_of_each.setdefault(question["category"], question["id"])
    for question_id in first_of_each.values():
        ok(cli("plan", "answer", name, question_id, "Known", actor=owner))
    ok(cli("advance", name, actor=owner))


def test_a_round_trip_keeps_every_stage_closed_accounts_included(
    cli: Cli, other_cli: Cli, tmp_path: Path, small_cap: None
) -> None:
    """Export, import into a fresh database, export again: the same file. A disqualified or
    retired account comes back closed, not counted against its owner's cap."""
    build_portfolio(cli)
    first = tmp_path / "first.csv"
    ok(cli("account", "export", str(first)))
    stages = {row["name"]: row["stage"] for row in read_csv(first.read_text("utf-8-sig"))}
    assert stages == {
        "Acme Corp": "strategy",
        "Globex": "research",
        "Initech": "disqualified",
        "Umbrella": "retired",
        "Hopeful Inc": "candidate",
        "Stark Industries": "action_plan",
    }
    add_people(other_cli)

    imported = other_cli("account", "import", str(first))

    ok(imported)
    assert imported.stdout.strip() == (
        f"Imported 6 accounts from {first} (1 candidate, 3 key accounts, 2 closed, 5 scored)."
    )
    second = ok(other_cli("account", "export"))
    assert second == first.read_text(encoding="utf-8-sig")
    listed = {row["name"]: row for row in as_json(other_cli("account", "list", "--json"))}
    assert listed["Umbrella"]["status"] == "closed"
    assert listed["Initech"]["status"] == "closed"
    ranked = {row["name"]: row for row in as_json(other_cli("account", "rank", "--json"))}
    assert {name for name, row in ranked.items() if row["key_account"]} == {
        "Acme Corp",
        "Globex",
        "Stark Industries",
    }
    created = as_json(other_cli("history", "Stark Industries", "--json"))[0]
    assert created["kind"] == "created" and created["to"] == "action_plan"
    assert "imported into Action plan" in created["note"]
    retired = as_json(other_cli("history", "Umbrella", "--json"))
    assert retired[0]["to"] == "retired" and "imported into Retired" in retired[0]["note"]
    assert [entry["kind"] for entry in retired] == ["created", "score"]


STAGE_PROBLEMS = {
    # id: (the stage of line 3, --candidate or not, words the problem names)
    "unknown-stage": ("reserch", False, ["no stage 'reserch'", "workflow kam"]),
    "key-stage-as-candidate": ("execution", True, ["'execution'", "--candidate"]),
}


@pytest.mark.parametrize("case", list(STAGE_PROBLEMS))
def test_a_stage_that_cannot_be_honoured_imports_nothing(
    cli: Cli, engine: Engine, tmp_path: Path, case: str
) -> None:
    add_people(cli)
    stage, candidate, words = STAGE_PROBLEMS[case]
    file = write(
        tmp_path,
        f"{HEADER},stage\nAcme Corp,{OWNER},existing,candidate\nGlobex,{OWNER},new,{stage}\n",
    )
    before = snapshot(engine)

    result = cli("account", "import", str(file), *(["--candidate"] if candidate else []))

    assert result.exit_code == 1, result.output + result.stderr
    assert "Traceback" not in result.stderr
    first, *rest = result.stderr.splitlines()
    assert first.startswith("Error: ") and file.name in first
    assert len(rest) == 1 and rest[0].startswith("  line 3, column stage: "), rest
    for word in words:
        assert word in rest[0], rest
    assert snapshot(engine) == before


# --- a large file --------------------------------------------------------------------------------


def test_a_large_file_imports_quickly_without_a_stray_progress_label(
    database_url: str, clock: FixedClock, cli: Cli, tmp_path: Path
) -> None:
    """300 scored candidates through the console script, its output a pipe (not a terminal)."""
    add_people(cli)
    owners = (OWNER, ENGINEER, THIRD)
    rows = "".join(
        f"Prospect {n:03d},{owners[n % 3]},{'new' if n % 2 else 'existing'},"
        f"{(n % 5) + 1},{MIDDLE[2:]}\n"
        for n in range(300)
    )
    file = write(tmp_path, f"{SCORED_HEADER}\n{rows}", bom=True, crlf=True)
    environment = {
        **os.environ,
        "KAMFLOW_NOW": clock.now().isoformat(),
        "KAMFLOW_USER": OWNER,
    }

    command = ["account", "import", str(file), "--candidate"]
    result = subprocess.run(
        [sys.executable, "-m", "kamflow", "--db", database_url, *command],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"Imported 300 accounts from {file} (300 candidates, 300 scored).\n")
    assert "Importing" not in result.stdout + result.stderr
    ranked = as_json(cli("account", "rank", "--json"))
    assert len(ranked) == 300
    assert {row["score"] for row in ranked} == {40.0, 45.0, 50.0, 55.0, 60.0}


def test_an_import_warns_when_an_owner_nears_the_cap(cli: Cli, tmp_path: Path) -> None:
    """The shipped cap warns from an owner's third key account: once, with the final count."""
    add_people(cli)
    rows = "".join(f"Account {n},{OWNER},existing\n" for n in range(1, 5))
    file = write(tmp_path, f"{HEADER}\n{rows}")

    result = cli("account", "import", str(file))

    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        f"Warning: {OWNER} will own 4 key accounts (the cap is 5; kamflow warns from 3)"
    ]


# --- other separators ----------------------------------------------------------------------------


@pytest.mark.parametrize("separator", [";", "\t", "|"], ids=["semicolon", "tab", "bar"])
def test_an_import_reads_columns_separated_as_the_header_shows(
    cli: Cli, tmp_path: Path, separator: str
) -> None:
    """Spreadsheets set to some languages save "CSV" with semicolons; others save tabs."""
    add_people(cli)
    header = separator.join(["name", "owner", "kind", *FACTORS])
    quoted = f'"Müller, Söhne {separator} Co"'
    file = write(
        tmp_path,
        f"{header}\n"
        + separator.join(["Acme Corp", OWNER, "existing", *GOOD_SCORES.split(",")])
        + "\n"
        + separator.join([quoted, ENGINEER, "new", *MIDDLE.split(",")])
        + "\n",
        bom=True,
        crlf=True,
    )

    output = ok(cli("account", "import", str(file)))

    assert "Imported 2 accounts" in output and "2 scored" in output
    ranked = {row["name"]: row for row in as_json(cli("account", "rank", "--json"))}
    assert ranked["Acme Corp"]["score"] == GOOD_TOTAL
    # A tab inside a name is a blank like any other: names are one line.
    assert ranked[" ".join(f"Müller, Söhne {separator} Co".split())]["owner"] == ENGINEER


def test_a_separator_inside_an_unquoted_name_is_named(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    add_people(cli)
    file = write(tmp_path, f"name;owner;kind\nAcme Corp;{OWNER};existing\nA;B Co;{OWNER};new\n")
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert line_numbers(found) == [3], found
    assert "more values than columns" in found[0] and "';'" in found[0], found
    assert snapshot(engine) == before


def test_a_header_of_one_unknown_column_names_the_separators_read(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    add_people(cli)
    file = write(tmp_path, f"name/owner/kind\nAcme Corp/{OWNER}/existing\n")
    before = snapshot(engine)

    found = problems(cli("account", "import", str(file)), file)

    assert set(line_numbers(found)) == {1}, found
    assert "commas, semicolons, tabs or bars" in " ".join(found), found
    assert snapshot(engine) == before
