"""The history's hash chain, through `kamflow history verify`, on SQLite and PostgreSQL: a normal
run of commands verifies intact; a row changed or removed behind kamflow's back is named; rows
written before the chain existed are chained by the migration; concurrent writers keep one chain.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.records import plan
from tests.account_steps import BANK
from tests.conftest import Cli, as_json, cli_on, ok, refused

OWNER = "owner@example.com"
LEADER = "lead@example.com"
DOER = "doer@example.com"
ACME = "Acme Corp"
GLOBEX = "Globex"
#: Scores that let a candidate be promoted.
SCORED = (
    *("--revenue", "5", "--growth", "4", "--renewal", "4", "--win-now", "3"),
    *("--effort", "2", "--relationship", "4", "--fit", "5", "--logo", "3"),
)
#: `history verify`'s exit code for a broken chain.
BROKEN = 4


def busy_week(cli: Cli) -> None:
    """A normal run of commands, each writing history: accounts, a move, answers, actions, a
    hand-over of a deactivated person's accounts (written in one executemany). The login
    running the tests is an admin of its own, who acts for the others."""
    ok(cli("person", "add", "admin@example.com", actor="admin@example.com"))
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", LEADER, "--leader"))
    ok(cli("person", "add", DOER))
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", GLOBEX, "--owner", OWNER))
    ok(cli("account", "add", "Initech", "--owner", OWNER, "--candidate"))
    ok(cli("plan", "answer", ACME, BANK.questions[0].id, "They buy through procurement"))
    ok(cli("action", "add", ACME, "Run a workshop", "--owner", DOER, "--due", "2027-02-01"))
    ok(cli("snooze", GLOBEX, "--days", "7", "--reason", "Waiting for the budget"))
    ok(cli("person", "deactivate", OWNER, "--reassign-to", DOER, actor=LEADER))


def history_ids(engine: Engine, account: str) -> list[int]:
    """The ids of an account's history rows, oldest first."""
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(
                "SELECT history.id FROM history JOIN account ON account.id = history.account_id "
                "WHERE account.name = :name ORDER BY history.id"
            ),
            {"name": account},
        )
        return [int(row_id) for row_id in found.scalars()]


