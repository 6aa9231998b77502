"""Shared fixtures: every database test runs on a real SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import kamflow.models  # noqa: F401  (the tables snapshot() reads)
from kamflow import db
from kamflow.cli import app
from kamflow.clock import FixedClock

#: The PostgreSQL server the suite uses; .ci/run makes sure it is up.
PG_URL = os.environ.get("KAMFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: In CI a missing PostgreSQL is a failure, not a skip.
REQUIRE_PG = bool(os.environ.get("CI") or os.environ.get("KAMFLOW_REQUIRE_PG"))
#: When the tests' story starts: a Monday morning.
START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:
        return str(error).splitlines()[0]
    return None


_PG_PROBLEM: str | bool | None = False  # False: not probed yet


def _require_postgres() -> None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _postgres_available()
    if _PG_PROBLEM:
        message = f"PostgreSQL not reachable at {PG_URL}: {_PG_PROBLEM}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'kamflow.db'}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new schema of its own, dropped afterwards."""
    schema = f"kf_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        dispose(url)
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema of its own, dropped afterwards."""
    _require_postgres()
    with fresh_schema() as url:
        yield url


def dispose(url: str) -> None:
    """Close the cached engine of ``url`` so its connections do not outlive the test."""
    db.engine_for(url).dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: a SQLite file, then a PostgreSQL schema."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Engine:
    return db.ready_engine(database_url)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium for the checks of HTML pages in a real browser (tests/browser.py)."""
    from tests.browser import find_chromium

    return find_chromium()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


Runner = Callable[..., Any]


@pytest.fixture
def run(engine: Engine, clock: FixedClock) -> Runner:
    """Call a core function in one transaction as ``actor``, at the clock's time."""

    def call(
        function: Callable[..., Any], *args: Any, actor: str = "owner@example.com", **kw: Any
    ) -> Any:
        with db.session_scope(engine) as session:
            return function(session, *args, actor=actor, now=clock.now(), **kw)

    return call


#: Runs one kamflow command line in-process and returns click's Result.
Cli = Callable[..., Result]


def cli_on(url: str, clock: FixedClock, *, init: bool = True) -> Cli:
    """The CLI on the database at ``url``, at the clock's time, as ``actor`` (default the owner);
    with ``init``, `kamflow init` has made the database first (only init creates one)."""
    runner = CliRunner()

    def invoke(
        *args: str, actor: str = "owner@example.com", env: dict[str, str] | None = None
    ) -> Result:
        environment = {"KAMFLOW_NOW": clock.now().isoformat(), "KAMFLOW_USER": actor, **(env or {})}
        return runner.invoke(app, ["--db", url, *args], env=environment, catch_exceptions=False)

    if init:
        ok(invoke("init"))
    return invoke


@pytest.fixture
def cli(database_url: str, clock: FixedClock) -> Cli:
    """Run the kamflow CLI in-process on the test database (made by `kamflow init`), at the
    clock's time."""
    return cli_on(database_url, clock)


@pytest.fixture
def new_cli(database_url: str, clock: FixedClock) -> Cli:
    """Like ``cli``, on a database that `kamflow init` has not made yet: no SQLite file, an
    empty PostgreSQL schema."""
    return cli_on(database_url, clock, init=False)


def ok(result: Result) -> str:
    """The output of a command that must succeed."""
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.stderr}"
    assert "Traceback" not in result.output + result.stderr
    return result.output


def refused(result: Result, code: int) -> str:
    """The stderr of a command that must fail with ``code``, starting with an `Error:` line."""
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.stderr}"
    assert "Traceback" not in result.output + result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    return result.stderr


def failed(result: Result, code: int = 1) -> str:
    """The one `Error:` line of a command that must fail with ``code``."""
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.stderr}"
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    return lines[0]


def as_json(result: Result) -> Any:
    """The JSON a command that must succeed printed."""
    return json.loads(ok(result))


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every kamflow table, to prove that a refused command changed nothing."""
    with engine.connect() as connection:
        return {
            table.name: sorted(map(tuple, connection.execute(table.select()).all()), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


def backend_pid(session: Any) -> int:
    """The PostgreSQL server process that serves ``session``'s connection."""
    return int(session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def wait_for_a_waiter(engine: Engine, holder: int, *, timeout: float = 20.0) -> None:
    """Return once another PostgreSQL session waits for a lock that the backend ``holder`` holds;
    fail the test if none does within ``timeout`` seconds."""
    blocked = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"
    )
    deadline = time.monotonic() + timeout
    while True:
        # A connection each time: PostgreSQL shows one transaction a snapshot of the activity.
        with engine.connect() as connection:
            if connection.execute(blocked, {"holder": holder}).scalar_one():
                return
        assert time.monotonic() < deadline, "nobody waited for the lock"
        time.sleep(0.01)
