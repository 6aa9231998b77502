"""Engines, sessions and the schema: SQLite tuned for several writers; PostgreSQL via psycopg."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from kamflow import defaults
from kamflow.errors import Conflict, DatabaseError, NotAllowed
from kamflow.files import create_private_file
from kamflow.text import quoted

T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The execution option that marks a connection as only reading (see read_scope).
READ_ONLY = "kamflow_read_only"


def normalise_url(url: str) -> str:
    """Let users write postgresql:// and get the psycopg 3 driver kamflow ships with."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _tune_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        """Turn PostgreSQL's JIT compiler off for kamflow's connections."""
        # kamflow's queries are short, indexed look-ups and anti-joins whose estimated cost can
        # still pass jit_above_cost: compiling them took 0.28 s for a 1 ms query (the steady
        # tick at 100,000 accounts). Set once per connection and committed, so that it outlives
        # the first transaction.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        dbapi_connection.commit()


def _tune_sqlite(engine: Engine) -> None:
    file = _sqlite_file(engine)
    if file is not None:

        @event.listens_for(engine, "do_connect")
        def before_connect(*_args: Any) -> None:
            """Create the database file private (0600) before SQLite would create it 0644."""
            # It holds names and email addresses. SQLite gives its -wal and -shm files the mode
            # of the database file, so they follow. A file that is there already is left alone;
            # one that cannot be made here is left to SQLite, whose error names the problem.
            with contextlib.suppress(OSError):
                create_private_file(file)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        """Set up each new SQLite connection: WAL journal, busy timeout, foreign keys."""
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
        """Begin each transaction: with the write lock (BEGIN IMMEDIATE), or without it in a read
        scope."""
        # A deferred transaction that reads and then writes fails at once with
        # "database is locked"; taking the write lock up front makes writers queue. A scan that
        # only reads (read_scope) takes no lock: in WAL mode it reads a snapshot beside writers.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def dialect_insert(session: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL)."""
    from sqlalchemy.dialects import postgresql, sqlite

    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


