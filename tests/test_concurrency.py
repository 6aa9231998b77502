"""Two processes advance the same account at once: exactly one wins, the other is told why.

The race is real: two spawned processes do everything slow (imports, opening the database) first,
then meet at a barrier and fire together. It is repeated over several accounts to show that the
outcome does not depend on luck; threads race many more rounds, with a plan edited meanwhile, and
two answers to one question.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.engine import add_account, advance, close
from kamflow.errors import KamflowError
from kamflow.models import Answer, HistoryEntry, HistoryKind
from kamflow.records import plan
from kamflow.records.accounts import find_account
from tests.account_steps import (
    ACCOUNT,
    BANK,
    add_person,
    answer_categories,
    cover_roles,
    define_strategy,
    go,
    new_account,
    stage_of,
)
from tests.account_steps import (
    transition_rows as moves_of,
)
from tests.conftest import Cli, Runner, backend_pid, wait_for_a_waiter

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
    for racer in RACERS:  # leaders: they may move anyone's account
        assert cli("person", "add", racer, "--leader").exit_code == 0
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
        # Whether it read before or after the winner committed, the loser is told where the
        # account is now.
        assert lines[0].startswith(f"Error: {name} is already in Research"), lines[0]

        [row] = transition_rows(cli, name)
        assert (row["from"], row["to"]) == ("strategy", "research")
        assert row["actor"] == winner[1]
        shown = cli("account", "show", name, "--json")
        assert json.loads(shown.output)["stage"] == "research"


# --- racing threads, many rounds ------------------------------------------------------------------

#: How many rounds each threaded race runs: enough that an interleaving that loses shows up.
ROUNDS = 30
#: How long one racer gives the others to catch up with it, at most (a round's usual cost).
STAGGER = 0.05
EDITOR = OWNER
OPTIONAL = next(q.id for q in BANK.questions if not q.required)


def race(*jobs: Callable[[], None]) -> list[str]:
    """Run ``jobs`` in threads that start together: each one's outcome, in order (``ok``, or
    ``refused: `` and the lines the CLI would print)."""
    start = threading.Barrier(len(jobs))
    outcomes = [CRASH] * len(jobs)

    def runner(index: int, job: Callable[[], None]) -> None:
        try:
            start.wait(timeout=BARRIER_TIMEOUT)
            job()
            outcomes[index] = "ok"
        except KamflowError as error:
            outcomes[index] = "refused: " + "\n".join(error.lines())
        except BaseException:
            outcomes[index] = f"{CRASH}: {traceback.format_exc()}"

    threads = [threading.Thread(target=runner, args=pair) for pair in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REPORT_TIMEOUT)
        assert not thread.is_alive(), "a racer never finished"
    return outcomes


def in_session(
    engine: Engine,
    clock: FixedClock,
    function: Callable[..., Any],
    *args: Any,
    actor: str,
    **kw: Any,
) -> Callable[[], None]:
    """A job: ``function`` in a transaction of its own, as ``actor``."""

    def job() -> None:
        with db.session_scope(engine) as session:
            function(session, *args, actor=actor, now=clock.now(), **kw)

    return job


def fresh_account(engine: Engine, clock: FixedClock, run: Runner, name: str) -> None:
    """An account in Strategy whose strategy is set: `advance --to research` is allowed."""
    run(add_account, name, owner=OWNER, actor=OWNER)
    run(plan.set_strategy, name, objective="Grow", who="The COO", why="Potential", actor=OWNER)


class PlanEditMeanwhile:
    """One round's schedule: the plan edit commits while both racers are between their read and
    their write, whenever the database lets it.

    Each racer, once its guards are met, gives the edit up to STAGGER seconds to commit before
    it writes; the edit waits (as long) until both racers have got that far. Without a lock on
    the account that is the interleaving where both racers lose their compare-and-set; with it,
    the second racer and the edit wait for the first racer's transaction, and the moments run out.
    """

    def __init__(self) -> None:
        self.judged = [threading.Event() for _ in RACERS]
        self.edited = threading.Event()

    def racer(self, index: int) -> Callable[[], None]:
        """What racer ``index`` runs after its guards, before its write."""

        def between() -> None:
            self.judged[index].set()
            self.edited.wait(timeout=STAGGER)

        return between

    def edit(self, job: Callable[[], None]) -> Callable[[], None]:
        """``job`` (the plan edit), run once both racers are ready to write, or the time is up."""

        def edit() -> None:
            for judged in self.judged:
                judged.wait(timeout=STAGGER)
            job()
            self.edited.set()

        return edit


def test_racing_advances_while_the_plan_changes_exactly_one_wins_every_round(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    add_person(engine, clock, OWNER)
    for racer in RACERS:
        add_person(engine, clock, racer, leader=True)
    for round_ in range(ROUNDS):
        name = f"Round {round_}"
        fresh_account(engine, clock, run, name)
        schedule = PlanEditMeanwhile()
        text = f"Written during round {round_}"
        first, second, edit = race(
            *(
                in_session(
                    engine,
                    clock,
                    advance,
                    name,
                    to="research",
                    actor=actor,
                    before_write=schedule.racer(index),
                )
                for index, actor in enumerate(RACERS)
            ),
            schedule.edit(
                in_session(engine, clock, plan.answer_question, name, OPTIONAL, text, actor=EDITOR)
            ),
        )
        assert edit == "ok", f"round {round_}: the plan edit failed: {edit}"
        assert "ok" in (first, second), f"round {round_}: nobody won: {first, second}"
        [loser] = [outcome for outcome in (first, second) if outcome != "ok"]
        assert len(loser.splitlines()) == 1, f"round {round_}: {loser}"
        assert f"refused: {name} is already in Research" in loser, f"round {round_}: {loser}"
        winner = RACERS[0] if first == "ok" else RACERS[1]
        with db.session_scope(engine) as session:
            account = find_account(session, name)
            rows = session.exec(
                select(HistoryEntry).where(
                    HistoryEntry.account_id == account.id,
                    HistoryEntry.kind == HistoryKind.TRANSITION,
                )
            ).all()
            assert [(r.actor, r.to_stage) for r in rows] == [(winner, "research")]
            assert account.stage == "research"
            [answer] = session.exec(select(Answer).where(Answer.account_id == account.id)).all()
            assert answer.text == text
        # Retired, the account gives its place under the key-account cap to the next round's.
        run(close, name, "retire", reason="the race is run", actor=OWNER)


def test_racing_answers_to_one_question_never_fail_and_the_later_one_stays(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    add_person(engine, clock, OWNER)
    for racer in RACERS:
        add_person(engine, clock, racer, leader=True)
    run(add_account, ACCOUNT, owner=OWNER, actor=OWNER)
    questions = [q.id for q in BANK.questions][:ROUNDS]
    for question in questions:
        outcomes = race(
            *(
                in_session(
                    engine,
                    clock,
                    plan.answer_question,
                    ACCOUNT,
                    question,
                    f"Answer of {racer}",
                    actor=racer,
                )
                for racer in RACERS
            )
        )
        assert outcomes == ["ok", "ok"], f"{question}: {outcomes}"
        with db.session_scope(engine) as session:
            account = find_account(session, ACCOUNT)
            [answer] = session.exec(
                select(Answer).where(
                    Answer.account_id == account.id, Answer.question_id == question
                )
            ).all()
            rows = session.exec(
                select(HistoryEntry)
                .where(
                    HistoryEntry.account_id == account.id,
                    HistoryEntry.note == f"answered {question}",
                )
                .order_by(col(HistoryEntry.id))
            ).all()
        assert sorted(r.actor for r in rows) == sorted(RACERS), question
        # The answer that stays is the one written last, as the history tells.
        assert (answer.answered_by, answer.text) == (rows[-1].actor, f"Answer of {rows[-1].actor}")


#: The move that gets the account first: how it is made, where it leaves the account, and what
#: the bare `advance` waiting behind it is told.
FIRST_MOVES: dict[str, tuple[Callable[[Session, datetime], object], str, str]] = {
    "advance": (
        lambda session, now: advance(session, ACCOUNT, actor=RACERS[0], now=now),
        "research",
        f"{ACCOUNT} is already in Research: it was moved there meanwhile; nothing was written",
    ),
    "retire": (
        lambda session, now: close(
            session, ACCOUNT, "retire", reason="Bought by a rival", actor=OWNER, now=now
        ),
        "retired",
        f"{ACCOUNT} moved from Strategy to Retired meanwhile; nothing was written "
        f"(see: kamflow why '{ACCOUNT}')",
    ),
}


@pytest.mark.parametrize("first", sorted(FIRST_MOVES))
def test_an_advance_that_waited_for_another_move_does_not_make_the_next_move_instead(
    engine: Engine, clock: FixedClock, run: Runner, first: str
) -> None:
    """A bare `advance` let in once another move has taken the account out of Strategy is
    refused: it asked for Strategy -> Research, not for a move from where the account is now
    (Research -> Action plan is allowed by then)."""
    if engine.dialect.name != "postgresql":
        pytest.skip(
            "SQLite lets the second writer read only once the first has committed: it sees the "
            "new stage, and a move from there is what it asks for"
        )
    new_account(engine, clock, run)
    for email in RACERS:
        add_person(engine, clock, email, leader=True)
    define_strategy(run)
    cover_roles(run)
    answer_categories(run)  # what Research -> Action plan needs
    clock.advance(days=10)
    move, stage, refusal = FIRST_MOVES[first]
    second: list[str] = []

    def second_advance() -> None:
        try:
            with db.session_scope(engine) as session:
                advance(session, ACCOUNT, actor=RACERS[1], now=clock.now())
            second.append("ok")
        except KamflowError as error:
            second.append("\n".join(error.lines()))

    racer = threading.Thread(target=second_advance)
    with db.session_scope(engine) as session:
        move(session, clock.now())
        # Moved, not committed: the second one reads Strategy, then waits for the row.
        racer.start()
        wait_for_a_waiter(engine, backend_pid(session))
    racer.join(timeout=REPORT_TIMEOUT)

    assert second == [refusal]
    assert stage_of(engine) == stage
    assert [r.to_stage for r in moves_of(engine)] == [stage]
    if stage == "research":  # the move it did not make was open: asked for now, it is made
        assert go(run) == "action_plan"
