"""Choosing key accounts: the eight-factor score, promotion, the cap, the override, swap and rank.

Mostly through the CLI (what a user sees: exit codes, messages, history), on SQLite and on
PostgreSQL; the score formula itself also through kamflow.selection directly. The cap is tested
with a small custom portfolio.yaml put first on the workflow search path (KAMFLOW_WORKFLOWS).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy.engine import Engine
from sqlmodel import Session

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.definitions.selection import FACTORS, SelectionSpec, portfolio_config, score
from kamflow.engine import promote
from kamflow.errors import InvalidInput, InvalidWorkflow, KamflowError
from tests.conftest import Cli, as_json, ok, refused, snapshot

OWNER = "owner@example.com"
OTHER = "other@example.com"
LEADER = "lead@example.com"
STRANGER = "stranger@example.com"

#: Every factor at its best (effort is best at 1): 100.
TOP = {
    "revenue": 5,
    "growth": 5,
    "renewal": 5,
    "win_now": 5,
    "effort": 1,
    "relationship": 5,
    "fit": 5,
    "logo": 5,
}
#: Every factor at its worst (effort is worst at 5): 0.
BOTTOM = {
    "revenue": 1,
    "growth": 1,
    "renewal": 1,
    "win_now": 1,
    "effort": 5,
    "relationship": 1,
    "fit": 1,
    "logo": 1,
}
#: With the shipped weights, by hand:
#:   revenue 4:      20 x 3/4 = 15
#:   growth 5:       20 x 4/4 = 20
#:   renewal 3:      15 x 2/4 = 7.5
#:   win now 2:      10 x 1/4 = 2.5
#:   effort 4:        5 x (5 - 4)/4 = 1.25   (inverted)
#:   relationship 3: 10 x 2/4 = 5
#:   fit 4:          15 x 3/4 = 11.25
#:   logo 1:          5 x 0/4 = 0
#:   total                    = 62.5
MIXED = {
    "revenue": 4,
    "growth": 5,
    "renewal": 3,
    "win_now": 2,
    "effort": 4,
    "relationship": 3,
    "fit": 4,
    "logo": 1,
}
MIXED_TOTAL = 15 + 20 + 7.5 + 2.5 + 1.25 + 5 + 11.25 + 0
#: Exactly the shipped threshold: revenue 20 + growth 20 + renewal 15 + logo 5 = 60.
AT_THRESHOLD = {**BOTTOM, "revenue": 5, "growth": 5, "renewal": 5, "logo": 5}
#: Just below it: revenue 20 + growth 20 + renewal 15 + win now 10 x 1/4 = 57.5.
BELOW = {**BOTTOM, "revenue": 5, "growth": 5, "renewal": 5, "win_now": 2}


# --- helpers -------------------------------------------------------------------------------------


def ok_result(result: Result) -> Result:
    """A command that must succeed, for a look at its stderr (warnings)."""
    ok(result)
    return result


def people(cli: Cli) -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", OTHER))
    ok(cli("person", "add", STRANGER))
    ok(cli("person", "add", LEADER, "--leader"))


def score_args(values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for factor in FACTORS:
        args += [f"--{factor.replace('_', '-')}", str(values[factor])]
    return args


def give_score(cli: Cli, name: str, values: dict[str, Any], actor: str = OWNER) -> Result:
    return cli("account", "score", name, *score_args(values), actor=actor)


def candidate(cli: Cli, name: str, values: dict[str, Any] | None, owner: str = OWNER) -> None:
    """A candidate of ``owner``, scored with ``values`` (unscored when None)."""
    ok(cli("account", "add", name, "--owner", owner, "--candidate", actor=owner))
    if values is not None:
        ok(give_score(cli, name, values, actor=owner))


def key_account(
    cli: Cli,
    name: str,
    values: dict[str, Any] | None = None,
    owner: str = OWNER,
    workflow: str = "kam",
) -> Result:
    """A key account added directly (at Strategy), optionally scored."""
    result = cli("account", "add", name, "--owner", owner, "--workflow", workflow, actor=owner)
    ok(result)
    if values is not None:
        ok(give_score(cli, name, values, actor=owner))
    return result


def stage(cli: Cli, name: str) -> str:
    found: str = as_json(cli("account", "show", name, "--json"))["stage"]
    return found


def history(cli: Cli, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = as_json(cli("history", name, "--json"))
    return rows


def write_portfolio(
    folder: Path,
    *,
    weights: dict[str, Any] | None = None,
    threshold: float = 60,
    organisation: int = 20,
    per_owner: int = 5,
    warn_per_owner: int = 3,
) -> Path:
    """A portfolio.yaml in ``folder`` (the shipped weights unless given)."""
    weights = weights or {
        "revenue": 20,
        "growth": 20,
        "renewal": 15,
        "fit": 15,
        "relationship": 10,
        "win_now": 10,
        "effort": 5,
        "logo": 5,
    }
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["selection:", "  weights:"]
    lines += [f"    {factor}: {weight}" for factor, weight in weights.items()]
    lines += [
        "  inverted: [effort]",
        f"  threshold: {threshold}",
        "cap:",
        f"  organisation: {organisation}",
        f"  per_owner: {per_owner}",
        f"  warn_per_owner: {warn_per_owner}",
    ]
    path = folder / "portfolio.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped portfolio.yaml, whatever the environment says."""
    monkeypatch.delenv("KAMFLOW_WORKFLOWS", raising=False)


