"""The schema: the shipped migrations build what the models describe; a ready database costs one
query to recognise; a database newer than this kamflow is refused in one line."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from kamflow import db
from kamflow.errors import DatabaseError
from tests.conftest import Cli, refused


def test_the_schema_head_kamflow_expects_is_the_migrations_head() -> None:
    with db.engine_for("sqlite://").connect() as connection:
        scripts = ScriptDirectory.from_config(db._alembic_config(connection))
    assert scripts.get_current_head() == db.SCHEMA_HEAD


# The name index is on lower(name): SQLite's reflection cannot compare an expression index.
@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:.*expression-based index:sqlalchemy.exc.SAWarning")
def test_the_migrations_build_exactly_the_tables_and_indexes_of_the_models(
    database_url: str,
) -> None:
    engine = db.ready_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_a_ready_database_is_recognised_with_one_query(database_url: str) -> None:
    db.ready_engine(database_url)  # created and migrated
    engine = db.engine_for(database_url)
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).strip().lower())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        db.ready_engine.__wrapped__(database_url)  # not the per-process cache: the check itself
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    queries = [sql for sql in seen if sql.split()[0] not in ("begin", "commit", "rollback")]
    assert queries == ["select version_num from alembic_version"]


def test_a_database_newer_than_this_kamflow_is_refused_in_one_line(
    database_url: str, cli: Cli
) -> None:
    engine = db.ready_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    db.ready_engine.cache_clear()

    error = refused(cli("account", "list"), 1)

    assert "newer than this kamflow knows" in error
    assert len(error.strip().splitlines()) == 1
    with pytest.raises(DatabaseError):
        db.ready_engine(database_url)


def test_the_kinds_the_command_line_offers_are_the_kinds_an_account_can_have() -> None:
    """The CLI names them without importing the models (which would slow `kamflow --help`)."""
    from kamflow import defaults
    from kamflow.models import AccountKind

    assert tuple(kind.value for kind in AccountKind) == defaults.ACCOUNT_KINDS


def test_a_populated_database_of_the_previous_schema_upgrades_keeping_its_rows(
    database_url: str,
) -> None:
    """People are pointed to by accounts: the upgrade must not rebuild their table."""
    from alembic import command

    engine = db.engine_for(database_url)
    with engine.begin() as connection:
        command.upgrade(db._alembic_config(connection), "0004")
        connection.execute(
            sa.text(
                "INSERT INTO person (id, email, name, is_leader, created_at) "
                "VALUES (1, 'kam@example.com', 'Kim', false, '2027-01-04 09:00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO account (id, name, owner_id, workflow, kind, stage, "
                "stage_entered_at, version, created_at) VALUES (1, 'Acme', 1, 'kam', 'existing', "
                "'strategy', '2027-01-04 09:00:00', 1, '2027-01-04 09:00:00')"
            )
        )

    before, after = db.upgrade(engine)

    assert (before, after) == ("0004", db.SCHEMA_HEAD)
    with engine.connect() as connection:
        people = connection.execute(sa.text("SELECT email, active FROM person")).all()
        accounts = connection.execute(sa.text("SELECT name, owner_id FROM account")).all()
    assert [(email, bool(active)) for email, active in people] == [("kam@example.com", True)]
    assert [tuple(row) for row in accounts] == [("Acme", 1)]


def test_postgresql_connections_do_not_jit_compile_kamflow_queries(postgres_url: str) -> None:
    """JIT compiling took 0.28 s for the steady tick's 1 ms stall query: kamflow turns it off for
    each connection, and it stays off after a transaction is rolled back."""
    engine = db.ready_engine(postgres_url)
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
        connection.rollback()
        assert connection.execute(sa.text("SHOW jit")).scalar() == "off"