@functools.cache
def engine_for(url: str) -> Engine:
    """The engine for ``url`` (one per process), with kamflow's settings applied."""
    url = normalise_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except (exc.ArgumentError, ValueError):
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
        raise DatabaseError(
            f"{quoted(shown)} is not a database URL (e.g. sqlite:///kamflow.db)"
        ) from None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(
                parsed, connect_args={"timeout": defaults.SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            _tune_sqlite(engine)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True)
            _tune_postgresql(engine)
    except (exc.NoSuchModuleError, ImportError) as error:
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseError(f"cannot use database {quoted(shown)}: {error}") from None
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
    from alembic.util import CommandError

    with _database_errors(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        scripts = ScriptDirectory.from_config(_alembic_config(connection))
        head = scripts.get_current_head()
        if current is not None:
            try:
                scripts.get_revision(current)
            except CommandError:
                raise DatabaseError(
                    f"the database {_safe(engine)} has schema {current}, newer than this kamflow "
                    f"knows (up to {head}): upgrade kamflow"
                ) from None
    return current, head


@contextmanager
def _database_errors(engine: Engine) -> Iterator[None]:
    """Driver errors while opening or migrating, as one line naming the database."""
    try:
        yield
    except exc.DBAPIError as error:
        raise DatabaseError(
            f"cannot open database {quoted(_safe(engine))}: {_reason(error)}"
        ) from None


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Run the shipped migrations up to the newest; return the revisions before and after."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    schema_revisions(engine)  # refuses a schema newer than this kamflow
    with _database_errors(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two first uses at once must not both create the tables.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(_alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_revision()
    return before, after


#: The newest schema revision this kamflow ships (a test holds it to the migrations' head).
SCHEMA_HEAD = "0008"


def stored_revision(engine: Engine) -> str | None:
    """The database's schema revision, read with one query (None for a database without one)."""
    with _database_errors(engine), engine.connect() as connection:
        try:
            with connection.begin():
                found = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
                return found.scalar()
        except (exc.OperationalError, exc.ProgrammingError):  # no table yet: a new database
            return None


def initialise(url: str) -> tuple[str, str | None, str | None]:
    """Create the database at ``url`` or upgrade it, and on PostgreSQL grant kamflow's group
    roles what they need (kamflow.grants): its URL (password hidden), and the schema revisions
    before and after."""
    engine = engine_for(url)
    before, after = upgrade(engine)
    if engine.dialect.name == "postgresql":
        from kamflow.grants import grant

        with _database_errors(engine):
            grant(engine)
    return _safe(engine), before, after


@functools.cache
def ready_engine(url: str) -> Engine:
    """The engine for ``url`` with the schema at the newest revision, creating the database when
    there is none (as `kamflow init` does; for tests and tools that build a database): one query
    when it is ready already, the shipped migrations when it is not."""
    engine = engine_for(url)
    if stored_revision(engine) != SCHEMA_HEAD:
        upgrade(engine)  # refuses a schema newer than this kamflow knows
    return engine


@functools.cache
def existing_engine(url: str) -> Engine:
    """The engine for the kamflow database at ``url``, what every command but init works on: one
    query when its schema is the newest, the shipped migrations when it is older (after an
    upgrade of kamflow). A DatabaseError when there is no kamflow database there; it is never
    created here, so that a mistyped URL does not leave an empty database behind."""
    engine = engine_for(url)
    file = _sqlite_file(engine)
    # Connecting would create the file: look for it first.
    if file is not None and not _exists(file):
        raise _no_database(str(file))
    revision = stored_revision(engine)
    if revision is None:  # an empty file or schema, or someone else's tables
        raise _no_database(str(file) if file is not None else _safe(engine))
    if revision != SCHEMA_HEAD:
        upgrade(engine)  # refuses a schema newer than this kamflow knows
    return engine


def _sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database, or None for another database, one in memory, or a file
    given as a ``file:`` URI."""
    name = engine.url.database
    if engine.dialect.name != "sqlite" or not name or name == ":memory:":
        return None
    if engine.url.query.get("uri"):
        return None
    return Path(name)


def _exists(file: Path) -> bool:
    try:
        return file.exists()
    except OSError:  # e.g. a name too long to be a file
        return False


def _no_database(where: str) -> DatabaseError:
    return DatabaseError(
        f"no kamflow database at {quoted(where)} (run `kamflow init` to create one)"
    )


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
    except exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            raise _refused_by_grants(engine, error) from None
        raise DatabaseError(f"database error on {_safe(engine)}: {_reason(error)}") from None


#: PostgreSQL's SQLSTATE for a privilege the login lacks.
_INSUFFICIENT_PRIVILEGE = "42501"


def _refused_by_grants(engine: Engine, error: exc.DBAPIError) -> NotAllowed:
    """The database's own grants refused a change (kamflow.grants): say which group role the
    login needs."""
    from kamflow.grants import ADMINS, USERS

    login = engine.url.username or "this login"
    return NotAllowed(
        f"the database refuses it ({_reason(error)}): {login} needs the role {USERS}, or "
        f"{ADMINS} to change people (GRANT {ADMINS} TO {login})"
    )


@contextmanager
def read_scope(engine: Engine, *, snapshot: bool = False) -> Iterator[Connection]:
    """A connection in a transaction that only reads, for scans that stream large results.

    It holds no write lock on SQLite, so the batches a scan finds can be written meanwhile, each
    in a transaction of its own (session_scope), through another connection. With ``snapshot``,
    every statement of the transaction sees the database as the first one did (SQLite's read
    transactions always do; PostgreSQL needs REPEATABLE READ), so that counts and widths taken
    first agree with the rows listed after them.
    """
    options: dict[str, Any] = {READ_ONLY: True}
    if snapshot and engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    try:
        with engine.connect() as connection:
            reading = connection.execution_options(**options)
            with reading.begin():
                yield reading
    except exc.DBAPIError as error:
        raise DatabaseError(f"database error on {_safe(engine)}: {_reason(error)}") from None


def stream(
    connection: Connection, statement: Any, size: int, params: dict[str, Any] | None = None
) -> Iterator[list[Any]]:
    """The rows of ``statement`` (with ``params`` bound) in lists of at most ``size``, fetched
    as they are needed."""
    # Per statement: Connection.execution_options() would stream every later query too.
    result = connection.execute(statement, params or {}, execution_options={"yield_per": size})
    for partition in result.partitions(size):
        yield list(partition)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reason(error: exc.DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig else str(error)