def tamper(engine: Engine, statement: str, **params: Any) -> None:
    """Run ``statement`` on the history with its append-only triggers out of the way, as someone
    with full access to the database could."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ALTER TABLE history DISABLE TRIGGER ALL")
            connection.execute(sa.text(statement), params)
            connection.exec_driver_sql("ALTER TABLE history ENABLE TRIGGER ALL")
        else:
            for operation in ("update", "delete"):
                connection.exec_driver_sql(f"DROP TRIGGER history_append_only_{operation}")
            connection.execute(sa.text(statement), params)


def broken(result: Result) -> str:
    """The one `Error:` line of a verification that found the chain broken."""
    lines = refused(result, BROKEN).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_normal_run_of_commands_verifies_intact(cli: Cli, engine: Engine) -> None:
    busy_week(cli)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT count(*) FROM history")).scalar_one()

    assert ok(cli("history", "verify")) == f"history intact: {rows} rows\n"
    assert as_json(cli("history", "verify", "--json")) == {"intact": True, "rows": rows}


def test_an_empty_history_verifies_intact(cli: Cli) -> None:
    assert ok(cli("history", "verify")) == "history intact: 0 rows\n"


def test_a_row_edited_behind_kamflows_back_is_named(cli: Cli, engine: Engine) -> None:
    busy_week(cli)
    edited = history_ids(engine, ACME)[1]
    before = ok(cli("history", ACME))

    tamper(engine, "UPDATE history SET note = 'nothing happened' WHERE id = :id", id=edited)

    line = broken(cli("history", "verify"))
    assert line == (
        f"Error: history broken at row {edited} (account 'Acme Corp', 2027-01-04 09:00 UTC): "
        "it was changed"
    )
    assert "nothing happened" in ok(cli("history", ACME)) != before
    result = cli("history", "verify", "--json")
    assert result.exit_code == BROKEN
    report = as_json_of(result)
    assert report["intact"] is False
    assert report["rows"] == edited - 1
    assert (report["broken"]["id"], report["broken"]["account"]) == (edited, ACME)
    assert report["broken"]["problem"] == "changed"


def as_json_of(result: Result) -> Any:
    """The JSON a command printed, whatever its exit code."""
    import json

    return json.loads(result.stdout)


def test_a_row_whose_hash_is_rewritten_too_is_named(cli: Cli, engine: Engine) -> None:
    """Recomputing the hash of an edited row does not help: the row after it no longer follows."""
    busy_week(cli)
    ids = history_ids(engine, GLOBEX)
    tamper(
        engine,
        "UPDATE history SET hash = (SELECT hash FROM history WHERE id = :other) WHERE id = :id",
        id=ids[0],
        other=ids[1],
    )

    assert f"history broken at row {ids[0]} (account 'Globex'" in broken(cli("history", "verify"))


def test_a_deleted_row_is_found_at_the_row_after_it(cli: Cli, engine: Engine) -> None:
    busy_week(cli)
    removed = history_ids(engine, ACME)[1]

    tamper(engine, "DELETE FROM history WHERE id = :id", id=removed)

    line = broken(cli("history", "verify"))
    assert line.startswith(f"Error: history broken at row {removed + 1} (account ")
    assert line.endswith(f"a row before it is missing (the one before is row {removed - 1})")


def test_an_account_named_verify_is_still_reachable_by_its_id(cli: Cli) -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("account", "add", "verify", "--owner", OWNER))

    assert ok(cli("history", "verify")) == "history intact: 1 row\n"
    assert [row["kind"] for row in as_json(cli("history", "1", "--json"))] == ["created"]


def test_history_written_in_a_part_of_a_transaction_that_is_undone_leaves_no_gap_in_the_chain(
    cli: Cli, engine: Engine, clock: FixedClock
) -> None:
    """A savepoint rolled back takes its history rows with it; what the transaction writes after
    it chains from the rows that stay."""
    from kamflow.models import HistoryKind
    from kamflow.records import history
    from kamflow.records.accounts import find_account

    ok(cli("person", "add", OWNER))
    ok(cli("account", "add", ACME, "--owner", OWNER))
    with db.session_scope(engine) as session:
        account = find_account(session, ACME)
        savepoint = session.begin_nested()
        history.record(session, account, actor=OWNER, at=clock.now(), kind=HistoryKind.ANSWER)
        savepoint.rollback()
        history.record(session, account, actor=OWNER, at=clock.now(), kind=HistoryKind.ACTION)

    assert ok(cli("history", "verify")) == "history intact: 2 rows\n"


def test_verify_only_reads_it_does_not_wait_for_a_writer(
    cli: Cli, engine: Engine, clock: FixedClock
) -> None:
    """A transaction in the middle of extending the chain (holding SQLite's write lock, or the
    chain's lock on PostgreSQL) does not hold verification up; its row is not counted yet."""
    from kamflow.models import HistoryKind
    from kamflow.records import history
    from kamflow.records.accounts import find_account

    ok(cli("person", "add", OWNER))
    ok(cli("account", "add", ACME, "--owner", OWNER))
    with db.session_scope(engine) as session:
        account = find_account(session, ACME)
        history.record(session, account, actor=OWNER, at=clock.now(), kind=HistoryKind.ANSWER)

        assert ok(cli("history", "verify")) == "history intact: 1 row\n"

    assert ok(cli("history", "verify")) == "history intact: 2 rows\n"


def test_the_migration_chains_the_rows_written_before_it(
    database_url: str, clock: FixedClock
) -> None:
    from alembic import command

    engine = db.engine_for(database_url)
    with engine.begin() as connection:
        command.upgrade(db._alembic_config(connection), "0005")
        connection.execute(
            sa.text(
                "INSERT INTO person (id, email, name, is_leader, created_at) "
                "VALUES (1, 'owner@example.com', 'Kim', false, '2027-01-04 09:00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO account (id, name, owner_id, workflow, kind, stage, "
                "stage_entered_at, version, created_at) VALUES (1, 'Acme Corp', 1, 'kam', "
                "'existing', 'strategy', '2027-01-04 09:00:00', 1, '2027-01-04 09:00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO history (account_id, at, actor, kind, transition, from_stage, "
                "to_stage, note, verdicts) VALUES (1, :at, 'owner@example.com', :kind, NULL, "
                "NULL, :to, :note, '[]')"
            ),
            [
                {"at": "2027-01-04 09:00:00", "kind": "created", "to": "strategy", "note": ""},
                {"at": "2027-01-04 09:30:00.250000", "kind": "answer", "to": None, "note": "Hello"},
                {"at": "2027-01-05 10:00:00", "kind": "answer", "to": None, "note": ""},
            ],
        )

    cli = cli_on(database_url, clock, init=False)  # the first command upgrades the schema

    assert ok(cli("history", "verify")) == "history intact: 3 rows\n"
    ok(cli("snooze", ACME, "--days", "3", "--reason", "On leave"))
    assert ok(cli("history", "verify")) == "history intact: 4 rows\n"
    with engine.connect() as connection:
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
        assert revision.scalar_one() == db.SCHEMA_HEAD
    # The append-only triggers are back.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(sa.text("UPDATE history SET note = 'x' WHERE id = 1"))


def test_concurrent_writers_keep_one_chain(postgres_url: str, clock: FixedClock) -> None:
    """Two threads write history at once, each on its own accounts: every row follows one other
    row, whichever transaction wrote it."""
    cli = cli_on(postgres_url, clock)
    ok(cli("person", "add", OWNER))
    names = [f"Account {n}" for n in range(4)]
    for name in names:
        ok(cli("account", "add", name, "--owner", OWNER))
    engine = db.engine_for(postgres_url)
    questions = [question.id for question in BANK.questions][:5]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(mine: list[str]) -> None:
        try:
            start.wait(timeout=30)
            for question in questions:
                for name in mine:
                    with db.session_scope(engine) as session:
                        plan.answer_question(
                            session, name, question, "An answer", actor=OWNER, now=clock.now()
                        )
        except BaseException as error:  # reported to the test's thread
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(names[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    rows = len(names) + len(names) * len(questions)
    assert ok(cli("history", "verify")) == f"history intact: {rows} rows\n"


def test_swaps_racing_new_accounts_neither_deadlock_nor_fork_the_chain(
    postgres_url: str, clock: FixedClock
) -> None:
    """A swap writes history before it counts the cap; adding an account counts the cap before it
    writes history: both take the two locks in one order, so neither waits for the other for
    ever (PostgreSQL would end one with "deadlock detected")."""
    from kamflow.engine import add_account, swap

    cli = cli_on(postgres_url, clock)
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", DOER))
    ok(cli("person", "add", LEADER, "--leader"))
    rounds = 5
    for n in range(rounds):
        ok(cli("account", "add", f"Key {n}", "--owner", OWNER))
        ok(cli("account", "add", f"Candidate {n}", "--owner", OWNER, "--candidate"))
        ok(cli("account", "score", f"Candidate {n}", *SCORED))
    engine = db.engine_for(postgres_url)
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def swapper() -> None:
        try:
            start.wait(timeout=30)
            for n in range(rounds):
                with db.session_scope(engine) as session:
                    swap(session, f"Key {n}", f"Candidate {n}", actor=LEADER, now=clock.now())
        except BaseException as error:  # reported to the test's thread
            failures.append(error)

    def adder() -> None:
        try:
            start.wait(timeout=30)
            for n in range(rounds):
                with db.session_scope(engine) as session:
                    add_account(session, f"New {n}", owner=DOER, actor=LEADER, now=clock.now())
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=swapper), threading.Thread(target=adder)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert ok(cli("history", "verify")).startswith("history intact: ")
