"""Two processes advance the same account at once: exactly one wins, the other is told why.

The race is real: two spawned processes do everything slow (imports, opening the database) first,
then meet at a barrier and fire together. It is repeated over several accounts to show that the
outcome does not depend on luck.
"""

from __future__ import annotations

import json
import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest

from kamflow.clock import FixedClock
from tests.conftest import Cli

#: (account, actor, outcome, exit code, message) as a racing process reports it.
Report = tuple[str, str, str, int, str]

OWNER = "owner@example.com"
RACERS = ("first@example.com", "second@example.com")
ACCOUNTS = ("Acme Corp", "Globex", "Initech")
#: How long a racer waits at a barrier for the other one before giving up.
BARRIER_TIMEOUT = 30.0
#: How long the test waits for all reports (spawned processes import kamflow from scratch).
REPORT_TIMEOUT = 120.0
JOIN_TIMEOUT = 30.0
CRASH = "crash"


# --- what runs in each racing process -------------------------------------------------------------


def race_cli(
    url: str,
    names: Sequence[str],
    now: str,
    actor: str,
    start: Barrier,
    reports: Queue[Report],
) -> None:
    """For each account: wait for the other racer, then run `kamflow advance NAME --to research`."""
    try:
        from click.testing import CliRunner

        from kamflow.cli import app
        from kamflow.db import ready_engine

        ready_engine(url)
        runner = CliRunner()
        for name in names:
            start.wait(timeout=BARRIER_TIMEOUT)
            result = runner.invoke(
                app,
                ["--db", url, "advance", name, "--to", "research"],
                env={"KAMFLOW_NOW": now, "KAMFLOW_USER": actor},
                catch_exceptions=False,
            )
            outcome = "advanced" if result.exit_code == 0 else "failed"
            reports.put((name, actor, outcome, result.exit_code, result.stderr))
    except BaseException:
        reports.put(("", actor, CRASH, -1, traceback.format_exc()))


def race_engine(
    url: str,
    names: Sequence[str],
    now: str,
    actor: str,
    start: Barrier,
    write: Barrier,
    reports: Queue[Report],
) -> None:
    """For each account: both racers read and pass the guards, then both try to write."""
    try:
        from kamflow.db import ready_engine, session_scope
        from kamflow.engine import advance
        from kamflow.errors import Conflict, KamflowError

        def hold() -> None:
            write.wait(timeout=BARRIER_TIMEOUT)

        engine = ready_engine(url)
        for name in names:
            start.wait(timeout=BARRIER_TIMEOUT)
            try:
                with session_scope(engine) as session:
                    advance(
                        session,
                        name,
                        to="research",
                        actor=actor,
                        now=datetime.fromisoformat(now),
                        before_write=hold,
                    )
                reports.put((name, actor, "advanced", 0, ""))
            except Conflict as error:
                reports.put((name, actor, "conflict", error.exit_code, str(error)))
            except KamflowError as error:
                reports.put((name, actor, type(error).__name__, error.exit_code, str(error)))
    except BaseException:
        reports.put(("", actor, CRASH, -1, traceback.format_exc()))


# --- the test's side ------------------------------------------------------------------------------


def run_race(target: Callable[..., None], *args: Any, barriers: int) -> list[Report]:
    """Run ``target`` in two spawned processes sharing ``barriers`` barriers; collect reports."""
    context = multiprocessing.get_context("spawn")
    shared = [context.Barrier(2) for _ in range(barriers)]
    reports: Queue[Report] = context.Queue()
    processes: list[SpawnProcess] = [
        context.Process(target=target, args=(*args, actor, *shared, reports), daemon=True)
        for actor in RACERS
    ]
    for process in processes:
        process.start()
    collected: list[Report] = []
    try:
        # Read every report before joining: a process with queued data does not exit.
        for _ in range(len(RACERS) * len(ACCOUNTS)):
            report = reports.get(timeout=REPORT_TIMEOUT)
            if report[2] == CRASH:
                pytest.fail(f"the racing process of {report[1]} crashed:\n{report[4]}")
            collected.append(report)
    finally:
        for barrier in shared:
            barrier.abort()  # free a racer still waiting, so that it can exit
        for process in processes:
            process.join(timeout=JOIN_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(timeout=JOIN_TIMEOUT)
    assert [p.exitcode for p in processes] == [0, 0]
    return collected


def prepare(cli: Cli) -> None:
    """Accounts in Strategy whose strategy is set: `advance --to research` is allowed."""
    assert cli("person", "add", OWNER).exit_code == 0
    for name in ACCOUNTS:
        assert cli("account", "add", name, "--owner", OWNER).exit_code == 0
        strategy = cli(
            "strategy", "set", name, "--objective", "Grow", "--who", "The COO", "--why", "Potential"
        )
        assert strategy.exit_code == 0, strategy.stderr
        dry = cli("advance", name, "--to", "research", "--dry-run")
        assert dry.exit_code == 0, dry.output + dry.stderr


def transition_rows(cli: Cli, name: str) -> list[dict[str, Any]]:
    shown = cli("history", name, "--json")
    assert shown.exit_code == 0, shown.stderr
    return [row for row in json.loads(shown.output) if row["kind"] == "transition"]


def split(reports: list[Report], name: str) -> tuple[Report, Report]:
    """The winner's and the loser's report on ``name``; exactly one must have advanced."""
    mine = [report for report in reports if report[0] == name]
    assert len(mine) == 2, reports
    winners = [report for report in mine if report[2] == "advanced"]
    assert len(winners) == 1, f"{name}: expected exactly one winner, got {mine}"
    [loser] = [report for report in mine if report[2] != "advanced"]
    return winners[0], loser


def test_two_processes_advance_at_once_exactly_one_wins(
    cli: Cli, database_url: str, clock: FixedClock
) -> None:
    prepare(cli)
    reports = run_race(race_cli, database_url, ACCOUNTS, clock.now().isoformat(), barriers=1)
    for name in ACCOUNTS:
        winner, loser = split(reports, name)
        assert winner[3] == 0
        _, _, _, code, stderr = loser
        assert code == 1, f"{name}: the loser exited {code}: {stderr!r}"
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("Error: ")
        assert "Traceback" not in stderr
        conflict = "changed meanwhile" in lines[0] and "try again" in lines[0]
        refusal = f"{name} is already in Research" in lines[0]
        assert conflict or refusal, f"{name}: unclear message for the loser: {lines[0]!r}"

        [row] = transition_rows(cli, name)
        assert (row["from"], row["to"]) == ("strategy", "research")
        assert row["actor"] == winner[1]
        shown = cli("account", "show", name, "--json")
        assert json.loads(shown.output)["stage"] == "research"


def test_both_pass_the_guards_then_one_gets_a_conflict(
    cli: Cli, database_url: str, clock: FixedClock
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip(
            "SQLite begins every write transaction IMMEDIATE, so the second racer cannot read "
            "until the first commits: holding both at before_write would deadlock"
        )
    prepare(cli)
    reports = run_race(race_engine, database_url, ACCOUNTS, clock.now().isoformat(), barriers=2)
    for name in ACCOUNTS:
        winner, loser = split(reports, name)
        _, _, outcome, code, message = loser
        assert outcome == "conflict", f"{name}: the loser got {outcome}: {message}"
        assert code == 1
        assert "changed meanwhile" in message
        assert "try again" in message
        [row] = transition_rows(cli, name)
        assert (row["from"], row["to"]) == ("strategy", "research")
        assert row["actor"] == winner[1]
        shown = cli("account", "show", name, "--json")
        assert json.loads(shown.output)["stage"] == "research"
