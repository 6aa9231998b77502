"""Alerts in team chat: each message posted to an incoming webhook, once, beside mail.

The webhook is a real HTTP server on 127.0.0.1 (tests/chat_server.py); mail goes to the console
transport, whose output counts what mail delivered. Every test that touches the outbox runs on
SQLite and PostgreSQL. Time moves with the ``clock`` fixture only; nothing sleeps.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.engine import Engine

from kamflow import db, defaults
from kamflow.clock import FixedClock
from kamflow.config import MailSettings, Schedule
from kamflow.engine import add_account
from kamflow.models import OutboxStatus
from kamflow.notify.message import build
from kamflow.notify.transports import ConsoleTransport, Transport
from kamflow.notify.webhook import (
    WebhookSettings,
    WebhookTransport,
    chat_text,
    payload,
    retry_after,
)
from kamflow.steps.base import StepRun
from kamflow.steps.delivery import DeliveryReport, deliver
from kamflow.steps.stalls import queue_stalls
from tests.account_steps import add_person
from tests.chat_server import HOST, PATH, TOKEN, Answer, ChatServer, chat_server, slack_text
from tests.conftest import Runner, snapshot
from tests.test_mail import OWNER, SENDER, all_rows, draft, put, row

MAIL, CHAT = defaults.CHANNELS["mail"], defaults.CHANNELS["chat"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No mail or chat setting leaks in from the shell."""
    for name in (
        "KAMFLOW_MAIL_TRANSPORT",
        "KAMFLOW_SMTP_URL",
        "KAMFLOW_WEBHOOK_URL",
        "KAMFLOW_WEBHOOK_FORMAT",
        "KAMFLOW_OUTBOX_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    yield from chat_server()


class Mail:
    """The console transport, and how many messages it printed."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.transport = ConsoleTransport(self.stream)

    @property
    def count(self) -> int:
        return self.stream.getvalue().count("--- mail ")


@pytest.fixture
def mail() -> Mail:
    return Mail()


def webhook(url: str, format_name: str = "slack") -> WebhookTransport:
    return WebhookTransport(WebhookSettings.parse(url, format_name))


def run_delivery(
    engine: Engine, clock: FixedClock, *transports: Transport, **options: Any
) -> DeliveryReport:
    return deliver(engine, list(transports), sender=SENDER, now=clock.now(), **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


# --- what a chat message says -------------------------------------------------------------------


def _queue_reminder(engine: Engine, clock: FixedClock, run: Runner) -> None:
    add_person(engine, clock, OWNER)
    run(add_account, "Acme & Sons", owner=OWNER)
    clock.advance(days=14)  # the Strategy limit: the owner's first reminder is due
    queue_stalls(StepRun(engine, clock.now(), Schedule.load({})))


@pytest.mark.parametrize("format_name", ["slack", "mattermost", "teams"])
def test_a_reminder_posts_its_subject_addressee_lines_and_commands_in_each_format(
    engine: Engine, clock: FixedClock, run: Runner, chat: ChatServer, format_name: str
) -> None:
    _queue_reminder(engine, clock, run)

    report = run_delivery(engine, clock, webhook(chat.url, format_name))

    assert (report.sent, report.stopped) == (1, None)
    [posted] = chat.requests
    assert posted.path == PATH
    assert posted.headers["Content-Type"].startswith("application/json")
    subject = "Acme & Sons has been in Strategy for 14 days"
    if format_name == "teams":
        assert posted.payload["type"] == "message"
        [card] = posted.payload["attachments"]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["type"] == "AdaptiveCard"
        blocks = card["content"]["body"]
        assert blocks[0] == {"type": "TextBlock", "text": subject, "weight": "Bolder", "wrap": True}
        assert blocks[1]["text"] == f"For: {OWNER}"
        lines = [block["text"] for block in blocks]
        commands = [block["text"] for block in blocks if block.get("fontType") == "Monospace"]
        assert "kamflow why 'Acme & Sons'" in commands
        assert all(line.startswith("kamflow ") for line in commands)
    else:
        text = slack_text(posted.payload) if format_name == "slack" else posted.payload["text"]
        lines = text.split("\n")
        bold = "*" if format_name == "slack" else "**"
        assert lines[:3] == [f"{bold}{subject}{bold}", f"For: {OWNER}", ""]
        assert "`kamflow why 'Acme & Sons'`" in lines
        assert any(line.startswith("`kamflow snooze 'Acme & Sons' --days 7") for line in lines)
        if format_name == "slack":  # Slack's markup escapes &, < and >
            assert "&amp;" in posted.payload["text"] and "Acme & Sons" not in posted.payload["text"]
    assert any("limit is 14 days" in line for line in lines)
    assert not any("Sent by kamflow" in line for line in lines)  # the signature stays out


def test_a_long_message_is_cut_to_the_chat_limit_with_the_rest_counted(
    engine: Engine, clock: FixedClock
) -> None:
    body = "".join(f"  - line {n} of a long digest {'x' * 50}\n" for n in range(200))
    [queued] = put(engine, clock, draft(1, body_text=body + "\n-- \nSent by kamflow\n"))

    chat = chat_text(build(queued, SENDER))

    assert len("\n".join(chat.lines)) <= defaults.WEBHOOK_TEXT_LIMIT + 50
    assert chat.lines[0] == f"- line 0 of a long digest {'x' * 50}"
    shown = len(chat.lines) - 1
    assert chat.lines[-1] == f"... ({200 - shown} more lines)"
    assert len(json.dumps(payload(build(queued, SENDER), "slack"))) < 4000


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    moment = datetime(2027, 1, 4, 9, 30, tzinfo=UTC)

    assert retry_after("120") == 120.0
    assert retry_after(format_datetime(moment, usegmt=True)) == moment
    assert retry_after("soon") is None
    assert retry_after("") is None
    assert retry_after(None) is None


# --- mail and chat, each once -------------------------------------------------------------------


def test_mail_and_chat_each_get_every_message_once_over_one_connection(
    engine: Engine, clock: FixedClock, chat: ChatServer, mail: Mail
) -> None:
    put(engine, clock, *(draft(n) for n in range(1, 6)))

    report = run_delivery(engine, clock, mail.transport, webhook(chat.url))

    assert (report.claimed, report.sent, report.stopped) == (5, 5, None)
    assert report.channels == {"mail": 5, "chat": 5}
    assert "(delivered: chat 5, mail 5)" in report.summary()
    assert mail.count == 5
    assert len(chat.delivered) == 5
    assert chat.connections == 1  # kept alive for the whole batch
    assert {(r.status, r.delivered, r.refused) for r in all_rows(engine)} == {
        (OutboxStatus.SENT, MAIL | CHAT, 0)
    }
    assert run_delivery(engine, clock, mail.transport, webhook(chat.url)).claimed == 0
    assert (mail.count, len(chat.requests)) == (5, 5)


@pytest.mark.parametrize(
    ("retry_after_value", "wait"),
    [
        pytest.param("600", timedelta(seconds=600), id="seconds"),
        pytest.param(
            "99999999", timedelta(seconds=defaults.RETRY_AFTER_MAX_SECONDS), id="capped-at-a-day"
        ),
        pytest.param(None, timedelta(seconds=defaults.RETRY_FIRST_SECONDS), id="backoff"),
    ],
)
def test_a_message_mailed_but_refused_for_now_by_chat_is_retried_in_chat_only(
    engine: Engine,
    clock: FixedClock,
    chat: ChatServer,
    mail: Mail,
    retry_after_value: str | None,
    wait: timedelta,
) -> None:
    first, *_ = put(engine, clock, *(draft(n) for n in range(1, 4)))
    headers = {"Retry-After": retry_after_value} if retry_after_value else {}
    chat.answer(Answer(503, headers, "try later"))
    queued_at = clock.now()

    report = run_delivery(engine, clock, mail.transport, webhook(chat.url))

    assert (report.sent, report.retried, report.dead) == (2, 1, 0)
    assert (mail.count, len(chat.delivered)) == (3, 2)
    waiting = row(engine, first.key)
    assert (waiting.status, waiting.delivered, waiting.attempts) == (OutboxStatus.PENDING, MAIL, 1)
    assert waiting.next_attempt_at == queued_at + wait
    assert waiting.last_error == f"chat: webhook host {HOST} answered 503 try later"

    clock.advance(seconds=wait.total_seconds() - 1)
    assert run_delivery(engine, clock, mail.transport, webhook(chat.url)).claimed == 0
    clock.advance(seconds=1)
    again = run_delivery(engine, clock, mail.transport, webhook(chat.url))

    assert (again.claimed, again.sent, again.channels) == (1, 1, {"chat": 1})
    assert (mail.count, len(chat.delivered)) == (3, 3)  # mailed once only
    done = row(engine, first.key)
    assert (done.status, done.delivered, done.attempts, done.last_error) == (
        OutboxStatus.SENT,
        MAIL | CHAT,
        2,
        "",
    )


def test_a_429_holds_chat_for_the_run_honours_an_http_date_and_mail_goes_on(
    engine: Engine, clock: FixedClock, chat: ChatServer, mail: Mail
) -> None:
    first, second, third = put(engine, clock, *(draft(n) for n in range(1, 4)))
    until = clock.now() + timedelta(minutes=5)
    chat.answer(Answer(429, {"Retry-After": format_datetime(until, usegmt=True)}, "slow down"))
    start = clock.now()

    report = run_delivery(engine, clock, mail.transport, webhook(chat.url))

    assert (report.claimed, report.sent, report.retried, report.deferred) == (3, 0, 1, 2)
    assert report.stopped is None  # a rate limit is no outage
    assert mail.count == 3
    assert len(chat.requests) == 1  # the rest of the run did not knock again
    limited = row(engine, first.key)
    assert (limited.delivered, limited.next_attempt_at) == (MAIL, until)
    for later in (second, third):
        held = row(engine, later.key)
        assert (held.status, held.delivered, held.next_attempt_at) == (
            OutboxStatus.PENDING,
            MAIL,
            start,
        )

    next_run = run_delivery(engine, clock, mail.transport, webhook(chat.url))
    assert (next_run.claimed, next_run.sent, next_run.channels) == (2, 2, {"chat": 2})
    clock.advance(minutes=5)
    last = run_delivery(engine, clock, mail.transport, webhook(chat.url))
    assert (last.claimed, last.sent) == (1, 1)
    assert (mail.count, len(chat.delivered)) == (3, 3)
    assert {r.status for r in all_rows(engine)} == {OutboxStatus.SENT}


def test_a_chat_that_keeps_answering_429_ends_in_a_dead_message_mailed_once(
    engine: Engine, clock: FixedClock, chat: ChatServer, mail: Mail
) -> None:
    [queued] = put(engine, clock, draft(1))
    chat.always = Answer(429, {"Retry-After": "1"}, "rate_limited")

    for attempt in range(1, defaults.MAX_ATTEMPTS + 1):
        report = run_delivery(engine, clock, mail.transport, webhook(chat.url))
        assert report.claimed == 1, f"attempt {attempt}"
        found = row(engine, queued.key)
        assert found.attempts == attempt
        if attempt < defaults.MAX_ATTEMPTS:
            assert found.status == OutboxStatus.PENDING
            clock.set(found.next_attempt_at)

    assert (found.status, found.delivered, found.refused) == (OutboxStatus.DEAD, MAIL, CHAT)
    assert found.last_error.startswith(f"gave up after {defaults.MAX_ATTEMPTS} attempts; last: ")
    assert "429 rate_limited" in found.last_error
    assert (mail.count, len(chat.requests)) == (1, defaults.MAX_ATTEMPTS)


def test_a_rate_limited_run_claims_no_message_that_owes_only_chat(
    engine: Engine, clock: FixedClock, chat: ChatServer
) -> None:
    put(engine, clock, *(draft(n) for n in range(1, 8)))
    chat.answer(Answer(429, {"Retry-After": "30"}))

    report = run_delivery(engine, clock, webhook(chat.url), batch=2)

    # The first batch meets the limit: its second message is given back untouched, and no later
    # batch is claimed in the run.
    assert (report.claimed, report.retried, report.deferred, report.stopped) == (2, 1, 0, None)
    assert len(chat.requests) == 1
    assert [r.attempts for r in all_rows(engine)] == [1, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_a_4xx_makes_the_message_dead_in_chat_and_outbox_retry_posts_it_in_chat_only(
    engine: Engine,
    clock: FixedClock,
    chat: ChatServer,
    mail: Mail,
    cli: Callable[..., Result],
    status: int,
) -> None:
    [queued] = put(engine, clock, draft(1))
    chat.answer(Answer(status, {}, "no_service"))

    report = run_delivery(engine, clock, mail.transport, webhook(chat.url))

    assert (report.sent, report.dead, report.retried) == (0, 1, 0)
    dead = row(engine, queued.key)
    assert (dead.status, dead.delivered, dead.refused) == (OutboxStatus.DEAD, MAIL, CHAT)
    assert dead.last_error == f"chat: webhook host {HOST} answered {status} no_service"
    listed = json.loads(cli("outbox", "list", "--status", "dead", "--json").output)
    assert [(m["id"], m["delivered"], m["refused"]) for m in listed] == [
        (queued.id, ["mail"], ["chat"])
    ]
    assert cli("outbox", "retry", str(queued.id)).exit_code == 0

    again = run_delivery(engine, clock, mail.transport, webhook(chat.url))

    assert (again.sent, again.channels) == (1, {"chat": 1})
    assert (mail.count, len(chat.delivered)) == (1, 1)
    assert row(engine, queued.key).status == OutboxStatus.SENT


def test_mail_refused_for_now_and_chat_refused_for_good_keeps_retrying_mail(
    engine: Engine, clock: FixedClock, chat: ChatServer
) -> None:
    """Each channel has its own verdict: chat's 404 does not end mail's retries."""
    [queued] = put(engine, clock, draft(1))
    chat.always = Answer(404, {}, "gone")

    class Busy:
        name = "busy"
        channel = "mail"
        calls = 0

        def connect(self) -> Busy:
            return self

        def close(self) -> None:
            return None

        def send(self, message: Any) -> None:
            from kamflow.errors import TransientFailure

            Busy.calls += 1
            if Busy.calls == 1:
                raise TransientFailure("451 try again later")

    first = run_delivery(engine, clock, Busy(), webhook(chat.url))
    stored = row(engine, queued.key)
    assert (first.retried, stored.status, stored.refused) == (1, OutboxStatus.PENDING, CHAT)
    assert stored.last_error == (
        f"mail: 451 try again later; chat: webhook host {HOST} answered 404 gone"
    )

    clock.advance(seconds=defaults.RETRY_FIRST_SECONDS)
    second = run_delivery(engine, clock, Busy(), webhook(chat.url))

    assert (second.dead, second.channels) == (1, {"mail": 1})
    assert len(chat.requests) == 1  # chat was not asked again
    final = row(engine, queued.key)
    assert (final.status, final.delivered, final.refused) == (OutboxStatus.DEAD, MAIL, CHAT)


# --- broken connections and outages -------------------------------------------------------------


def test_a_dropped_connection_is_retried_once_on_a_fresh_one_then_counts_an_attempt(
    engine: Engine, clock: FixedClock, chat: ChatServer
) -> None:
    first, second = put(engine, clock, draft(1), draft(2))
    chat.answer(Answer(drop=True), Answer(), Answer(drop=True), Answer(drop=True))

    report = run_delivery(engine, clock, webhook(chat.url))

    assert (report.sent, report.retried, report.stopped) == (1, 1, None)
    assert [r.payload == chat.requests[1].payload for r in chat.requests] == [True] * 2 + [
        False
    ] * 2
    assert row(engine, first.key).status == OutboxStatus.SENT
    broken = row(engine, second.key)
    assert (broken.status, broken.attempts) == (OutboxStatus.PENDING, 1)
    assert broken.last_error == (
        f"lost webhook host {HOST}: the server closed the connection without answering "
        "(twice, while sending this message)"
    )
    clock.advance(seconds=defaults.RETRY_FIRST_SECONDS)
    assert run_delivery(engine, clock, webhook(chat.url)).sent == 1
    assert len(chat.delivered) == 2


def test_an_unreachable_webhook_holds_chat_counts_nothing_and_mail_goes_on(
    engine: Engine, clock: FixedClock, mail: Mail
) -> None:
    port = free_port()  # nobody listens there yet
    url = f"http://{HOST}:{port}{PATH}"
    put(engine, clock, *(draft(n) for n in range(1, 4)))

    report = run_delivery(engine, clock, mail.transport, webhook(url))

    assert (report.sent, report.retried, report.dead, report.deferred) == (0, 0, 0, 3)
    assert report.stopped is not None
    assert report.stopped.startswith(f"cannot connect to webhook host {HOST}: ")
    assert TOKEN not in report.stopped
    assert mail.count == 3
    assert {(r.status, r.delivered, r.attempts) for r in all_rows(engine)} == {
        (OutboxStatus.PENDING, MAIL, 1)
    }

    # Chat alone, still down: nothing is counted against any message.
    assert run_delivery(engine, clock, webhook(url)).stopped is not None
    assert {r.attempts for r in all_rows(engine)} == {1}

    for server in chat_server_on(port):
        back = run_delivery(engine, clock, mail.transport, webhook(url))
        assert (back.sent, back.channels, back.stopped) == (3, {"chat": 3}, None)
        assert len(server.delivered) == 3
    assert mail.count == 3


def chat_server_on(port: int) -> Iterator[ChatServer]:
    server = ChatServer(port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_two_workers_racing_post_each_message_to_chat_exactly_once(
    database_url: str, engine: Engine, clock: FixedClock, chat: ChatServer
) -> None:
    queued = put(engine, clock, *(draft(n) for n in range(1, 31)))
    engines = [db.engine_for.__wrapped__(database_url) for _ in range(2)]
    start = threading.Barrier(len(engines))
    reports: list[DeliveryReport] = []
    failures: list[BaseException] = []

    def work(worker: str, own: sa.Engine) -> None:
        try:
            start.wait(timeout=10)
            while True:
                report = deliver(
                    own,
                    [ConsoleTransport(io.StringIO()), webhook(chat.url)],
                    sender=SENDER,
                    now=clock.now(),
                    worker=worker,
                    batch=3,
                )
                reports.append(report)
                if report.claimed == 0:
                    return
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work, args=(f"w{n}", own)) for n, own in enumerate(engines)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for own in engines:
            own.dispose()

    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    ids = sorted(r.headers["X-Kamflow-Message-Id"] for r in chat.delivered)
    assert len(ids) == len(set(ids)) == len(queued)
    assert sum(r.sent for r in reports) == 30
    assert {(r.status, r.delivered) for r in all_rows(engine)} == {(OutboxStatus.SENT, MAIL | CHAT)}


# --- the URL is a secret ------------------------------------------------------------------------


def test_the_webhook_url_shows_nowhere_even_when_the_server_echoes_it(
    engine: Engine,
    clock: FixedClock,
    chat: ChatServer,
    cli: Callable[..., Result],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    put(engine, clock, draft(1), draft(2))
    chat.answer(
        Answer(404, {}, f"No hook at {PATH} ({chat.url})"),
        Answer(500, {}, f"bad token {TOKEN} for T0001"),
    )
    environ = {"KAMFLOW_WEBHOOK_URL": chat.url, "KAMFLOW_MAIL_TRANSPORT": "none"}
    settings = MailSettings.load(environ)

    tick = cli("tick", env=environ)
    assert tick.exit_code == 0, tick.stderr
    shown = [
        tick.output,
        tick.stderr,
        cli("outbox", "list").output,
        cli("outbox", "list", "--json").output,
        cli("outbox", "show", "1").output,
        cli("outbox", "show", "2", "--json").output,
        cli("status").output,
        cli("status", "--json").output,
        caplog.text,
        repr(settings),
        str(settings),
        settings.describe(),
        repr(settings.make_transports()),
        repr(WebhookSettings.parse(chat.url)),
        repr(snapshot(engine)),
    ]
    assert settings.describe() == f"a Slack webhook at {HOST}"
    assert "answered 404 No hook at [webhook path]" in cli("outbox", "show", "1").output
    assert "dead 1" in tick.output and "retry later 1" in tick.output
    for text in shown:
        assert TOKEN not in text
        assert "/hooks/" not in text


def test_kamflow_tick_with_mail_and_chat_delivers_on_both(
    engine: Engine, clock: FixedClock, run: Runner, chat: ChatServer, cli: Callable[..., Result]
) -> None:
    _queue_reminder(engine, clock, run)
    folder = Path("outbox")

    tick = cli("tick", env={"KAMFLOW_WEBHOOK_URL": chat.url, "KAMFLOW_WEBHOOK_FORMAT": "Teams"})

    assert tick.exit_code == 0, tick.stderr
    assert "sent 1" in tick.output and "(delivered: chat 1, mail 1)" in tick.output
    assert len(list(folder.glob("*.eml"))) == 1
    [posted] = chat.delivered
    assert posted.payload["type"] == "message"
    shown = cli("outbox", "show", "1").output
    assert "delivered by: mail, chat" in shown


# --- the upgrade ----------------------------------------------------------------------------------


def test_the_upgrade_marks_what_was_sent_or_dead_before_as_mail(database_url: str) -> None:
    from alembic import command

    engine = db.engine_for(database_url)
    with engine.begin() as connection:
        command.upgrade(db._alembic_config(connection), "0006")
        for number, status in enumerate(("sent", "dead", "pending"), start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO outbox (key, kind, recipients, cc, subject, template, context, "
                    "body_text, body_html, status, attempts, next_attempt_at, last_error, "
                    "created_at) VALUES (:key, 'owner_digest', 'kam@example.com', '', 'Hello', "
                    "'', '', 'Hi', '', :status, 1, '2027-01-04 09:00:00', '', "
                    "'2027-01-04 09:00:00')"
                ),
                {"key": f"k{number}", "status": status},
            )

    before, after = db.upgrade(engine)

    assert (before, after) == ("0006", db.SCHEMA_HEAD)
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT status, delivered, refused FROM outbox ORDER BY id")
        ).all()
    assert [tuple(r) for r in found] == [("sent", MAIL, 0), ("dead", 0, MAIL), ("pending", 0, 0)]