@pytest.fixture
def small_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped weights with a small cap: 3 in all, 2 per owner, a warning at 2."""
    folder = tmp_path / "small-cap"
    write_portfolio(folder, organisation=3, per_owner=2, warn_per_owner=2)
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    return folder


# --- the score, computed -------------------------------------------------------------------------


def test_the_shipped_weights_are_the_documented_ones(shipped: None) -> None:
    selection = portfolio_config().selection
    assert selection.weights == {
        "revenue": 20,
        "growth": 20,
        "renewal": 15,
        "fit": 15,
        "relationship": 10,
        "win_now": 10,
        "effort": 5,
        "logo": 5,
    }
    assert selection.inverted == ["effort"]
    assert selection.threshold == 60
    cap = portfolio_config().cap
    assert (cap.organisation, cap.per_owner, cap.warn_per_owner) == (20, 5, 3)


def test_all_best_scores_100_and_all_worst_scores_0(shipped: None) -> None:
    selection = portfolio_config().selection
    assert score(TOP, selection).total == 100
    assert score(BOTTOM, selection).total == 0


def test_a_mixed_scoring_is_the_weighted_sum_worked_out_by_hand(shipped: None) -> None:
    result = score(MIXED, portfolio_config().selection)
    assert MIXED_TOTAL == 62.5
    assert result.total == MIXED_TOTAL
    assert result.values == MIXED


def test_more_effort_scores_lower(shipped: None) -> None:
    selection = portfolio_config().selection
    easy = score({**MIXED, "effort": 1}, selection).total
    hard = score({**MIXED, "effort": 5}, selection).total
    # effort weighs 5: from the easiest to the hardest the score loses all of it
    assert easy - hard == 5
    assert easy > score(MIXED, selection).total > hard


@pytest.mark.parametrize(
    ("factor", "value", "shown"),
    [
        ("revenue", 0, "revenue"),
        ("logo", 6, "logo"),
        ("win_now", "x", "win-now"),
        ("effort", "3.5", "effort"),
        ("fit", "", "fit"),
        ("growth", -1, "growth"),
    ],
)
def test_a_value_outside_1_to_5_or_not_a_number_names_the_factor(
    shipped: None, factor: str, value: Any, shown: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        score({**MIXED, factor: value}, portfolio_config().selection)
    assert shown in str(raised.value)
    assert "1 to 5" in str(raised.value)


def test_a_spec_whose_weights_do_not_add_up_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="add up to 90, not 100"):
        SelectionSpec(weights={**{f: 10 for f in FACTORS}, "revenue": 20})
    with pytest.raises(ValueError, match="unknown factor 'charisma'"):
        SelectionSpec(weights={**{f: 10 for f in FACTORS}, "revenue": 20, "charisma": 10})


# --- the score, recorded -------------------------------------------------------------------------


def test_score_command_reports_the_total_against_the_threshold(cli: Cli, shipped: None) -> None:
    people(cli)
    candidate(cli, "Acme", None)
    out = ok(give_score(cli, "Acme", MIXED))
    assert "Acme scored 62.5" in out
    assert "reaches the promotion threshold of 60" in out
    out = ok(give_score(cli, "Acme", BELOW))
    assert "Acme scored 57.5" in out
    assert "below the promotion threshold of 60" in out


@pytest.mark.parametrize(
    ("option", "value"),
    [("--effort", "0"), ("--revenue", "6"), ("--win-now", "high"), ("--logo", "2.5")],
)
def test_score_command_refuses_a_bad_value_naming_the_factor(
    cli: Cli, engine: Engine, shipped: None, option: str, value: str
) -> None:
    people(cli)
    candidate(cli, "Acme", None)
    args = score_args(MIXED)
    args[args.index(option) + 1] = value
    before = snapshot(engine)
    err = refused(cli("account", "score", "Acme", *args), 1)
    assert len(err.splitlines()) == 1
    assert option.removeprefix("--") in err
    assert snapshot(engine) == before


def test_rescoring_keeps_the_earlier_scores_newest_first(
    cli: Cli, clock: FixedClock, shipped: None
) -> None:
    people(cli)
    candidate(cli, "Acme", None)
    ok(give_score(cli, "Acme", MIXED))
    first_at = clock.now()
    clock.advance(days=2)
    ok(give_score(cli, "Acme", TOP, actor=LEADER))

    scores = as_json(cli("account", "show", "Acme", "--json"))["scores"]
    assert [s["total"] for s in scores] == [100, 62.5]
    assert scores[0]["scored_by"] == LEADER
    assert scores[1]["scored_by"] == OWNER
    assert scores[1]["scored_at"] == first_at.isoformat()
    assert {f: scores[1][f] for f in FACTORS} == MIXED
    assert {f: scores[0][f] for f in FACTORS} == TOP

    scored = [row for row in history(cli, "Acme") if row["kind"] == "score"]
    assert len(scored) == 2
    assert scored[0]["actor"] == OWNER
    assert scored[0]["note"].startswith("scored 62.5")
    # the inputs are in history too
    assert "revenue 4" in scored[0]["note"] and "effort 4" in scored[0]["note"]
    assert scored[1]["actor"] == LEADER
    assert scored[1]["note"].startswith("scored 100")


def test_a_custom_portfolio_changes_the_score_and_the_threshold(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "custom"
    weights = {f: 0 for f in FACTORS} | {"revenue": 50, "effort": 50}
    write_portfolio(folder, weights=weights, threshold=80)
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    people(cli)
    candidate(cli, "Acme", None)
    # revenue 4: 50 x 3/4 = 37.5; effort 4 (inverted): 50 x 1/4 = 12.5; the rest weigh nothing
    out = ok(give_score(cli, "Acme", MIXED))
    assert "Acme scored 50" in out
    assert "below the promotion threshold of 80" in out
    err = refused(cli("account", "promote", "Acme"), 3)
    assert "scored 50, below the promotion threshold of 80" in err


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"weights": {f: 10 for f in FACTORS} | {"revenue": 20}},
            "the weights add up to 90, not 100",
        ),
        (
            {"weights": {f: 10 for f in FACTORS} | {"revenue": 10, "charisma": 20}},
            "unknown factor 'charisma'",
        ),
        ({"per_owner": 2, "warn_per_owner": 3}, "warn_per_owner"),
    ],
    ids=["weights-sum", "unknown-factor", "warn-above-cap"],
)
def test_an_invalid_portfolio_file_is_a_clear_error(
    cli: Cli,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any],
    problem: str,
) -> None:
    people(cli)
    candidate(cli, "Acme", None)
    folder = tmp_path / "bad"
    write_portfolio(folder, **settings)
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    before = snapshot(engine)
    for args in (
        ["account", "score", "Acme", *score_args(MIXED)],
        ["account", "add", "Globex", "--owner", OWNER],
    ):
        err = refused(cli(*args), 1)
        assert "portfolio.yaml" in err.splitlines()[0]
        assert problem in err
        assert "internal error" not in err
    with pytest.raises(InvalidWorkflow):
        portfolio_config()
    assert snapshot(engine) == before


# --- promotion -----------------------------------------------------------------------------------


def test_promotion_without_a_score_is_refused_saying_how_to_score(
    cli: Cli, engine: Engine, shipped: None
) -> None:
    people(cli)
    candidate(cli, "Acme", None)
    before = snapshot(engine)
    err = refused(cli("account", "promote", "Acme"), 3)
    assert "no selection score yet" in err
    assert "kamflow account score Acme" in err
    assert all(line.startswith("  - ") for line in err.splitlines()[1:])
    assert snapshot(engine) == before
    assert stage(cli, "Acme") == "candidate"


def test_promotion_below_the_threshold_names_the_score_and_the_threshold(
    cli: Cli, engine: Engine, shipped: None
) -> None:
    people(cli)
    candidate(cli, "Acme", BELOW)
    before = snapshot(engine)
    err = refused(cli("account", "promote", "Acme"), 3)
    assert "  - scored 57.5, below the promotion threshold of 60" in err.splitlines()
    assert snapshot(engine) == before
    assert stage(cli, "Acme") == "candidate"


def test_the_latest_score_decides_not_the_best(cli: Cli, engine: Engine, shipped: None) -> None:
    people(cli)
    candidate(cli, "Acme", TOP)
    ok(give_score(cli, "Acme", BELOW))
    err = refused(cli("account", "promote", "Acme"), 3)
    assert "scored 57.5" in err


def test_promotion_at_the_threshold_makes_a_key_account(cli: Cli, shipped: None) -> None:
    people(cli)
    candidate(cli, "Acme", AT_THRESHOLD)
    out = ok(cli("account", "promote", "Acme"))
    assert "candidate -> strategy" in out
    assert stage(cli, "Acme") == "strategy"
    last = history(cli, "Acme")[-1]
    assert (last["kind"], last["transition"], last["from"], last["to"]) == (
        "transition",
        "promote",
        "candidate",
        "strategy",
    )
    assert {v["guard"]: v["ok"] for v in last["verdicts"]} == {
        "score_at_least": True,
        "within_cap": True,
    }


def test_promotion_above_the_threshold_makes_a_key_account(cli: Cli, shipped: None) -> None:
    people(cli)
    candidate(cli, "Acme", MIXED)
    ok(cli("account", "promote", "Acme", "--dry-run"))
    assert stage(cli, "Acme") == "candidate"
    ok(cli("account", "promote", "Acme"))
    assert stage(cli, "Acme") == "strategy"


def test_a_candidate_cannot_advance_and_is_told_to_promote(
    cli: Cli, engine: Engine, shipped: None
) -> None:
    people(cli)
    out = ok(cli("account", "add", "Acme Corp", "--owner", OWNER, "--candidate"))
    assert "candidate" in out
    assert stage(cli, "Acme Corp") == "candidate"
    before = snapshot(engine)
    err = refused(cli("advance", "Acme Corp"), 1)
    assert "kamflow account promote 'Acme Corp'" in err
    assert snapshot(engine) == before


# --- the cap -------------------------------------------------------------------------------------


def test_the_owner_cap_refuses_a_promotion_and_a_plain_add(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    candidate(cli, "Gamma", TOP)
    before = snapshot(engine)

    err = refused(cli("account", "promote", "Gamma"), 3)
    assert f"{OWNER} already owns 2 key accounts, the cap is 2" in err
    assert "Alpha (100)" in err and "Beta (62.5)" in err
    assert "the lowest-scored is Beta (62.5)" in err
    assert "organisation" not in err
    assert snapshot(engine) == before

    err = refused(cli("account", "add", "Delta", "--owner", OWNER), 3)
    assert f"{OWNER} already owns 2 key accounts, the cap is 2" in err
    assert "the lowest-scored is Beta (62.5)" in err
    assert snapshot(engine) == before

    # another owner still has room
    key_account(cli, "Delta", owner=OTHER)


def test_the_organisation_cap_refuses_a_promotion_and_a_plain_add(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    key_account(cli, "Cobalt", AT_THRESHOLD, owner=OTHER)
    candidate(cli, "Gamma", TOP, owner=OTHER)
    before = snapshot(engine)

    err = refused(cli("account", "promote", "Gamma", actor=OTHER), 3)
    assert "the organisation already has 3 key accounts, the cap is 3" in err
    assert "Alpha (100)" in err and "Beta (62.5)" in err and "Cobalt (60)" in err
    assert "the lowest-scored is Cobalt (60)" in err
    assert f"{OTHER} already owns" not in err
    assert snapshot(engine) == before

    err = refused(cli("account", "add", "Delta", "--owner", OTHER), 3)
    assert "the organisation already has 3 key accounts, the cap is 3" in err
    assert "the lowest-scored is Cobalt (60)" in err
    assert snapshot(engine) == before


def test_an_unscored_key_account_is_named_as_the_lowest(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta")
    err = refused(cli("account", "add", "Gamma", "--owner", OWNER), 3)
    assert "the lowest-scored is Beta (not scored)" in err


def test_the_owner_is_warned_from_warn_per_owner(cli: Cli, small_cap: Path) -> None:
    people(cli)
    first = key_account(cli, "Alpha")
    assert "Warning:" not in first.stderr
    second = key_account(cli, "Beta")
    assert f"Warning: {OWNER} will own 2 key accounts" in second.stderr
    # a promotion warns the same way
    candidate(cli, "Gamma", TOP, owner=OTHER)
    assert "Warning:" not in ok_result(cli("account", "promote", "Gamma", actor=OTHER)).stderr
    ok(cli("retire", "Alpha", "--reason", "Make room"))
    candidate(cli, "Delta", TOP)
    promoted = ok_result(cli("account", "promote", "Delta"))
    assert f"Warning: {OWNER} will own 2 key accounts" in promoted.stderr


def test_the_shipped_cap_warns_at_the_third_key_account(cli: Cli, shipped: None) -> None:
    people(cli)
    assert "Warning:" not in key_account(cli, "Alpha").stderr
    assert "Warning:" not in key_account(cli, "Beta").stderr
    third = key_account(cli, "Gamma")
    assert f"Warning: {OWNER} will own 3 key accounts" in third.stderr
    assert "the cap is 5" in third.stderr


def test_a_leader_override_goes_over_the_cap_on_record(cli: Cli, small_cap: Path) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    candidate(cli, "Gamma", TOP)
    reason = "Board decision: the 2027 flagship"
    # --as, the global option, before the command
    result = cli(
        "--as", LEADER, "account", "promote", "Gamma", "--override", "--reason", reason,
        actor=OWNER,
    )  # fmt: skip
    ok(result)
    assert "Warning:" in result.stderr
    assert stage(cli, "Gamma") == "strategy"
    last = history(cli, "Gamma")[-1]
    assert last["transition"] == "promote"
    assert last["actor"] == LEADER
    assert reason in last["note"]
    cap = next(v for v in last["verdicts"] if v["guard"] == "within_cap")
    assert cap["ok"] is True
    assert LEADER in cap["message"] and reason in cap["message"]
    assert "override" in cap["message"]

    # the same flags on a plain add
    added = cli(
        "account", "add", "Delta", "--owner", OWNER, "--override", "--reason", reason,
        actor=LEADER,
    )  # fmt: skip
    ok(added)
    assert "Warning:" in added.stderr
    assert stage(cli, "Delta") == "strategy"
    created = history(cli, "Delta")[0]
    assert created["kind"] == "created"
    assert created["actor"] == LEADER
    assert reason in created["note"]
    cap = next(v for v in created["verdicts"] if v["guard"] == "within_cap")
    assert LEADER in cap["message"] and reason in cap["message"]


def test_a_non_leader_override_is_refused_saying_a_leader_is_needed(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    candidate(cli, "Gamma", TOP)
    before = snapshot(engine)
    for args in (
        ["account", "promote", "Gamma"],
        ["account", "add", "Delta", "--owner", OWNER],
    ):
        err = refused(cli(*args, "--override", "--reason", "I want it"), 5)
        assert "only a leader may override the key-account cap" in err
        assert OWNER in err
        assert snapshot(engine) == before


def test_a_non_leader_override_is_refused_even_under_the_cap(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    """Only a leader may override: an owner's --override is refused, not allowed."""
    people(cli)
    candidate(cli, "Gamma", TOP)
    for args in (
        ["account", "promote", "Gamma"],
        ["account", "add", "Delta", "--owner", OWNER],
    ):
        before = snapshot(engine)
        err = refused(cli(*args, "--override", "--reason", "Just in case"), 5)
        assert f"only a leader may override the key-account cap; you are {OWNER}" in err
        assert snapshot(engine) == before


