"""Outages: the database or the mail server goes away under a running daemon, and comes back.

A TCP proxy in front of PostgreSQL lets a test cut every connection and refuse new ones, then
restore it; the daemon runs as a real process or as a `Daemon` object with a fixed clock; mail goes
to aiosmtpd on 127.0.0.1. Nothing sleeps for simulated time: the clock is injected (FixedClock or
KAMFLOW_NOW), and the tests wait only for real processes to react.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from kamflow import db, defaults
from kamflow.clock import FixedClock
from kamflow.config import MailSettings, Schedule
from kamflow.daemon import Daemon
from kamflow.engine import add_account
from kamflow.models import Account, MessageKind, Notification
from kamflow.notify.message import bodies, message_id
from kamflow.notify.transports import SmtpSettings, SmtpTransport
from kamflow.records import people
from kamflow.steps.delivery import DeliveryReport, deliver
from tests.account_steps import OWNER
from tests.conftest import PG_URL, START, _require_postgres
from tests.test_daemon import (
    SENDER,
    Inbox,
    eml_files,
    free_port,
    log_of,
    start_daemon,
    stop,
    wait_for,
)
from tests.test_mail import draft, put

T = TypeVar("T")
#: One line of the daemon's log (its format: %(asctime)s %(name)s %(levelname)s %(message)s).
LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [\w.]+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S.*"
)
#: The daemon's steps, as they name themselves in the log.
QUEUING_STEPS = ("stalls", "actions", "owner digests", "leader digests")
STEPS = (*QUEUING_STEPS, "delivery")
NAMES = "|".join(STEPS)
FAILED = re.compile(rf"kamflow\.daemon ERROR step (?P<step>{NAMES}) failed: (?P<why>\S.*)$")
SUCCEEDED = re.compile(
    rf"kamflow\.daemon INFO (?P<step>{NAMES}): (examined \d+, queued \d+|claimed \d+, sent \d+.*)$"
)


# --- a proxy in front of PostgreSQL that the test can cut -----------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1 (a port of its own) to PostgreSQL, which can be cut: every open
    connection is reset and new ones are refused (nobody listens) until it is restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def start(self) -> Proxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        if self.thread.is_alive():
            self._call(self._shut_down())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        self.loop.close()

    def url(self, database_url: str) -> str:
        """``database_url`` (its database, user and query: the schema) through the proxy."""
        parsed = sa.engine.make_url(database_url)
        return parsed.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=10)

    async def _listen(self) -> None:
        # asyncio sets SO_REUSEADDR: the port is bound again at once after a cut.
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()  # stop listening: new connections are refused
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()  # reset, as a dead network or server would
        self.writers.clear()

    async def _shut_down(self) -> None:
        await self._cut()
        pumping = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pumping:
            task.cancel()
        await asyncio.gather(*pumping, return_exceptions=True)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        if self.server is None:  # cut while this connection was being set up
            client.transport.abort()
            upstream.transport.abort()
            return
        self.writers |= {client, upstream}
        await asyncio.gather(
            self._pump(client_reader, upstream), self._pump(upstream_reader, client)
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            writer.transport.abort()
            self.writers.discard(writer)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """aiosmtpd on 127.0.0.1 keeping what it receives (as tests/test_daemon.py's fixture)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    """A proxy to the suite's PostgreSQL (skipped locally, failed in CI, when there is none)."""
    _require_postgres()
    target = sa.engine.make_url(PG_URL)
    running = Proxy(target.host or "127.0.0.1", target.port or 5432).start()
    try:
        yield running
    finally:
        running.close()


# --- the daemon as a real process through a database outage ---------------------------------------

#: Monday 2027-01-18 09:00 UTC: accounts that entered Strategy at START are at its 14-day limit.
LIMIT = timedelta(days=14)  # Strategy's limit in workflows/kam.yaml
AT_LIMIT = START + LIMIT


def test_a_database_outage_is_one_log_line_per_failed_step_and_the_daemon_recovers(
    postgres_url: str, proxy: Proxy, tmp_path: Path, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    direct = db.ready_engine(postgres_url)  # the test's own way in, never through the proxy
    with db.session_scope(direct) as session:
        people.add_person(session, OWNER, now=START)
    for name in ("Acme Corp", "Globex"):
        with db.session_scope(direct) as session:
            add_account(session, name, owner=OWNER, actor=OWNER, now=START)
    daemon = start_daemon(proxy.url(postgres_url), tmp_path, port, AT_LIMIT, "daemon")

    def log() -> str:
        return log_of(tmp_path, "daemon")

    def failures() -> dict[str, int]:
        found = {step: 0 for step in STEPS}
        for line in log().splitlines():
            if match := FAILED.search(line):
                found[match["step"]] += 1
        return found

    def after_last_failure() -> set[str]:
        lines = log().splitlines()
        last = max(i for i, line in enumerate(lines) if FAILED.search(line))
        return {m["step"] for line in lines[last:] if (m := SUCCEEDED.search(line))}

    late = "Initech has been in Strategy for 14 days"
    try:
        wait_for(lambda: len(inbox.received()) == 2, "the two reminders")
        wait_for(lambda: "sent 2" in log(), "the delivery to be logged")
        proxy.cut()
        wait_for(lambda: min(failures().values()) >= 3, "every step to fail a few times")
        proxy.restore()
        # Something new, written straight to PostgreSQL: the daemon must find it and send it.
        with db.session_scope(direct) as session:
            add_account(session, "Initech", owner=OWNER, actor=OWNER, now=AT_LIMIT - LIMIT)
        wait_for(
            lambda: late in [message["Subject"] for message in inbox.received()],
            "the reminder queued after the outage to arrive",
        )
        wait_for(lambda: after_last_failure() == set(STEPS), "every step to succeed again")
        code, _ = stop(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    text = log()
    assert code == 0, text
    assert "Traceback" not in text
    lines = text.splitlines()
    # Every line is one whole log line: nothing continues on the next (no traceback, no pool
    # noise, no multi-line driver message).
    assert [line for line in lines if not LOG_LINE.fullmatch(line)] == [], text
    failed = [(i, m) for i, line in enumerate(lines) if (m := FAILED.search(line))]
    first, last = failed[0][0], failed[-1][0]
    # The outage is nothing but the failures of the steps (a step that finished just before the
    # cut may still log its success among them; APScheduler may say a run was late): one line
    # each, naming the step and the reason.
    for line in lines[first : last + 1]:
        assert FAILED.search(line) or SUCCEEDED.search(line) or " apscheduler." in line, line
    for _, match in failed:
        assert "database error on" in match["why"], match.string
        assert f"127.0.0.1:{proxy.port}" in match["why"], match.string
    assert {match["step"] for _, match in failed} == set(STEPS)
    # The queuing steps run in the table's order, one line each per run, failed or not: a step
    # that logged its failure twice (or not at all) would break the rhythm.
    queuing = [
        m["step"]
        for line in lines
        if (m := FAILED.search(line) or SUCCEEDED.search(line)) and m["step"] != "delivery"
    ]
    assert queuing == [QUEUING_STEPS[i % 4] for i in range(len(queuing))], queuing
    # Nothing was sent twice, and the reminder queued after the outage arrived once.
    subjects = sorted(message["Subject"] for message in inbox.received())
    assert subjects == sorted(
        [
            late,
            "Acme Corp has been in Strategy for 14 days",
            "Globex has been in Strategy for 14 days",
        ]
    )


# --- digests whose moment passes while the database is away ---------------------------------------

CALM_OWNER = "calm@example.com"
LEADERS = ("boss@example.com", "chief@example.com")
#: Acme Corp reaches Strategy's limit on Sunday 01-17 09:00 (reminded then), Globex on Monday
#: 01-18 07:00 (reminded at 07:50, so left out of that day's digest); Initech is on track.
TEAM = (
    ("Acme Corp", OWNER, datetime(2027, 1, 3, 9, 0, tzinfo=UTC)),
    ("Globex", OWNER, datetime(2027, 1, 4, 7, 0, tzinfo=UTC)),
    ("Initech", CALM_OWNER, datetime(2027, 1, 14, 9, 0, tzinfo=UTC)),
)
MONDAY = datetime(2027, 1, 18, tzinfo=UTC)  # ISO week 2027-W03


def on_monday(hour: int, minute: int, *, days: int = 0) -> datetime:
    return MONDAY + timedelta(days=days, hours=hour, minutes=minute)


def digest_team(engine: Engine) -> None:
    hired = datetime(2027, 1, 1, tzinfo=UTC)
    with db.session_scope(engine) as session:
        for email in (OWNER, CALM_OWNER):
            people.add_person(session, email, now=hired)
        for email in LEADERS:
            people.add_person(session, email, leader=True, now=hired)
    for name, owner, entered in TEAM:
        with db.session_scope(engine) as session:
            add_account(session, name, owner=owner, actor=owner, now=entered)


def queued(engine: Engine, *kinds: MessageKind) -> list[tuple[str, str, str | None]]:
    """(kind, recipients, period) of the outbox rows of ``kinds``, in the order queued."""
    wanted = [kind.value for kind in kinds]
    with db.session_scope(engine) as session:
        rows = session.exec(
            select(Notification)
            .where(col(Notification.kind).in_(wanted))
            .order_by(col(Notification.id))
        ).all()
        return [(row.kind, row.recipients, row.period) for row in rows]


def digest_rows(engine: Engine) -> list[Notification]:
    with db.session_scope(engine) as session:
        return list(
            session.exec(
                select(Notification)
                .where(col(Notification.kind).in_([OWNER_DIGEST, LEADER_DIGEST]))
                .order_by(col(Notification.id))
            ).all()
        )


OWNER_DIGEST = MessageKind.OWNER_DIGEST.value
LEADER_DIGEST = MessageKind.LEADER_DIGEST.value
DIGESTS = (MessageKind.OWNER_DIGEST, MessageKind.LEADER_DIGEST)
#: What Monday 08:00 owes: Acme's owner a daily digest (the calm owner needs none), each leader
#: the weekly one.
MONDAY_DIGESTS = [
    (OWNER_DIGEST, OWNER, "2027-01-18"),
    *((LEADER_DIGEST, leader, "2027-W03") for leader in LEADERS),
]


def daemon_until_monday_morning(engine: Engine, clock: FixedClock, folder: Path) -> Daemon:
    """The team's daemon: run on Sunday at 09:00 and on Monday at 07:50, before the digests."""
    mail = MailSettings.load({"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(folder)})
    daemon = Daemon(engine, clock, Schedule.load({}), mail)  # digests 08:00, leaders mon 08:00
    clock.set(on_monday(9, 0, days=-1))
    daemon.run_step("queue")
    assert queued(engine, MessageKind.REMINDER) == [("reminder", OWNER, None)]  # Acme Corp
    # Last week's leader digest (its Monday was before the daemon's first run); no owner
    # digest on Sunday: Acme's owner was reminded of it that day.
    assert queued(engine, *DIGESTS) == [(LEADER_DIGEST, leader, "2027-W02") for leader in LEADERS]

    clock.set(on_monday(7, 50))
    daemon.run_step("queue")
    assert queued(engine, MessageKind.REMINDER) == [("reminder", OWNER, None)] * 2  # Globex
    assert len(queued(engine, *DIGESTS)) == 2  # nothing new: 08:00 has not come
    return daemon


def assert_monday_digests(engine: Engine, before: int) -> None:
    """Monday's digests were queued once each, and say what they should."""
    rows = digest_rows(engine)[before:]
    assert [(row.kind, row.recipients, row.period) for row in rows] == MONDAY_DIGESTS
    owner_digest, *leader_digests = rows
    assert owner_digest.subject == "Daily digest for 2027-01-18: 1 account needs you"
    text = bodies(owner_digest)[0]
    assert "Acme Corp" in text
    assert "Globex" not in text  # reminded at 07:50 that day
    assert "Initech" not in text
    for row in leader_digests:
        assert row.subject == "Weekly portfolio digest 2027-W03: 0 stuck, 2 behind"
        assert "Acme Corp" in bodies(row)[0] and "Globex" in bodies(row)[0]


def test_a_digest_whose_moment_passes_during_a_database_outage_is_sent_once_when_it_is_back(
    postgres_url: str,
    proxy: Proxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAMFLOW_DEBUG", raising=False)
    caplog.set_level(logging.INFO, logger="kamflow")
    direct = db.ready_engine(postgres_url)  # the test's own way in, never through the proxy
    digest_team(direct)
    through = db.engine_for(proxy.url(postgres_url))
    clock = FixedClock(MONDAY)
    folder = tmp_path / "mail"
    try:
        daemon = daemon_until_monday_morning(through, clock, folder)
        before = len(digest_rows(direct))

        proxy.cut()
        clock.set(on_monday(8, 0))
        caplog.clear()
        daemon.run_step("queue")  # the digests' moment: the database is away

        errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage().split(" failed: ")[0] for r in errors] == [
            f"step {step}" for step in QUEUING_STEPS
        ]
        for record in errors:
            assert "database error on" in record.getMessage()
            assert "\n" not in record.getMessage()
            assert record.exc_info is None
        assert "Traceback" not in caplog.text
        assert len(digest_rows(direct)) == before

        proxy.restore()
        clock.set(on_monday(8, 5))
        daemon.run_step("queue")
        assert_monday_digests(direct, before)
        daemon.run_step("delivery")

        for moment in (on_monday(8, 10), on_monday(17, 0), on_monday(7, 59, days=1)):
            clock.set(moment)
            daemon.run_step("queue")
            daemon.run_step("delivery")
            assert len(digest_rows(direct)) == before + 3, moment
        sent = [m for m in eml_files(folder) if m["X-Kamflow-Kind"] == OWNER_DIGEST]
        assert [m["Subject"] for m in sent] == ["Daily digest for 2027-01-18: 1 account needs you"]

        # Tuesday 08:00: the owner's next digest, Globex included now; no leader digest.
        clock.set(on_monday(8, 0, days=1))
        daemon.run_step("queue")
        [tuesday] = digest_rows(direct)[before + 3 :]
        assert (tuesday.kind, tuesday.recipients, tuesday.period) == (
            OWNER_DIGEST,
            OWNER,
            "2027-01-19",
        )
        assert "Acme Corp" in bodies(tuesday)[0] and "Globex" in bodies(tuesday)[0]
        # The leaders' next digest is the next Monday's; the owner never gets a day's twice.
        weekly = len(queued(direct, MessageKind.LEADER_DIGEST))
        for moment in [
            *(on_monday(8, 0, days=day) for day in range(2, 7)),
            on_monday(7, 59, days=7),
        ]:
            clock.set(moment)
            daemon.run_step("queue")
            assert len(queued(direct, MessageKind.LEADER_DIGEST)) == weekly, moment
        clock.set(on_monday(8, 0, days=7))
        daemon.run_step("queue")
        assert queued(direct, MessageKind.LEADER_DIGEST)[weekly:] == [
            (LEADER_DIGEST, leader, "2027-W04") for leader in LEADERS
        ]
        days = [period for _, _, period in queued(direct, MessageKind.OWNER_DIGEST)]
        assert days[:2] == ["2027-01-18", "2027-01-19"]
        assert len(days) == len(set(days)), days
        assert "Traceback" not in caplog.text

        # With KAMFLOW_DEBUG, the same failure brings its traceback along.
        monkeypatch.setenv("KAMFLOW_DEBUG", "1")
        proxy.cut()
        caplog.clear()
        daemon.run_step("owner digests")
        assert "step owner digests failed: database error on" in caplog.text
        assert "Traceback" in caplog.text
    finally:
        through.dispose()


def test_a_digest_whose_moment_passes_while_no_daemon_runs_is_queued_once_when_one_does(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = db.ready_engine(sqlite_url)
    digest_team(engine)
    clock = FixedClock(MONDAY)
    daemon = daemon_until_monday_morning(engine, clock, tmp_path / "mail")
    before = len(digest_rows(engine))

    # Nothing runs from 07:50 to 11:00 (the machine was down); then one run.
    clock.set(on_monday(11, 0))
    daemon.run_step("queue")

    assert_monday_digests(engine, before)
    clock.set(on_monday(11, 1))
    daemon.run_step("queue")
    assert len(digest_rows(engine)) == before + 3


# --- several daemons on one database, one of them killed mid-delivery -----------------------------

#: A Monday: every account of stuck_portfolio() is stuck, and the leaders' weekly digest is due.
BUSY_MONDAY = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
STARTING = re.compile(r"kamflow daemon (?P<worker>\S+) starting")


def found_within(find: Callable[[], T | None], what: str, seconds: float = 30) -> T:
    """What ``find`` returns once it returns something (polled, as wait_for does)."""
    deadline = time.monotonic() + seconds
    while (found := find()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)
    return found


def launch(
    url: str, folder: Path, port: int, name: str, *, now: datetime
) -> subprocess.Popen[bytes]:
    """`kamflow daemon` on ``url`` from ``now`` (KAMFLOW_NOW), a lease of 10 s, intervals of 1 s,
    mail to 127.0.0.1:``port``; a process of its own, logging to ``folder/name.log``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAMFLOW_")}
    env.update(
        {
            "KAMFLOW_USER": "daemon@example.com",
            "KAMFLOW_MAIL_TRANSPORT": "smtp",
            "KAMFLOW_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "KAMFLOW_MAIL_FROM": SENDER,
            "KAMFLOW_STALL_INTERVAL": "1",
            "KAMFLOW_DELIVERY_INTERVAL": "1",
            "KAMFLOW_DELIVERY_LEASE": "10s",
            "KAMFLOW_NOW": now.isoformat(),
        }
    )
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kamflow", "--db", url, "daemon"],
            env=env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stuck_portfolio(engine: Engine, now: datetime, accounts: int, owners: int) -> None:
    """``accounts`` accounts in Strategy for 30 days at ``now`` (stuck: an escalation each to
    both leaders), spread over ``owners`` owners; written in bulk, past the key-account cap."""
    with db.session_scope(engine) as session:
        for email in LEADERS:
            people.add_person(session, email, leader=True, now=now - timedelta(days=60))
        ids = [
            people.add_person(session, f"owner{n}@example.com", now=now - timedelta(days=60)).id
            for n in range(owners)
        ]
        entered = now - timedelta(days=30)
        session.execute(
            sa.insert(Account),
            [
                {
                    "name": f"Account {n:03d}",
                    "owner_id": ids[n % owners],
                    "workflow": "kam",
                    "kind": "existing",
                    "stage": "strategy",
                    "stage_entered_at": entered,
                    "version": 1,
                    "created_at": entered,
                }
                for n in range(accounts)
            ],
        )


def outbox_rows(engine: Engine) -> list[Notification]:
    with db.session_scope(engine) as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))).all())


def held_leases(engine: Engine) -> Counter[str]:
    """How many unfinished messages each worker holds a lease on."""
    with db.session_scope(engine) as session:
        rows = session.exec(
            select(Notification.lease_owner).where(
                col(Notification.status) == "pending", col(Notification.lease_owner).is_not(None)
            )
        ).all()
    return Counter(owner for owner in rows if owner is not None)


def backends(engine: Engine, application: str) -> int:
    """How many PostgreSQL sessions the processes named ``application`` still have."""
    with engine.connect() as connection:
        found: int = connection.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application},
        ).scalar_one()
    return found


def test_three_daemons_one_killed_mid_delivery_deliver_every_message_and_none_twice_but_its_own(
    postgres_url: str, tmp_path: Path, smtp_server: tuple[Inbox, int]
) -> None:
    """Each daemon's time runs on from KAMFLOW_NOW (kamflow.clock.RunningClock), so the killed
    daemon's leases end for the others and its messages go out."""
    inbox, port = smtp_server
    inbox.delay = 0.025  # 300 messages take several seconds over three connections
    engine = db.ready_engine(postgres_url)
    stuck_portfolio(engine, BUSY_MONDAY, accounts=300, owners=4)
    names = ("first", "second", "third")
    base = sa.engine.make_url(postgres_url)
    # Names of their own for PostgreSQL (pg_stat_activity), whatever else runs beside the test.
    tag = uuid.uuid4().hex[:8]
    daemons = {
        name: launch(
            base.update_query_dict({"application_name": f"kamflow-{tag}-{name}"}).render_as_string(
                hide_password=False
            ),
            tmp_path,
            port,
            name,
            now=BUSY_MONDAY,
        )
        for name in names
    }

    def workers() -> dict[str, str]:
        found = {}
        for name in names:
            if match := STARTING.search(log_of(tmp_path, name)):
                found[match["worker"]] = name
        return found

    def busiest() -> str | None:
        """The daemon holding the most unsent messages, once it holds enough to be mid-batch."""
        if len(inbox.received()) < 10:
            return None
        known = workers()
        for worker, count in held_leases(engine).most_common(1):
            if count >= 20 and worker in known:
                return known[worker]
        return None

    def everything_arrived() -> bool:
        rows = outbox_rows(engine)
        arrived = {str(message["Message-ID"]) for message in inbox.received()}
        return (
            all(row.status == "sent" for row in rows)
            and {message_id(row.key, SENDER) for row in rows} <= arrived
        )

    try:
        wait_for(lambda: len(workers()) == len(names), "the three daemons to start")
        victim = found_within(busiest, "a daemon in the middle of a delivery", 60)
        worker = next(w for w, name in workers().items() if name == victim)
        daemons[victim].kill()  # SIGKILL: no chance to record or give back anything
        daemons[victim].wait()
        # Once PostgreSQL has ended its sessions, what it held is what it left unfinished.
        wait_for(lambda: backends(engine, f"kamflow-{tag}-{victim}") == 0, "its sessions to end")
        held = {
            row.key
            for row in outbox_rows(engine)
            if row.status == "pending" and row.lease_owner == worker
        }
        wait_for(everything_arrived, "every queued message to arrive", 120)
        codes = {name: stop(daemons[name])[0] for name in names if name != victim}
    finally:
        for process in daemons.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    logs = {name: log_of(tmp_path, name) for name in names}
    assert codes == {name: 0 for name in names if name != victim}, logs
    assert held, "the killed daemon held no unfinished message: it was not mid-delivery"
    rows = outbox_rows(engine)
    assert [row.kind for row in rows].count(MessageKind.ESCALATION) == 300
    assert {row.status for row in rows} == {"sent"}
    arrivals = Counter(str(message["Message-ID"]) for message in inbox.received())
    assert set(arrivals) == {message_id(row.key, SENDER) for row in rows}
    twice = {mid for mid, count in arrivals.items() if count > 1}
    assert max(arrivals.values()) <= 2
    # Only what the killed daemon had claimed and not yet recorded may have gone out twice
    # (it may have sent some of them before it died); everything else arrived once.
    assert twice <= {message_id(key, SENDER) for key in held}
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text}"
        assert "after their lease ended" not in text, f"{name}:\n{text}"


# --- a mail server that drops the connection over one message -------------------------------------

POISON = "poison@example.com"


class Dropping:
    """An aiosmtpd handler that takes every message but those for POISON: during their DATA it
    drops the connection, as a server (or a filter in front of it) that chokes on one message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[EmailMessage] = []
        self.dropped = 0

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        if POISON in envelope.rcpt_tos:
            with self.lock:
                self.dropped += 1
            assert server.transport is not None
            server.transport.close()  # the client never gets a reply
            return "421 4.3.0 closing the connection"
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(message)
        return "250 OK"

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(message["Message-ID"]) for message in self.received)


@pytest.fixture
def dropping_server() -> Iterator[tuple[Dropping, int]]:
    handler = Dropping()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def poison_row(engine: Engine) -> Notification:
    with db.session_scope(engine) as session:
        return session.exec(
            select(Notification).where(col(Notification.recipients) == POISON)
        ).one()


def test_a_server_that_drops_the_connection_for_one_recipient_does_not_hold_up_the_rest(
    engine: Engine, clock: FixedClock, dropping_server: tuple[Dropping, int]
) -> None:
    """A true outage (connection refused) counts no attempt against any message: see
    tests/test_mail.py::test_a_closed_port_stops_the_run_and_the_next_run_after_the_server_is_up_delivers.
    """
    server, port = dropping_server
    transport = SmtpTransport(SmtpSettings.parse(f"smtp://127.0.0.1:{port}", None))

    def deliver_now() -> DeliveryReport:
        return deliver(engine, transport, sender=SENDER, now=clock.now())

    put(engine, clock, draft(0, recipients=[POISON]))  # the oldest: first in the queue
    clock.advance(minutes=1)
    others = put(engine, clock, *(draft(n) for n in range(1, 17)))
    expected = Counter(message_id(row.key, SENDER) for row in others)

    first = deliver_now()

    assert (first.claimed, first.sent, first.retried, first.dead) == (17, 16, 1, 0)
    assert first.stopped is None
    assert server.message_ids() == expected
    assert server.dropped == 2  # once more on a fresh connection, then it counts
    poison = poison_row(engine)
    assert (poison.status, poison.attempts, poison.lease_owner) == ("pending", 1, None)
    assert poison.next_attempt_at == clock.now() + timedelta(minutes=1)
    assert "lost the SMTP server" in poison.last_error
    assert "twice" in poison.last_error

    for attempt in range(2, defaults.MAX_ATTEMPTS + 1):
        clock.set(poison.next_attempt_at - timedelta(seconds=1))
        assert deliver_now().claimed == 0  # its backoff holds
        clock.set(poison.next_attempt_at)
        report = deliver_now()
        assert (report.claimed, report.sent, report.stopped) == (1, 0, None), attempt
        poison = poison_row(engine)
        assert poison.attempts == attempt
        assert server.dropped == 2 * attempt
        if attempt < defaults.MAX_ATTEMPTS:
            assert (report.retried, report.dead, poison.status) == (1, 0, "pending")
            # 1 minute, doubling
            assert poison.next_attempt_at - clock.now() == timedelta(minutes=2 ** (attempt - 1))
        else:
            assert (report.retried, report.dead, poison.status) == (0, 1, "dead")
            assert f"gave up after {defaults.MAX_ATTEMPTS} attempts" in poison.last_error
            assert "lost the SMTP server" in poison.last_error

    clock.advance(days=7)
    assert deliver_now().claimed == 0
    assert server.message_ids() == expected  # each of the others exactly once, throughout
    with db.session_scope(engine) as session:
        statuses = Counter(session.exec(select(Notification.status)).all())
    assert statuses == {"sent": 16, "dead": 1}
