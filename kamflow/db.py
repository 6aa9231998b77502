"""Engines, sessions and the schema: SQLite tuned for several writers; PostgreSQL via psycopg."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from kamflow import defaults
from kamflow.errors import Conflict, DatabaseError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """Let users write postgresql:// and get the psycopg 3 driver kamflow ships with."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={defaults.SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with
        # "database is locked"; taking the write lock up front makes writers queue.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@functools.cache
def engine_for(url: str) -> Engine:
    """The engine for ``url`` (one per process), with kamflow's settings applied."""
    url = normalise_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except exc.ArgumentError:
        raise DatabaseError(f"{url!r} is not a database URL (e.g. sqlite:///kamflow.db)") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(
                parsed, connect_args={"timeout": defaults.SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            _tune_sqlite(engine)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
    except (exc.NoSuchModuleError, ImportError) as error:
        raise DatabaseError(f"cannot use database {parsed!r}: {error}") from None
    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """The database's current schema revision and the newest one this kamflow ships."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(_alembic_config(connection)).get_current_head()
    return current, head


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Run the shipped migrations up to the newest; return the revisions before and after."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Two first uses at once must not both create the tables.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
            before = MigrationContext.configure(connection).get_current_revision()
            command.upgrade(_alembic_config(connection), "head")
            after = MigrationContext.configure(connection).get_current_revision()
    except exc.OperationalError as error:
        raise DatabaseError(f"cannot open database {_safe(engine)}: {_reason(error)}") from None
    return before, after


@functools.cache
def ready_engine(url: str) -> Engine:
    """The engine for ``url`` with the schema at the newest revision (upgraded on first use)."""
    engine = engine_for(url)
    try:
        current, head = schema_revisions(engine)
    except exc.OperationalError as error:
        raise DatabaseError(f"cannot open database {_safe(engine)}: {_reason(error)}") from None
    if current != head:
        upgrade(engine)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except exc.IntegrityError as error:
        # Two writers raced to create the same thing; the checks before the insert passed for both.
        raise Conflict(
            f"the change collides with one made meanwhile; nothing was written ({_reason(error)})"
        ) from None
    except exc.OperationalError as error:
        raise DatabaseError(f"database error on {_safe(engine)}: {_reason(error)}") from None


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reason(error: exc.DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)