def test_a_leader_override_that_was_not_needed_is_not_recorded(cli: Cli, small_cap: Path) -> None:
    """Under the cap a leader's --override changes nothing: no override on record, no warning."""
    people(cli)
    candidate(cli, "Gamma", TOP)
    for args, name in (
        (["account", "promote", "Gamma"], "Gamma"),
        (["account", "add", "Delta", "--owner", OTHER], "Delta"),
    ):
        result = cli(*args, "--override", "--reason", "Just in case", actor=LEADER)
        ok(result)
        assert "override" not in result.stderr
        notes = [row["note"] for row in history(cli, name)]
        assert not any("override" in note for note in notes), notes


def test_an_override_does_not_lift_the_threshold(cli: Cli, engine: Engine, small_cap: Path) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    candidate(cli, "Low", BELOW)
    before = snapshot(engine)
    err = refused(
        cli("account", "promote", "Low", "--override", "--reason", "Pet project", actor=LEADER), 3
    )
    assert "scored 57.5, below the promotion threshold of 60" in err
    assert snapshot(engine) == before


def test_every_unmet_promotion_guard_is_listed(cli: Cli, engine: Engine, small_cap: Path) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    candidate(cli, "Gamma", None)
    err = refused(cli("account", "promote", "Gamma"), 3)
    reasons = err.splitlines()[1:]
    assert len(reasons) == 2, err
    assert all(line.startswith("  - ") for line in reasons)
    assert "no selection score yet" in err
    assert "already owns 2 key accounts" in err


