"""A portfolio of 70,000 accounts: more than PostgreSQL lets one statement carry as parameters.

Every listing (the board, the rank, coverage, KPIs, the account list) and the cap's refusal must
answer for all of them, on SQLite and on PostgreSQL: an IN list over every account id would be
refused there ("number of parameters must be between 0 and 65535"). The portfolio is written in
bulk once per database (tests/bulk.py) and only read by the tests, through the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from kamflow.clock import FixedClock
from tests import bulk
from tests.conftest import START, Cli, _require_postgres, as_json, cli_on, dispose, fresh_schema
from tests.conftest import refused as refused_with

COUNT = 70_000
CYCLE = ("strategy", "research", "action_plan", "execution", "review")
PLACES = ("candidate", *CYCLE)
LIMITS = {"strategy": 14, "research": 21, "action_plan": 21, "execution": 90, "review": 14}
ROLES = (
    "relationship-lead",
    "technical-expert",
    "collaborator",
    "project-manager",
    "innovator",
    "result-driver",
)


def place(i: int) -> tuple[str, int]:
    """Few candidates and exited accounts: more than 65,535 key accounts."""
    if i % 50 == 0:
        return "candidate", i % 30
    if i % 50 == 1:
        return "retired", 3
    return CYCLE[i % 5], i % 40


def score(i: int) -> float | None:
    return float(i * 7 % 101) if i % 3 == 0 else None


def roles(i: int) -> tuple[str, ...]:
    return ("relationship-lead", "technical-expert") if i % 7 == 0 else ()


def kpi(i: int) -> tuple[float, float | None] | None:
    if i % 10 == 2:
        return 40.0, float(i % 80)
    if i % 10 == 3:
        return 40.0, None
    return None


LAYOUT = bulk.Layout(place, score, roles, kpi)
ON_BOARD = [i for i in range(1, COUNT + 1) if place(i)[0] in PLACES]
KEY = [i for i in ON_BOARD if place(i)[0] != "candidate"]
assert len(KEY) > 65_535


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """The CLI on a database of COUNT accounts laid out by LAYOUT."""
    clock = FixedClock(START)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('big') / 'kamflow.db'}"
        bulk.build(url, COUNT, LAYOUT, now=START)
        yield cli_on(url, clock)
        dispose(url)
        return
    _require_postgres()
    with fresh_schema() as url:
        bulk.build(url, COUNT, LAYOUT, now=START)
        yield cli_on(url, clock)


def body(text: str) -> list[str]:
    """The rows of a streamed table, after its header and rule."""
    lines = text.splitlines()
    return lines[2 : lines.index("") if "" in lines else len(lines)]


def assert_aligned(text: str) -> None:
    """Every cell of every row starts where its column's rule starts."""
    lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"-+", lines[1])]
    for line in [lines[0], *body(text)]:
        for start in starts[1:]:
            if start < len(line):
                assert line[start - 2 : start] == "  ", (line, start)


def test_the_board_lists_every_account_in_stage_order(big: Cli) -> None:
    rows = as_json(big("portfolio", "--json"))

    assert len(rows) == len(ON_BOARD)
    keys = [(PLACES.index(r["stage"]), r["name"].lower()) for r in rows]
    assert keys == sorted(keys)
    found = {r["name"]: r for r in rows}
    assert found[bulk.name(3)]["score"] == score(3)  # the latest of two scorings
    assert found[bulk.name(4)]["score"] is None
    # Account 39 is in review (limit 14) for 39 days: stuck; 13 in execution for 13: on track.
    assert (found[bulk.name(39)]["days_in_stage"], found[bulk.name(39)]["status"]) == (39, "stuck")
    assert found[bulk.name(13)]["status"] == "on_track"

    text = big("portfolio").output
    assert len(body(text)) == len(ON_BOARD)
    assert_aligned(text)
    assert [line.split("  ")[0] for line in body(text)[:1]] == ["Candidate"]


def test_the_rank_orders_every_account_by_its_latest_score(big: Cli) -> None:
    rows = as_json(big("account", "rank", "--json"))

    assert [r["rank"] for r in rows] == list(range(1, len(ON_BOARD) + 1))
    scored = [i for i in ON_BOARD if score(i) is not None]
    expected = sorted(scored, key=lambda i: (-(score(i) or 0), bulk.name(i)))
    assert [r["name"] for r in rows[: len(scored)]] == [bulk.name(i) for i in expected]
    assert all(r["score"] is None for r in rows[len(scored) :])
    assert_aligned(big("account", "rank").output)


def test_coverage_lists_every_key_account_and_counts_its_gaps(big: Cli) -> None:
    rows = as_json(big("coverage", "--json"))

    assert [r["account"] for r in rows] == [bulk.name(i) for i in KEY]
    covered = {r["account"]: r for r in rows}[bulk.name(7)]
    assert covered["roles"]["relationship-lead"] == [bulk.OTHER]
    assert covered["gaps"] == [role for role in ROLES if role not in roles(7)]

    text = big("coverage").output
    gaps = sum(len(ROLES) - len(roles(i)) for i in KEY)
    assert text.endswith(f"\n{gaps} gaps in {len(KEY)} key accounts.\n")
    assert_aligned(text)


def test_kpis_list_every_kpi_of_the_key_accounts(big: Cli) -> None:
    rows = as_json(big("kpis", "--json"))

    with_kpi = [i for i in KEY if kpi(i) is not None]
    assert [r["account"] for r in rows] == [bulk.name(i) for i in with_kpi]
    off = {bulk.name(i) for i in with_kpi if i % 10 == 2 and i % 80 < 40}
    assert {r["account"] for r in rows if r["off_target"]} == off
    assert_aligned(big("kpis").output)


def test_the_account_list_holds_every_account(big: Cli) -> None:
    rows: list[dict[str, Any]] = as_json(big("account", "list", "--json"))

    assert len(rows) == COUNT
    assert sum(r["stage"] == "retired" and r["status"] == "closed" for r in rows) == COUNT // 50


def test_the_cap_names_the_lowest_scored_of_every_key_account(big: Cli) -> None:
    err = refused_with(big("account", "add", "Newcomer Ltd", "--owner", bulk.OWNER), 3)

    unscored = sorted(bulk.name(i) for i in KEY if score(i) is None)
    shown = ", ".join(f"{name} (not scored)" for name in unscored[:5])
    assert f"the organisation already has {len(KEY)} key accounts" in err
    assert f"{shown} and {len(KEY) - 5} more; the lowest-scored is {unscored[0]}" in err


def test_the_export_writes_every_account_with_its_latest_score(
    big: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    target = tmp_path_factory.mktemp("export") / "accounts.csv"

    assert big("account", "export", str(target)).output == f"Wrote {COUNT} accounts to {target}.\n"
    lines = target.read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 1 + COUNT
    assert lines[3].startswith(f"{bulk.name(3)},{bulk.OTHER},existing,3,3,3,3,3,3,3,3,execution,")
    assert lines[3].endswith(f",{score(3):g}")


def test_a_misspelt_account_name_finds_its_neighbours_among_every_account(big: Cli) -> None:
    """Near names come from the name index, a few hundred at most, wherever they are in it."""
    for typed, meant in [
        ("Account 0123456", 12_345),  # a digit too many
        ("The Account 069999", 69_999),  # a word too many in front
        ("account 00001", 1),  # a digit too few, at the very start of the index
    ]:
        err = refused_with(big("account", "show", typed), 1)
        assert err.startswith(f"Error: no account {typed!r}; did you mean {bulk.name(meant)}"), err