@pytest.mark.parametrize(
    "flags",
    [["--override"], ["--override", "--reason", "  "], ["--reason", "Why not"]],
    ids=["no-reason", "blank-reason", "reason-alone"],
)
def test_override_and_reason_go_together(
    cli: Cli, engine: Engine, small_cap: Path, flags: list[str]
) -> None:
    people(cli)
    candidate(cli, "Gamma", TOP)
    before = snapshot(engine)
    for args in (
        ["account", "promote", "Gamma"],
        ["account", "add", "Delta", "--owner", OWNER],
    ):
        result = cli(*args, *flags, actor=LEADER)
        assert result.exit_code == 2, result.stderr
        assert "--override" in result.stderr
        assert snapshot(engine) == before


def test_the_cap_counts_key_accounts_across_workflows(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    people(cli)
    key_account(cli, "Alpha", TOP, workflow="kam")
    key_account(cli, "Beta", MIXED, workflow="kam-lite")
    before = snapshot(engine)
    err = refused(cli("account", "add", "Gamma", "--owner", OWNER, "--workflow", "kam-lite"), 3)
    assert f"{OWNER} already owns 2 key accounts" in err
    assert "Alpha" in err and "Beta" in err
    assert snapshot(engine) == before

    key_account(cli, "Cobalt", owner=OTHER, workflow="kam-lite")
    candidate(cli, "Delta", TOP, owner=OTHER)
    before = snapshot(engine)
    err = refused(cli("account", "promote", "Delta", actor=OTHER), 3)
    assert "the organisation already has 3 key accounts" in err
    assert "Alpha" in err and "Beta" in err and "Cobalt" in err
    assert snapshot(engine) == before


def test_the_cap_ignores_candidates_and_retired_or_disqualified_accounts(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    people(cli)
    key_account(cli, "Old One")
    key_account(cli, "Wrong One")
    ok(cli("retire", "Old One", "--reason", "Contract ended"))
    ok(cli("disqualify", "Wrong One", "--reason", "Not a fit after all"))
    for name in ("Cand A", "Cand B", "Cand C"):
        candidate(cli, name, TOP)
    candidate(cli, "Cand D", TOP, owner=OTHER)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    before = snapshot(engine)
    err = refused(cli("account", "add", "Gamma", "--owner", OWNER), 3)
    assert f"{OWNER} already owns 2 key accounts" in err
    for gone in ("Old One", "Wrong One", "Cand A", "Cand B", "Cand C", "Cand D"):
        assert gone not in err
    assert "organisation" not in err
    assert snapshot(engine) == before
    # the organisation holds 2 of 3: another owner's candidate may still come in
    ok(cli("account", "promote", "Cand D", actor=OTHER))


# --- swap ----------------------------------------------------------------------------------------


def at_owner_cap(cli: Cli) -> None:
    """OWNER holds Alpha (100) and Beta (62.5), the cap of 2; candidates Gamma (100), Low (57.5)."""
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", MIXED)
    candidate(cli, "Gamma", TOP)
    candidate(cli, "Low", BELOW)


def test_swap_retires_one_and_promotes_the_other(cli: Cli, small_cap: Path) -> None:
    at_owner_cap(cli)
    out = ok(cli("account", "swap", "Beta", "Gamma"))
    assert "Beta" in out and "Gamma" in out
    assert stage(cli, "Beta") == "retired"
    assert stage(cli, "Gamma") == "strategy"
    retired = history(cli, "Beta")[-1]
    assert (retired["transition"], retired["to"]) == ("retire", "retired")
    assert "Gamma" in retired["note"]
    promoted = history(cli, "Gamma")[-1]
    assert (promoted["transition"], promoted["from"], promoted["to"]) == (
        "promote",
        "candidate",
        "strategy",
    )
    ranked = {r["name"]: r for r in as_json(cli("account", "rank", "--json"))}
    assert "Beta" not in ranked
    assert ranked["Gamma"]["key_account"] is True


def test_a_leader_may_swap(cli: Cli, small_cap: Path) -> None:
    at_owner_cap(cli)
    ok(cli("account", "swap", "Beta", "Gamma", actor=LEADER))
    assert (stage(cli, "Beta"), stage(cli, "Gamma")) == ("retired", "strategy")


def test_a_swap_whose_candidate_cannot_be_promoted_changes_nothing(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    at_owner_cap(cli)
    before = snapshot(engine)
    err = refused(cli("account", "swap", "Beta", "Low"), 3)
    assert "scored 57.5, below the promotion threshold of 60" in err
    assert snapshot(engine) == before
    assert stage(cli, "Beta") == "strategy"
    assert stage(cli, "Low") == "candidate"


def test_a_swap_needs_a_key_account_to_go_out(cli: Cli, engine: Engine, small_cap: Path) -> None:
    """One in, one out: swapping out a candidate frees no place and must not retire it."""
    at_owner_cap(cli)
    candidate(cli, "Idle", MIXED)
    ok(cli("retire", "Alpha", "--reason", "Contract ended"))  # the cap has room for one
    before = snapshot(engine)
    err = refused(cli("account", "swap", "Idle", "Gamma"), 1)
    assert "Idle" in err and "key account" in err
    assert snapshot(engine) == before
    assert stage(cli, "Idle") == "candidate"
    assert stage(cli, "Gamma") == "candidate"


def test_a_swap_needs_a_candidate_to_come_in(cli: Cli, engine: Engine, small_cap: Path) -> None:
    at_owner_cap(cli)
    before = snapshot(engine)
    err = refused(cli("account", "swap", "Beta", "Alpha"), 1)
    assert "not a candidate" in err
    assert snapshot(engine) == before


def test_a_swap_by_someone_neither_owner_nor_leader_is_refused(
    cli: Cli, engine: Engine, small_cap: Path
) -> None:
    at_owner_cap(cli)
    before = snapshot(engine)
    err = refused(cli("account", "swap", "Beta", "Gamma", actor=STRANGER), 5)
    assert "only the owner or a leader" in err
    assert STRANGER in err
    assert snapshot(engine) == before


# --- rank ----------------------------------------------------------------------------------------


def test_rank_orders_candidates_and_key_accounts_by_latest_score(cli: Cli, shipped: None) -> None:
    people(cli)
    candidate(cli, "Fading", TOP)
    ok(give_score(cli, "Fading", BOTTOM))  # the latest score counts: 0
    candidate(cli, "Exact", AT_THRESHOLD)  # 60
    key_account(cli, "Keyed", MIXED)  # 62.5
    candidate(cli, "Unscored Cand", None)
    key_account(cli, "Unscored Key")
    candidate(cli, "Promoted", TOP, owner=OTHER)
    ok(cli("account", "promote", "Promoted", actor=OTHER))  # 100, now a key account
    key_account(cli, "Gone", TOP, owner=OTHER)
    ok(cli("retire", "Gone", "--reason", "Sold", actor=OTHER))
    candidate(cli, "Lite Cand", BELOW)  # 57.5
    ok(cli("account", "set-workflow", "Lite Cand", "kam-lite"))

    rows = as_json(cli("account", "rank", "--json"))
    names = [r["name"] for r in rows]
    assert names[:5] == ["Promoted", "Keyed", "Exact", "Lite Cand", "Fading"]
    assert set(names[5:]) == {"Unscored Cand", "Unscored Key"}
    assert "Gone" not in names
    by_name = {r["name"]: r for r in rows}
    assert [r["rank"] for r in rows] == list(range(1, 8))
    assert [by_name[n]["score"] for n in names[:5]] == [100, 62.5, 60, 57.5, 0]
    assert by_name["Unscored Cand"]["score"] is None
    assert {n for n in names if by_name[n]["above_threshold"]} == {"Promoted", "Keyed", "Exact"}
    assert {n for n in names if by_name[n]["key_account"]} == {
        "Promoted",
        "Keyed",
        "Unscored Key",
    }

    text = ok(cli("account", "rank"))
    positions = [text.index(name) for name in ["Promoted", "Keyed", "Exact", "Lite Cand", "Fading"]]
    assert positions == sorted(positions)
    assert "Gone" not in text


# --- the cap under concurrent promotions ---------------------------------------------------------


def test_two_promotions_at_once_cannot_both_take_the_last_place(
    cli: Cli, engine: Engine, clock: FixedClock, small_cap: Path
) -> None:
    """Two transactions promote two candidates for the one place left: one of them must fail.

    On SQLite writers are serialised (BEGIN IMMEDIATE), so the second would only wait: the race
    exists on PostgreSQL, where both transactions read the count before either commits.
    """
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL")
    people(cli)
    key_account(cli, "Alpha", TOP)
    key_account(cli, "Beta", TOP, owner=OTHER)
    candidate(cli, "Gamma", TOP)
    candidate(cli, "Delta", TOP, owner=OTHER)  # the organisation has one place left (3)
    outcomes: dict[str, str] = {}
    counted = threading.Event()  # the racer has passed its guards

    def promote_delta() -> None:
        try:
            with db.session_scope(engine) as session:
                promote(session, "Delta", actor=OTHER, now=clock.now(), before_write=counted.set)
            outcomes["Delta"] = "promoted"
        except KamflowError as error:
            outcomes["Delta"] = "refused: " + " ".join(error.lines())

    def racer_waits_for_a_lock() -> bool:
        with engine.connect() as connection:
            waiting = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).scalar()
        return bool(waiting)

    with Session(engine, expire_on_commit=False) as first:
        first.begin()
        promote(first, "Gamma", actor=OWNER, now=clock.now())  # the last place, not committed
        racer = threading.Thread(target=promote_delta)
        racer.start()
        # Hold the commit until the racer has either counted (the bug) or waits for the count.
        deadline = time.monotonic() + 20
        while not (counted.is_set() or racer_waits_for_a_lock()):
            assert time.monotonic() < deadline, "the racer neither counted nor waited"
            time.sleep(0.05)
        first.commit()
        outcomes["Gamma"] = "promoted"
    racer.join(timeout=30)
    assert not racer.is_alive(), "the second promotion never finished"
    assert outcomes["Gamma"] == "promoted"
    assert outcomes["Delta"].startswith("refused"), outcomes
    assert "the cap is 3" in outcomes["Delta"]
    ranked = as_json(cli("account", "rank", "--json"))
    keys = sorted(r["name"] for r in ranked if r["key_account"])
    assert len(keys) <= 3, (keys, outcomes)
