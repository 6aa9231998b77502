"""Mail leaves kamflow intact, once, and only when due: a real SMTP server, files, the console.

The SMTP server is aiosmtpd on 127.0.0.1 at a free port, with a test CA from trustme for STARTTLS,
implicit TLS and AUTH. kamflow finds the test CA through SSL_CERT_FILE, as it would find a company
CA in production. Time moves with the ``clock`` fixture only; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession
from click.testing import Result
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from kamflow import db, defaults
from kamflow.clock import FixedClock
from kamflow.config import MailSettings, Schedule
from kamflow.engine import add_account
from kamflow.errors import ConfigError
from kamflow.models import Account, MessageKind, Notification, OutboxStatus
from kamflow.notify.message import build, message_id
from kamflow.notify.transports import (
    ConsoleTransport,
    FileTransport,
    SmtpSettings,
    SmtpTransport,
    Transport,
    eml_name,
    session,
)
from kamflow.notify.webhook import WebhookSettings, WebhookTransport
from kamflow.outbox import Draft, Identity, queue
from kamflow.records import plan
from kamflow.steps.actions import queue_action_reminders
from kamflow.steps.base import StepRun
from kamflow.steps.delivery import DeliveryReport, claim, deliver
from kamflow.steps.leader_digests import queue_leader_digests
from kamflow.steps.owner_digests import queue_owner_digests
from kamflow.steps.stalls import queue_stalls
from tests.account_steps import add_person
from tests.chat_server import ChatServer, chat_server, slack_text
from tests.conftest import START, Runner, snapshot

HOST = "127.0.0.1"
SENDER = "kamflow@kam.example.com"
OWNER = "owner@example.com"
USER = "kamflow-mailer"
PASSWORD = "correct-Horse-7731"
WRONG_PASSWORD = "wrong-Battery-0042"
EVIL = "\r\nBcc: evil@example.com"

#: A message that is easy to damage: non-ASCII, a lone dot, a line starting "From ", a long line.
SUBJECT = "Müller & Söhne has been in Research for 35 days"
TO = ["owner@example.com", "second@example.com"]
CC = ["lead@example.com"]
BODY_TEXT = (
    "Müller & Söhne has been in Research for 35 days.\n"
    ".\n"
    ".a line that starts with a dot\n" + "x" * 200 + "\nRun: kamflow why Müller\n"
)
#: mbox-style "From " quoting (">From") must not reach a mail sent over SMTP or written to a file.
FROM_LINE = "From the top: a line that starts with From\n"
BODY_HTML = (
    "<p>Müller &amp; Söhne has been in <b>Research</b> for 35 days.</p>\n"
    "<p>.</p>\n<pre>kamflow why Müller</pre>\n"
)

MAIL_VARIABLES = (
    "KAMFLOW_MAIL_TRANSPORT",
    "KAMFLOW_WEBHOOK_URL",
    "KAMFLOW_WEBHOOK_FORMAT",
    "KAMFLOW_SMTP_URL",
    "KAMFLOW_SMTP_PASSWORD",
    "KAMFLOW_MAIL_FROM",
    "KAMFLOW_OUTBOX_DIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@pytest.fixture(autouse=True)
def clean_mail_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No mail setting leaks in from the shell; a default ./outbox lands in the test's folder."""
    for name in MAIL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


# --- the SMTP server --------------------------------------------------------------------------


def free_port() -> int:
    """A port nobody listens on (aiosmtpd's Controller cannot pick one itself)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def parse(raw: bytes) -> EmailMessage:
    # aiosmtpd keeps the CRLF line ends of the wire; the parser wants plain newlines.
    found = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(found, EmailMessage)
    return found


@dataclass(frozen=True)
class Arrived:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: str
    tls: bool
    login: str | None

    def message(self) -> EmailMessage:
        return parse(self.content)

    def header_lines(self) -> list[bytes]:
        """The raw header section, one physical line each (folded lines start with a blank)."""
        return self.content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


class Recorder:
    """An aiosmtpd handler: keeps what it accepts and refuses when told to."""

    def __init__(self) -> None:
        self.arrived: list[Arrived] = []
        self._once: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA": []}
        self._always: dict[str, str] = {}
        self._lock = threading.Lock()
        self.delay = 0.0  # seconds each DATA takes: a slow server

    def refuse(self, verb: str, reply: str, *, times: int = 1) -> None:
        with self._lock:
            self._once[verb] += [reply] * times

    def always_refuse(self, verb: str, reply: str) -> None:
        with self._lock:
            self._always[verb] = reply

    def _refusal(self, verb: str) -> str | None:
        with self._lock:
            if verb in self._always:
                return self._always[verb]
            return self._once[verb].pop(0) if self._once[verb] else None

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        refusal = self._refusal("MAIL")
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._refusal("RCPT")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        refusal = self._refusal("DATA")
        if refusal:
            return refusal
        assert isinstance(envelope.content, bytes)
        auth = session.auth_data
        with self._lock:
            self.arrived.append(
                Arrived(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=envelope.content,
                    peer=str(session.peer),
                    tls=server.transport is not None
                    and server.transport.get_extra_info("ssl_object") is not None,
                    login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                )
            )
        return "250 Message accepted for delivery"


class CountingController(Controller):
    """aiosmtpd's controller, counting the connections it serves (one SMTP object each)."""

    connections = 0

    def factory(self) -> SMTP:
        self.connections += 1
        server: SMTP = super().factory()  # type: ignore[no-untyped-call]
        return server


class MailServer:
    """aiosmtpd on 127.0.0.1: plain, STARTTLS (required when offered), implicit TLS, AUTH."""

    def __init__(
        self,
        port: int,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit: ssl.SSLContext | None = None,
        password: str | None = None,
        auth_require_tls: bool = True,
    ) -> None:
        self.port = port
        self.recorder = Recorder()
        #: Every (login, password) a client offered, right or wrong.
        self.logins: list[tuple[str, str]] = []
        options: dict[str, Any] = {}
        if starttls is not None:
            options.update(tls_context=starttls, require_starttls=True)
        if password is not None:
            self.password = password
            # auth_require_tls True (aiosmtpd's default): AUTH only after STARTTLS.
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=auth_require_tls,
            )
        self.controller = CountingController(
            self.recorder, hostname=HOST, port=port, ssl_context=implicit, **options
        )

    def _authenticate(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == self.password.encode()
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # handled=True would leave smtplib hanging

    def start(self) -> None:
        self.controller.start()
        self.controller.connections = 0  # start() makes one connection of its own to check

    def stop(self) -> None:
        self.controller.stop()

    @property
    def arrived(self) -> list[Arrived]:
        return self.recorder.arrived

    @property
    def connections(self) -> int:
        return self.controller.connections

    def url(self, *, scheme: str = "smtp", user: str | None = None) -> str:
        return f"{scheme}://{user + '@' if user else ''}{HOST}:{self.port}"


StartServer = Callable[..., MailServer]


@pytest.fixture
def servers() -> Iterator[StartServer]:
    """Start mail servers (``servers(port=..., starttls=..., implicit=..., password=...)``)."""
    started: list[MailServer] = []

    def start(port: int | None = None, **options: Any) -> MailServer:
        server = MailServer(port or free_port(), **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp(servers: StartServer) -> MailServer:
    """A plain SMTP server (no TLS offered)."""
    return servers()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The server's side of TLS: a certificate for 127.0.0.1 signed by the test CA."""
    return server_context(ca, HOST, "localhost")


def trust(ca: trustme.CA, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``ca`` the CA bundle of every default TLS context (OpenSSL reads SSL_CERT_FILE)."""
    path = folder / f"ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))


@pytest.fixture
def trust_test_ca(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trust(ca, tmp_path, monkeypatch)


# --- the outbox -------------------------------------------------------------------------------


def identity(number: int) -> Identity:
    """A message about nothing but itself: the digest of a made-up person ``number``."""
    return Identity.digest(MessageKind.OWNER_DIGEST, person_id=number, period="2027-01-04")


def key(number: int) -> str:
    return identity(number).key


def draft(number: int = 1, **changes: Any) -> Draft:
    values: dict[str, Any] = {
        "identity": identity(number),
        "recipients": [OWNER],
        "cc": [],
        "subject": f"Message {number}",
        "body_text": f"Body {number}\n",
        "body_html": f"<p>Body {number}</p>\n",
    }
    values.update(changes)
    return Draft(**values)


def put(engine: Engine, clock: FixedClock, *drafts: Draft) -> list[Notification]:
    """Queue the drafts through kamflow.outbox.queue; the rows as stored."""
    with db.session_scope(engine) as session:
        for item in drafts:
            queue(session, item, now=clock.now())  # its answer has a test of its own
    return [row(engine, item.key) for item in drafts]


def row(engine: Engine, key: str) -> Notification:
    with db.session_scope(engine) as session:
        return session.exec(select(Notification).where(Notification.key == key)).one()


def all_rows(engine: Engine) -> list[Notification]:
    with db.session_scope(engine) as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))).all())


def smtp_mail(url: str, password: str | None = None, sender: str = SENDER) -> MailSettings:
    environ = {"KAMFLOW_SMTP_URL": url, "KAMFLOW_MAIL_FROM": sender}
    if password is not None:
        environ["KAMFLOW_SMTP_PASSWORD"] = password
    return MailSettings.load(environ)


def send_due(
    engine: Engine, mail: MailSettings, clock: FixedClock, **options: Any
) -> DeliveryReport:
    """One delivery run at the clock's time."""
    return deliver(engine, mail.make_transport(), sender=mail.sender, now=clock.now(), **options)


def assert_waiting_untouched(engine: Engine, clock: FixedClock) -> None:
    """Every message still pending, never counted as an attempt, free for the next run."""
    for found in all_rows(engine):
        assert found.status == OutboxStatus.PENDING, found
        assert found.attempts == 0, found
        assert found.lease_owner is None and found.lease_until is None, found
        assert found.next_attempt_at <= clock.now(), found


def message_ids(server: MailServer) -> list[str]:
    return [str(arrived.message()["Message-ID"]) for arrived in server.arrived]


def test_queue_inserts_a_key_once_and_says_whether_it_did(
    engine: Engine, clock: FixedClock
) -> None:
    with db.session_scope(engine) as session:
        first = queue(session, draft(1), now=clock.now())
    with db.session_scope(engine) as session:
        second = queue(session, draft(1, subject="Changed"), now=clock.now())

    assert [r.subject for r in all_rows(engine)] == ["Message 1"]
    assert (first, second) == (True, False)


# --- one contract for every transport ---------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A message as the far end of a transport got it.

    ``exact``: text and html are the decoded MIME parts; otherwise (the console) both are the
    printed body, in which each part must be readable as it was written.
    """

    recipients: list[str]
    subject: str
    message_id: str
    text: str
    html: str | None
    exact: bool = True

    def has_text(self, expected: str) -> bool:
        if self.exact:
            return text_of(self.text) == text_of(expected)
        return text_of(expected) in self.text

    def has_html(self, expected: str) -> bool:
        if self.html is None:
            return False
        if self.exact:
            return text_of(self.html) == text_of(expected)
        return text_of(expected) in self.html


def addressed(message: EmailMessage) -> list[str]:
    return [
        address.addr_spec
        for name in ("To", "Cc")
        if message[name] is not None
        for address in message[name].addresses
    ]


def seen(message: EmailMessage, recipients: list[str] | None = None) -> Seen:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    return Seen(
        recipients=addressed(message) if recipients is None else recipients,
        subject=str(message["Subject"]),
        message_id=str(message["Message-ID"]),
        text=plain.get_content() if plain is not None else "",
        html=html.get_content() if html is not None else None,
    )


def console_messages(output: str) -> list[Seen]:
    """What a person reading the console gets, one entry per printed message."""
    found = []
    parts = re.split(r"^--- mail (\S+)\n", output, flags=re.MULTILINE)
    for printed_id, block in zip(parts[1::2], parts[2::2], strict=True):
        head, _, body = block.partition("\n\n")
        message = Parser(policy=policy.default).parsestr(head + "\n\n", headersonly=True)
        assert isinstance(message, EmailMessage)
        found.append(
            Seen(
                recipients=addressed(message),
                subject=str(message["Subject"]),
                message_id=str(message["Message-ID"] or printed_id),
                text=body,
                html=body,
                exact=False,
            )
        )
    return found


def chat_messages(server: ChatServer) -> list[Seen]:
    """What a Slack user reads, one entry per message the webhook took: the subject in bold, whom
    it is for, then the text (the Message-ID travels in a header)."""
    found = []
    for posted in server.delivered:
        subject, for_line, blank, *body = slack_text(posted.payload).split("\n")
        assert subject.startswith("*") and subject.endswith("*") and blank == "", subject
        assert for_line.startswith("For: "), for_line
        found.append(
            Seen(
                recipients=for_line.removeprefix("For: ").split(", "),
                subject=subject[1:-1],
                message_id=posted.headers["X-Kamflow-Message-Id"],
                text="\n".join(body),
                html=None,
                exact=False,
            )
        )
    return found


Contract = tuple[Transport, Callable[[], list[Seen]]]


@pytest.fixture(params=["smtp", "file", "console", "webhook"])
def contract(request: pytest.FixtureRequest, tmp_path: Path) -> Contract:
    """A transport, and how to read what reached its far end."""
    if request.param == "webhook":
        chat: ChatServer = request.getfixturevalue("chat")
        return WebhookTransport(WebhookSettings.parse(chat.url)), lambda: chat_messages(chat)
    if request.param == "smtp":
        server: MailServer = request.getfixturevalue("smtp")
        transport = SmtpTransport(SmtpSettings.parse(server.url(), None))
        return transport, lambda: [seen(a.message(), a.rcpt_tos) for a in server.arrived]
    if request.param == "file":
        folder = tmp_path / "outbox"
        return FileTransport(folder), lambda: [
            seen(parse(path.read_bytes())) for path in sorted(folder.iterdir(), key=_written)
        ]
    stream = io.StringIO()
    return ConsoleTransport(stream), lambda: console_messages(stream.getvalue())


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    """A chat webhook on loopback."""
    yield from chat_server()


def _written(path: Path) -> int:
    return path.stat().st_mtime_ns


def text_of(value: str) -> str:
    return value.rstrip("\n")


def test_every_transport_delivers_a_built_message_intact(
    engine: Engine, clock: FixedClock, contract: Contract
) -> None:
    transport, received = contract
    [queued] = put(
        engine,
        clock,
        draft(1, recipients=TO, cc=CC, subject=SUBJECT, body_text=BODY_TEXT, body_html=BODY_HTML),
    )
    message = build(queued, SENDER)

    with session(transport) as connection:
        connection.send(message)

    [got] = received()
    assert got.recipients == TO + CC
    assert got.subject == SUBJECT
    assert got.message_id == message["Message-ID"] == message_id(key(1), SENDER)
    assert got.has_text(BODY_TEXT), got.text
    if transport.channel == "mail":  # chat has one text, no HTML part
        assert got.has_html(BODY_HTML), f"the {transport.name} transport lost the HTML part"


def test_every_transport_keeps_a_line_that_starts_with_from(
    engine: Engine, clock: FixedClock, contract: Contract
) -> None:
    transport, received = contract
    text = f"Dear owner,\n{FROM_LINE}Regards\n"
    [queued] = put(engine, clock, draft(1, body_text=text))

    with session(transport) as connection:
        connection.send(build(queued, SENDER))

    [got] = received()
    assert got.has_text(text), got.text


def test_every_transport_delivers_a_batch_from_the_outbox_once_each(
    engine: Engine, clock: FixedClock, contract: Contract
) -> None:
    transport, received = contract
    queued = put(engine, clock, *(draft(n) for n in range(1, 4)))

    report = deliver(engine, transport, sender=SENDER, now=clock.now())

    assert (report.claimed, report.sent, report.stopped) == (3, 3, None)
    got = received()
    assert sorted(m.message_id for m in got) == sorted(message_id(r.key, SENDER) for r in queued)
    assert sorted(m.subject for m in got) == ["Message 1", "Message 2", "Message 3"]
    assert {r.status for r in all_rows(engine)} == {OutboxStatus.SENT}
    assert deliver(engine, transport, sender=SENDER, now=clock.now()).claimed == 0
    assert len(received()) == 3


# --- TLS and authentication -------------------------------------------------------------------


@pytest.mark.usefixtures("trust_test_ca")
def test_starttls_is_used_when_offered_and_the_certificate_verified(
    engine: Engine, clock: FixedClock, servers: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = servers(starttls=server_tls)  # refuses MAIL until the client upgrades
    put(engine, clock, draft(1))

    report = send_due(engine, smtp_mail(server.url()), clock)

    assert (report.sent, report.stopped) == (1, None)
    [arrived] = server.arrived
    assert arrived.tls
    assert row(engine, key(1)).status == OutboxStatus.SENT


@pytest.mark.usefixtures("trust_test_ca")
def test_starttls_and_auth_with_the_right_password_delivers(
    engine: Engine, clock: FixedClock, servers: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = servers(starttls=server_tls, password=PASSWORD)
    put(engine, clock, draft(1), draft(2))

    report = send_due(engine, smtp_mail(server.url(user=USER), PASSWORD), clock)

    assert (report.sent, report.stopped) == (2, None)
    assert [(a.tls, a.login) for a in server.arrived] == [(True, USER), (True, USER)]


@pytest.mark.usefixtures("trust_test_ca")
def test_a_wrong_password_stops_the_run_kills_nothing_and_shows_in_status(
    engine: Engine,
    clock: FixedClock,
    servers: StartServer,
    server_tls: ssl.SSLContext,
    cli: Callable[..., Result],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers(starttls=server_tls, password=PASSWORD)
    put(engine, clock, draft(1), draft(2), draft(3))
    wrong = smtp_mail(server.url(user=USER), WRONG_PASSWORD)

    report = send_due(engine, wrong, clock)

    assert (report.claimed, report.sent, report.retried, report.dead) == (3, 0, 0, 0)
    assert report.stopped is not None and "authentication" in report.stopped.lower()
    assert server.arrived == []
    assert_waiting_untouched(engine, clock)

    status = cli("status")
    assert status.exit_code == 0, status.stderr
    [delivery_line] = [line for line in status.output.splitlines() if "delivery" in line.lower()]
    assert "PROBLEM" in delivery_line and "authentication" in delivery_line.lower()
    assert "3 pending" in status.output and "0 dead" in status.output
    as_json = cli("status", "--json")
    assert json.loads(as_json.output)["last_delivery"]["ok"] is False
    dead = cli("outbox", "list", "--status", "dead")
    assert dead.exit_code == 0 and "(none)" in dead.output

    tick = cli(
        "tick",
        env={
            "KAMFLOW_SMTP_URL": server.url(user=USER),
            "KAMFLOW_SMTP_PASSWORD": WRONG_PASSWORD,
            "KAMFLOW_MAIL_FROM": SENDER,
        },
    )
    assert tick.exit_code == 1
    assert "authentication" in (tick.output + tick.stderr).lower()
    assert_waiting_untouched(engine, clock)

    shown = [
        report.stopped,
        status.output,
        status.stderr,
        as_json.output,
        dead.output,
        tick.output,
        tick.stderr,
        repr(wrong),
        str(wrong),
        wrong.describe(),
        repr(wrong.make_transport()),
        repr(SmtpSettings.parse(server.url(user=USER), WRONG_PASSWORD)),
        caplog.text,
        repr(snapshot(engine)),
    ]
    for text in shown:
        assert WRONG_PASSWORD not in text

    fixed = send_due(engine, smtp_mail(server.url(user=USER), PASSWORD), clock)
    assert (fixed.sent, fixed.stopped) == (3, None)
    assert len(server.arrived) == 3


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_a_server_that_offers_auth_but_no_starttls_never_gets_the_password(
    engine: Engine,
    clock: FixedClock,
    servers: StartServer,
    cli: Callable[..., Result],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # AUTH over plain text, no STARTTLS: logging in here would put the password on the wire.
    server = servers(password=PASSWORD, auth_require_tls=False)
    put(engine, clock, draft(1), draft(2))

    report = send_due(engine, smtp_mail(server.url(user=USER), PASSWORD), clock)

    assert (report.claimed, report.sent, report.retried, report.dead) == (2, 0, 0, 0)
    assert report.stopped is not None
    assert "offers no STARTTLS" in report.stopped
    assert "refusing to send the password unencrypted" in report.stopped
    assert server.logins == []
    assert server.arrived == []
    assert_waiting_untouched(engine, clock)
    status = cli("status")
    assert "PROBLEM" in status.output and "STARTTLS" in status.output
    assert PASSWORD not in report.stopped + status.output + caplog.text

    # The refusal is about the password: without a user, plain SMTP to a server with no AUTH works.
    plain = servers()
    again = send_due(engine, smtp_mail(plain.url()), clock)
    assert (again.sent, again.stopped) == (2, None)


@pytest.mark.usefixtures("trust_test_ca")
def test_smtps_uses_implicit_tls(
    engine: Engine, clock: FixedClock, servers: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = servers(implicit=server_tls)
    put(engine, clock, draft(1))

    report = send_due(engine, smtp_mail(server.url(scheme="smtps")), clock)

    assert (report.sent, report.stopped) == (1, None)
    [arrived] = server.arrived
    assert arrived.tls


@pytest.mark.parametrize(
    ("scheme", "problem"),
    [
        ("smtp", "unknown CA"),
        ("smtps", "unknown CA"),
        ("smtp", "certificate for another host"),
    ],
)
def test_a_certificate_that_does_not_verify_stops_the_run_and_kills_nothing(
    engine: Engine,
    clock: FixedClock,
    servers: StartServer,
    ca: trustme.CA,
    server_tls: ssl.SSLContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    problem: str,
) -> None:
    if problem == "unknown CA":
        trust(trustme.CA(), tmp_path, monkeypatch)  # kamflow trusts some other CA only
        context = server_tls
    else:
        trust(ca, tmp_path, monkeypatch)
        context = server_context(ca, "mail.example.com")
    tls = {"starttls": context} if scheme == "smtp" else {"implicit": context}
    server = servers(**tls)
    put(engine, clock, draft(1), draft(2))
    mail = smtp_mail(server.url(scheme=scheme))

    report = send_due(engine, mail, clock)

    assert (report.sent, report.dead) == (0, 0)
    assert report.stopped is not None
    assert "TLS" in report.stopped and "certificate" in report.stopped.lower()
    assert server.arrived == []
    assert_waiting_untouched(engine, clock)

    if problem == "unknown CA":  # once the right CA is trusted, the next run delivers
        trust(ca, tmp_path, monkeypatch)
        clock.advance(minutes=1)
        again = send_due(engine, mail, clock)
        assert (again.sent, again.stopped) == (2, None)


def test_a_closed_port_stops_the_run_and_the_next_run_after_the_server_is_up_delivers(
    engine: Engine, clock: FixedClock, servers: StartServer, cli: Callable[..., Result]
) -> None:
    port = free_port()
    put(engine, clock, draft(1), draft(2))
    mail = smtp_mail(f"smtp://{HOST}:{port}")

    report = send_due(engine, mail, clock)

    assert (report.sent, report.dead, report.retried) == (0, 0, 0)
    assert report.stopped is not None and str(port) in report.stopped
    assert_waiting_untouched(engine, clock)
    status = cli("status")
    assert "PROBLEM" in status.output and str(port) in status.output

    server = servers(port=port)
    clock.advance(minutes=1)
    again = send_due(engine, mail, clock)

    assert (again.sent, again.stopped) == (2, None)
    assert len(server.arrived) == 2
    assert "PROBLEM" not in cli("status").output


# --- connections ------------------------------------------------------------------------------


def test_one_connection_carries_a_whole_batch(
    engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    put(engine, clock, *(draft(n) for n in range(1, 6)))
    mail = smtp_mail(smtp.url())

    first = send_due(engine, mail, clock)

    assert first.sent == 5
    assert smtp.connections == 1
    assert len({arrived.peer for arrived in smtp.arrived}) == 1

    put(engine, clock, *(draft(n) for n in range(6, 9)))
    second = send_due(engine, mail, clock)

    assert second.sent == 3
    assert smtp.connections == 2
    assert len({arrived.peer for arrived in smtp.arrived}) == 2


def test_a_run_with_nothing_due_does_not_connect(
    engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    report = send_due(engine, smtp_mail(smtp.url()), clock)
    assert report.claimed == 0
    assert smtp.connections == 0


# --- 4xx, 5xx, dead letters -------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA"])
def test_a_4xx_is_retried_with_growing_backoff_then_delivered(
    engine: Engine, clock: FixedClock, smtp: MailServer, verb: str
) -> None:
    smtp.recorder.refuse(verb, "451 4.3.0 Try again later", times=2)
    put(engine, clock, draft(1))
    mail = smtp_mail(smtp.url())

    start = clock.now()
    first = send_due(engine, mail, clock)

    assert (first.claimed, first.sent, first.retried, first.dead) == (1, 0, 1, 0)
    after_first = row(engine, key(1))
    assert after_first.status == OutboxStatus.PENDING
    assert after_first.attempts == 1
    assert after_first.next_attempt_at > start
    assert "451" in after_first.last_error
    assert after_first.lease_owner is None

    clock.set(after_first.next_attempt_at - timedelta(seconds=1))  # the backoff is not over
    early = send_due(engine, mail, clock)
    assert (early.claimed, early.sent) == (0, 0)
    assert smtp.arrived == []

    clock.set(after_first.next_attempt_at)
    second = send_due(engine, mail, clock)
    assert second.retried == 1
    after_second = row(engine, key(1))
    assert after_second.attempts == 2
    assert (
        after_second.next_attempt_at - after_first.next_attempt_at
        > after_first.next_attempt_at - start
    )

    clock.set(after_second.next_attempt_at)
    third = send_due(engine, mail, clock)

    assert (third.sent, third.retried) == (1, 0)
    delivered = row(engine, key(1))
    assert delivered.status == OutboxStatus.SENT
    assert delivered.attempts == 3
    assert delivered.last_error == ""
    assert message_ids(smtp) == [message_id(key(1), SENDER)]


@pytest.mark.parametrize(
    ("verb", "reply"),
    [("RCPT", "550 5.1.1 No such user"), ("DATA", "554 5.7.1 Message rejected")],
)
def test_a_5xx_is_dead_listed_and_sent_after_outbox_retry(
    engine: Engine,
    clock: FixedClock,
    smtp: MailServer,
    cli: Callable[..., Result],
    verb: str,
    reply: str,
) -> None:
    smtp.recorder.refuse(verb, reply)
    subject = "Acme Corp has been in Research for 35 days"
    [queued] = put(engine, clock, draft(1, subject=subject))
    mail = smtp_mail(smtp.url())

    report = send_due(engine, mail, clock)

    assert (report.sent, report.retried, report.dead, report.stopped) == (0, 0, 1, None)
    dead = row(engine, key(1))
    assert dead.status == OutboxStatus.DEAD
    assert reply[:3] in dead.last_error
    listing = cli("outbox", "list", "--status", "dead")
    assert listing.exit_code == 0
    [line] = [line for line in listing.output.splitlines() if subject in line]
    assert line.split()[0] == str(queued.id)
    assert reply[:3] in line
    clock.advance(days=1)
    assert send_due(engine, mail, clock).claimed == 0  # a dead letter stays dead by itself

    retried = cli("outbox", "retry", str(queued.id))

    assert retried.exit_code == 0, retried.stderr
    assert "queued again" in retried.output
    assert row(engine, key(1)).status == OutboxStatus.PENDING
    again = send_due(engine, mail, clock)
    assert again.sent == 1
    assert message_ids(smtp) == [message_id(key(1), SENDER)]
    assert "(none)" in cli("outbox", "list", "--status", "dead").output


def test_too_many_4xx_attempts_make_a_message_dead(
    engine: Engine, clock: FixedClock, smtp: MailServer, cli: Callable[..., Result]
) -> None:
    smtp.recorder.always_refuse("DATA", "451 4.3.0 Try again later")
    [queued] = put(engine, clock, draft(1))
    mail = smtp_mail(smtp.url())

    for attempt in range(1, defaults.MAX_ATTEMPTS + 1):
        report = send_due(engine, mail, clock)
        assert report.claimed == 1, f"attempt {attempt}"
        found = row(engine, key(1))
        assert found.attempts == attempt
        if attempt < defaults.MAX_ATTEMPTS:
            assert found.status == OutboxStatus.PENDING
            clock.set(found.next_attempt_at)

    assert found.status == OutboxStatus.DEAD
    assert "451" in found.last_error
    assert smtp.arrived == []
    clock.advance(days=7)
    assert send_due(engine, mail, clock).claimed == 0
    listing = cli("outbox", "list", "--status", "dead")
    assert any(line.split()[0] == str(queued.id) for line in listing.output.splitlines()[2:])


# Addresses from a database written before addresses were checked: neither a 4xx nor a 5xx.
UNSENDABLE = [
    # smtplib cannot put it into RCPT TO (UnicodeEncodeError), after MAIL FROM was accepted
    pytest.param("müller@example.com", "UnicodeEncodeError: ", id="non-ascii-address"),
    # the email package cannot parse the To header: build() itself fails
    pytest.param('lead@example.com, "', "IndexError: ", id="unparsable-address"),
]


@pytest.mark.parametrize(("recipient", "error"), UNSENDABLE)
def test_a_message_that_cannot_be_sent_is_dead_and_the_rest_of_the_batch_goes_on(
    engine: Engine,
    clock: FixedClock,
    smtp: MailServer,
    cli: Callable[..., Result],
    caplog: pytest.LogCaptureFixture,
    recipient: str,
    error: str,
) -> None:
    first, broken, third = put(engine, clock, draft(1), draft(2, recipients=[recipient]), draft(3))
    mail = smtp_mail(smtp.url())

    report = send_due(engine, mail, clock)

    assert (report.claimed, report.sent, report.retried, report.dead) == (3, 2, 0, 1)
    assert report.stopped is None
    assert sorted(message_ids(smtp)) == sorted(message_id(r.key, SENDER) for r in (first, third))
    dead = row(engine, broken.key)
    assert dead.status == OutboxStatus.DEAD
    assert dead.last_error.startswith(error)
    assert "\n" not in dead.last_error
    assert {row(engine, r.key).status for r in (first, third)} == {OutboxStatus.SENT}
    assert f"message {broken.id} is dead: {error}" in caplog.text
    listing = cli("outbox", "list", "--status", "dead")
    assert [line.split()[0] for line in listing.output.splitlines()[2:]] == [str(broken.id)]
    clock.advance(days=1)
    assert send_due(engine, mail, clock).claimed == 0  # dead, not stalling every later run


def test_a_message_some_recipients_of_which_are_refused_is_sent_and_the_refusal_noted(
    engine: Engine, clock: FixedClock, smtp: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.recorder.refuse("RCPT", "550 5.1.1 No such user")  # the first recipient only
    [queued] = put(engine, clock, draft(1, recipients=TO))

    report = send_due(engine, smtp_mail(smtp.url()), clock)

    assert (report.sent, report.dead, report.stopped) == (1, 0, None)
    [arrived] = smtp.arrived
    assert arrived.rcpt_tos == [TO[1]]
    sent = row(engine, queued.key)
    assert sent.status == OutboxStatus.SENT
    assert f"{TO[0]}: 550 5.1.1 No such user" in sent.last_error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(TO[0] in line and "550" in line for line in warnings), warnings


# --- nothing sent twice -----------------------------------------------------------------------


def test_a_run_stops_sending_before_its_lease_runs_out_and_leaves_the_rest_for_the_next(
    engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    smtp.recorder.delay = 0.5  # a slow server: the lease of 1 s lasts for two messages at most
    queued = put(engine, clock, *(draft(n) for n in range(1, 6)))
    mail = smtp_mail(smtp.url())

    first = send_due(engine, mail, clock, lease_seconds=1, worker="slow-worker")

    assert 1 <= first.sent <= 2, first
    assert first.released == 5 - first.sent
    assert (first.dead, first.retried, first.stopped) == (0, 0, None)
    left = [r for r in all_rows(engine) if r.status == OutboxStatus.PENDING]
    assert len(left) == first.released
    for found in left:  # released, not held by a lease that is about to run out
        assert (found.lease_owner, found.lease_until, found.attempts) == (None, None, 0)

    # Another daemon, once the first one's lease would be over, sends only what is left.
    smtp.recorder.delay = 0
    clock.advance(seconds=2)
    second = send_due(engine, mail, clock, worker="other-worker")

    assert second.sent == first.released
    assert sorted(message_ids(smtp)) == sorted(message_id(r.key, SENDER) for r in queued)
    assert {r.status for r in all_rows(engine)} == {OutboxStatus.SENT}


def test_delivering_twice_sends_once(engine: Engine, clock: FixedClock, smtp: MailServer) -> None:
    queued = put(engine, clock, *(draft(n) for n in range(1, 4)))
    mail = smtp_mail(smtp.url())

    assert send_due(engine, mail, clock).sent == 3
    assert send_due(engine, mail, clock).claimed == 0
    clock.advance(days=2)
    assert send_due(engine, mail, clock).claimed == 0

    assert sorted(message_ids(smtp)) == sorted(message_id(r.key, SENDER) for r in queued)


def test_two_workers_racing_on_one_queue_send_each_message_exactly_once(
    database_url: str, engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    queued = put(engine, clock, *(draft(n) for n in range(1, 31)))
    mail = smtp_mail(smtp.url())
    # Two workers, as two daemons would be: an engine (connection pool) of their own each.
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
                    mail.make_transport(),
                    sender=mail.sender,
                    now=clock.now(),
                    worker=worker,
                    batch=3,
                )
                reports.append(report)
                if report.claimed == 0:
                    return
        except BaseException as error:
            failures.append(error)

    threads = [
        threading.Thread(target=work, args=(f"worker-{n}", own)) for n, own in enumerate(engines)
    ]
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
    assert sorted(message_ids(smtp)) == sorted(message_id(r.key, SENDER) for r in queued)
    assert sum(r.sent for r in reports) == 30
    assert sum(r.lost_lease for r in reports) == 0
    assert {r.status for r in all_rows(engine)} == {OutboxStatus.SENT}


def test_a_crash_between_sending_and_marking_resends_with_the_same_message_id(
    engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    [queued] = put(engine, clock, draft(1))
    mail = smtp_mail(smtp.url())
    # A worker claims with a short lease, sends, and dies before it marks the row sent.
    [claimed] = claim(engine, clock.now(), "doomed-worker", batch=10, lease_seconds=60)
    with session(mail.make_transport()) as connection:
        connection.send(build(claimed, mail.sender))

    clock.advance(seconds=30)
    assert send_due(engine, mail, clock).claimed == 0  # the lease still holds it
    assert len(smtp.arrived) == 1

    clock.advance(seconds=31)
    report = send_due(engine, mail, clock)

    assert (report.claimed, report.sent) == (1, 1)
    assert message_ids(smtp) == [message_id(queued.key, SENDER)] * 2
    assert row(engine, queued.key).status == OutboxStatus.SENT
    assert send_due(engine, mail, clock).claimed == 0


# --- header injection -------------------------------------------------------------------------


def _queue_account_reminder(engine: Engine, clock: FixedClock, run: Runner, name: str) -> None:
    add_person(engine, clock, OWNER)
    run(add_account, name, owner=OWNER)
    clock.advance(days=14)  # the Strategy limit: the owner's first reminder is due
    queue_stalls(StepRun(engine, clock.now(), Schedule.load({})))


def _queue_stored_name_reminder(engine: Engine, clock: FixedClock, run: Runner) -> None:
    """A name that reached the database without passing kamflow's input cleaning."""
    add_person(engine, clock, OWNER)
    run(add_account, "Acme Corp", owner=OWNER)
    with db.session_scope(engine) as session:
        session.execute(sa.update(Account).values(name=f"Acme Corp{EVIL}"))
    clock.advance(days=14)
    queue_stalls(StepRun(engine, clock.now(), Schedule.load({})))


def _queue_action_reminder(engine: Engine, clock: FixedClock, run: Runner) -> None:
    add_person(engine, clock, OWNER)
    run(add_account, "Acme Corp", owner=OWNER)
    run(plan.add_action, "Acme Corp", f"Call the CFO{EVIL}", owner=OWNER, due="2027-01-04")
    queue_action_reminders(StepRun(engine, clock.now(), Schedule.load({})))


@pytest.mark.parametrize(
    "source", ["account name", "account name stored raw", "action title", "queued subject"]
)
def test_a_header_injection_attempt_is_neutralised_and_the_message_still_sent(
    engine: Engine, clock: FixedClock, run: Runner, smtp: MailServer, source: str
) -> None:
    if source == "account name":
        _queue_account_reminder(engine, clock, run, f"Acme Corp{EVIL}")
    elif source == "account name stored raw":
        _queue_stored_name_reminder(engine, clock, run)
    elif source == "action title":
        _queue_action_reminder(engine, clock, run)
    else:
        put(engine, clock, draft(1, subject=f"Acme Corp{EVIL} has been in Research for 35 days"))

    assert len(all_rows(engine)) == 1

    report = send_due(engine, smtp_mail(smtp.url()), clock)

    assert (report.sent, report.dead, report.stopped) == (1, 0, None)
    [arrived] = smtp.arrived
    assert arrived.rcpt_tos == [OWNER]
    assert not [line for line in arrived.header_lines() if line.lower().startswith(b"bcc")]
    message = arrived.message()
    assert message["Bcc"] is None
    subject = str(message["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert "Acme Corp" in subject
    assert "Bcc: evil@example.com" in subject  # kept as text, on the subject's one line
    assert {r.status for r in all_rows(engine)} == {OutboxStatus.SENT}


# --- Message-ID -------------------------------------------------------------------------------


def test_the_message_id_is_in_the_senders_domain_and_the_same_for_the_same_key(
    engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    mail = smtp_mail(smtp.url(), sender="reminders@kam.example.com")
    first, second = put(engine, clock, draft(1), draft(2))

    assert send_due(engine, mail, clock).sent == 2

    ids = message_ids(smtp)
    assert len(set(ids)) == 2
    for found in ids:
        assert re.fullmatch(r"<[^<>@\s]+@kam\.example\.com>", found), found
    assert sorted(ids) == sorted(message_id(r.key, mail.sender) for r in (first, second))
    assert build(first, mail.sender)["Message-ID"] == build(first, mail.sender)["Message-ID"]
    assert message_id("stall:1:strategy:x:remind:0", mail.sender) == message_id(
        "stall:1:strategy:x:remind:0", mail.sender
    )
    assert message_id(key(1), "kamflow@other.example.org").endswith("@other.example.org>")
    assert arrived_from(smtp) == {"reminders@kam.example.com"}


def arrived_from(server: MailServer) -> set[str]:
    return {arrived.mail_from for arrived in server.arrived}


def test_a_sender_with_a_display_name_is_used_whole(
    engine: Engine, clock: FixedClock, smtp: MailServer
) -> None:
    """KAMFLOW_MAIL_FROM="Kamflow <reminders@kam.example.com>" is common in mail settings."""
    mail = smtp_mail(smtp.url(), sender="Kamflow <reminders@kam.example.com>")
    put(engine, clock, draft(1))

    report = send_due(engine, mail, clock)

    assert (report.sent, report.dead, report.stopped) == (1, 0, None)
    [arrived] = smtp.arrived
    assert arrived.mail_from == "reminders@kam.example.com"
    message = arrived.message()
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Kamflow", "reminders@kam.example.com")
    assert message["Message-ID"] == message_id(key(1), "reminders@kam.example.com")
    assert str(message["Message-ID"]).endswith("@kam.example.com>")


# --- the file transport -----------------------------------------------------------------------


def file_mail(folder: Path) -> MailSettings:
    return MailSettings.load(
        {
            "KAMFLOW_MAIL_TRANSPORT": "file",
            "KAMFLOW_OUTBOX_DIR": str(folder),
            "KAMFLOW_MAIL_FROM": SENDER,
        }
    )


def test_the_file_transport_writes_whole_files_and_a_resend_overwrites_the_same_file(
    engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    mail = file_mail(folder)
    queued = put(engine, clock, *(draft(n) for n in range(1, 4)))
    # The first message is written, then its worker dies before marking it sent.
    [claimed] = claim(engine, clock.now(), "doomed-worker", batch=1, lease_seconds=60)
    with session(mail.make_transport()) as connection:
        connection.send(build(claimed, mail.sender))
    clock.advance(seconds=61)

    report = send_due(engine, mail, clock)

    assert (report.sent, report.stopped) == (3, None)
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted(eml_name(build(r, SENDER)) for r in queued)
    for path in folder.iterdir():
        message = parse(path.read_bytes())
        assert path.name == eml_name(message)
        assert message.get_body(("plain",)) is not None


def test_a_file_that_cannot_be_written_stops_the_run_and_leaves_no_partial_file(
    engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    mail = file_mail(folder)
    first, second = put(engine, clock, draft(1), draft(2))
    # A directory where the first message's file must go: the rename onto it fails.
    obstacle = folder / eml_name(build(first, SENDER))
    obstacle.mkdir(parents=True)
    (obstacle / "in-the-way").write_text("x")

    report = send_due(engine, mail, clock)

    assert (report.sent, report.dead) == (0, 0)
    assert report.stopped is not None and str(folder) in report.stopped
    assert sorted(path.name for path in folder.iterdir()) == [obstacle.name]
    assert_waiting_untouched(engine, clock)

    (obstacle / "in-the-way").unlink()
    obstacle.rmdir()
    clock.advance(minutes=1)
    again = send_due(engine, mail, clock)

    assert (again.sent, again.stopped) == (2, None)
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        eml_name(build(r, SENDER)) for r in (first, second)
    )


def test_the_default_file_transport_writes_into_KAMFLOW_OUTBOX_DIR(
    engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "elsewhere"
    mail = MailSettings.load({"KAMFLOW_OUTBOX_DIR": str(folder)})  # no SMTP URL: files
    put(engine, clock, draft(1))

    assert send_due(engine, mail, clock).sent == 1

    assert mail.transport == "file"
    [written] = folder.iterdir()
    assert written.suffix == ".eml"
    assert not (tmp_path / "outbox").exists()


# --- configuration errors ---------------------------------------------------------------------

BAD_SETTINGS = [
    pytest.param(
        {"KAMFLOW_MAIL_TRANSPORT": "pigeon"}, "KAMFLOW_MAIL_TRANSPORT", id="bad-transport"
    ),
    pytest.param({"KAMFLOW_MAIL_TRANSPORT": "smtp"}, "KAMFLOW_SMTP_URL", id="smtp-without-url"),
    pytest.param({"KAMFLOW_SMTP_URL": "http://mail.example.com"}, "KAMFLOW_SMTP_URL", id="bad-url"),
    pytest.param({"KAMFLOW_SMTP_URL": "mail.example.com:587"}, "KAMFLOW_SMTP_URL", id="no-scheme"),
    pytest.param(
        {"KAMFLOW_SMTP_URL": "smtp://mail.example.com:mail"}, "KAMFLOW_SMTP_URL", id="bad-port"
    ),
    pytest.param(
        {"KAMFLOW_SMTP_URL": "smtp://mail.example.com:70000"}, "KAMFLOW_SMTP_URL", id="port-range"
    ),
    pytest.param(
        {"KAMFLOW_SMTP_URL": "smtp://kamflow:hunter2-Secret@mail.example.com:587"},
        "KAMFLOW_SMTP_PASSWORD",
        id="password-in-url",
    ),
    pytest.param({"KAMFLOW_MAIL_FROM": "kamflow"}, "KAMFLOW_MAIL_FROM", id="bad-sender"),
    pytest.param(
        {"KAMFLOW_WEBHOOK_URL": "hooks.example.com/services/hunter2-Secret"},
        "KAMFLOW_WEBHOOK_URL",
        id="webhook-no-scheme",
    ),
    pytest.param(
        {"KAMFLOW_WEBHOOK_URL": "ftp://hooks.example.com/hunter2-Secret"},
        "KAMFLOW_WEBHOOK_URL",
        id="webhook-bad-scheme",
    ),
    pytest.param(
        {"KAMFLOW_WEBHOOK_URL": "https://hooks.example.com:99999/hunter2-Secret"},
        "KAMFLOW_WEBHOOK_URL",
        id="webhook-bad-port",
    ),
    pytest.param(
        {
            "KAMFLOW_WEBHOOK_URL": "https://hooks.example.com/hunter2-Secret",
            "KAMFLOW_WEBHOOK_FORMAT": "discord",
        },
        "KAMFLOW_WEBHOOK_FORMAT",
        id="webhook-bad-format",
    ),
    pytest.param(
        {"KAMFLOW_MAIL_TRANSPORT": "none"}, "KAMFLOW_WEBHOOK_URL", id="no-mail-and-no-chat"
    ),
]


@pytest.mark.parametrize(("environ", "named"), BAD_SETTINGS)
def test_a_bad_mail_setting_is_one_clear_config_error(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        MailSettings.load(environ)

    message = str(refused.value)
    assert named in message
    assert "\n" not in message
    assert "hunter2-Secret" not in message


@pytest.mark.parametrize(("environ", "named"), BAD_SETTINGS)
def test_kamflow_tick_with_a_bad_mail_setting_exits_1_and_changes_nothing(
    engine: Engine, cli: Callable[..., Result], environ: dict[str, str], named: str
) -> None:
    before = snapshot(engine)

    result = cli("tick", env=environ)

    assert result.exit_code == 1
    assert result.stderr.startswith("Error:")
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.output
    assert "hunter2-Secret" not in result.stderr + result.output
    assert snapshot(engine) == before


# --- what the messages look like ----------------------------------------------------------------

LEADER = "lead@example.com"
DOER = "doer@example.com"
ACCOUNT = "Acme Corp"
ACTION = "Send the CIO the pilot proposal"
#: The elements a mail client must be able to style from their own attribute.
STYLED = ("table", "td", "th", "p", "h1", "h2", "ul", "li", "code", "span", "body")


class Visible(HTMLParser):
    """The text a reader sees in an HTML body, and each element with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.open_list = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def parts_of(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML parts of a built message."""
    found = []
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        assert isinstance(part, EmailMessage) and part.get_content_subtype() == kind
        found.append(part.get_content())
    return found[0], found[1]


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_finished_html(html: str) -> Visible:
    """An HTML mail that common clients show as intended: a whole document, every element styled
    inline, nothing fetched, no style sheet or presentational border, no empty list or table."""
    page = Visible(html)
    assert html.lstrip().lower().startswith("<!doctype html>")
    for forbidden in ("<style", "<link", "<script", "src=", "url("):
        assert forbidden not in html.lower(), forbidden
    assert not re.search(r"\bborder\s*=", html, re.IGNORECASE), "a border attribute"
    unstyled = [tag for tag, attrs in page.elements if tag in STYLED and not attrs.get("style")]
    assert unstyled == [], unstyled
    assert not re.search(r"<ul[^>]*>\s*</ul>", html)
    for table in re.findall(r"<table\b.*?</table>", html, re.DOTALL):
        if "<th" in table:  # a data table: at least one row besides its header
            assert table.count("<tr") >= 2, table
    return page


def mail_of(engine: Engine, kind: str) -> list[EmailMessage]:
    """The messages of ``kind`` in the outbox, built as they will be sent."""
    return [build(item, SENDER) for item in all_rows(engine) if item.kind == kind]


def one_of_each_kind(engine: Engine, clock: FixedClock, run: Runner) -> dict[str, EmailMessage]:
    """ACCOUNT in Strategy from Monday 2027-01-04, with an action due on the 18th; the steps run
    as the daemon would: the reminder and the action on the 18th, the owners' digests on the
    19th, the escalation and the leaders' digest on Monday the 25th (nothing stuck then yet, and
    no KPI off target)."""
    add_person(engine, clock, "owner@example.com")
    add_person(engine, clock, LEADER, leader=True)
    add_person(engine, clock, DOER)
    run(add_account, ACCOUNT, owner="owner@example.com")
    run(plan.add_action, ACCOUNT, ACTION, owner=DOER, due="2027-01-18")
    schedule = Schedule.load({})

    clock.set(START + timedelta(days=14))  # 2027-01-18 09:00
    queue_stalls(StepRun(engine, clock.now(), schedule))
    queue_action_reminders(StepRun(engine, clock.now(), schedule))
    clock.set(START + timedelta(days=15, hours=-1))  # 2027-01-19 08:00
    queue_owner_digests(StepRun(engine, clock.now(), schedule))
    clock.set(START + timedelta(days=21, hours=-1))  # Monday 2027-01-25 08:00
    queue_leader_digests(StepRun(engine, clock.now(), schedule))
    clock.set(START + timedelta(days=21))  # 09:00: the limit plus seven days
    queue_stalls(StepRun(engine, clock.now(), schedule))

    found = {kind: mail_of(engine, kind) for kind in MessageKind}
    digests = {m["To"]: m for m in found[MessageKind.OWNER_DIGEST]}
    return {
        "reminder": found[MessageKind.REMINDER][0],
        "escalation": found[MessageKind.ESCALATION][0],
        "action": found[MessageKind.ACTION][0],
        "owner_digest": digests["owner@example.com"],
        "action_digest": digests[DOER],
        "leader_digest": found[MessageKind.LEADER_DIGEST][0],
    }


#: What each message must say in both its parts: the account, the facts, the commands to run.
SAID = {
    "reminder": (
        ACCOUNT,
        "14 days",
        "kamflow why 'Acme Corp'",
        "kamflow advance 'Acme Corp'",
        "kamflow snooze 'Acme Corp' --days 7 --reason TEXT",
        "the strategy lacks the objective (what)",
    ),
    "escalation": (
        ACCOUNT,
        "21 days",
        "7 days past the stage's limit",
        "already had 1 reminder",
        "kamflow why 'Acme Corp'",
        "kamflow snooze 'Acme Corp' --days 7 --reason TEXT",
    ),
    "action": (
        ACCOUNT,
        ACTION,
        "due today",
        DOER,
        "kamflow action done 'Acme Corp' 1",
        "kamflow action list 'Acme Corp'",
    ),
    "owner_digest": (ACCOUNT, "Strategy", "behind", "kamflow why 'Acme Corp'"),
    "action_digest": (ACCOUNT, ACTION, "1 day late", "kamflow action done 'Acme Corp' 1"),
    "leader_digest": ("Behind: 1", ACCOUNT, "owner@example.com", "Strategy", "Candidate"),
}


def test_every_kind_of_mail_is_styled_inline_and_says_the_same_in_both_parts(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    mails = one_of_each_kind(engine, clock, run)

    assert set(mails) == set(SAID)
    for kind, message in mails.items():
        text, html = parts_of(message)
        page = assert_finished_html(html)
        for fact in SAID[kind]:
            assert fact in flat(text), (kind, fact, text)
            assert fact in page.text(), (kind, fact, page.text())
        # The same heading colour and status colours as the HTML report.
        assert "#2e6da4" in html, kind


def test_a_reminder_asks_to_snooze_with_the_exact_command(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    mails = one_of_each_kind(engine, clock, run)

    for kind in ("reminder", "escalation"):
        text, html = parts_of(mails[kind])
        shown = Visible(html).text()
        for said in (flat(text), shown):
            assert "pause these reminders" not in said, kind
            assert f"snooze {ACCOUNT} for a week" in said, (kind, said)
            assert "kamflow snooze 'Acme Corp' --days 7 --reason TEXT" in said, kind
        # The command stands on its own: a line of its own in text, a block of its own in HTML.
        assert "\n    kamflow snooze 'Acme Corp' --days 7 --reason TEXT\n" in text
        blocks = [Visible(cell).text() for cell in re.findall(r"<td [^>]*>.*?</td>", html)]
        assert "kamflow snooze 'Acme Corp' --days 7 --reason TEXT" in blocks, kind


def test_the_leaders_digest_leaves_out_the_sections_with_nothing_in_them(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    """Nothing stuck and no KPI off target that week: no heading or empty list for them."""
    mails = one_of_each_kind(engine, clock, run)

    text, html = parts_of(mails["leader_digest"])
    shown = Visible(html).text()
    for said in (text, shown):
        assert "Behind: 1" in said
        assert "Stuck" not in said and "stuck:" not in said.lower()
        assert "KPIs off target:" not in said
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", html)
    assert headings == ["Behind: 1", "Accounts per stage"], headings
    assert "<li" not in html  # the lists are rows of a table, never an empty bullet list


def test_a_quiet_week_says_so_instead_of_listing_nothing(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    add_person(engine, clock, "owner@example.com")
    add_person(engine, clock, LEADER, leader=True)
    run(add_account, ACCOUNT, owner="owner@example.com")
    clock.set(START + timedelta(days=7, hours=-1))  # Monday 2027-01-11 08:00: on track

    queue_leader_digests(StepRun(engine, clock.now(), Schedule.load({})))

    [message] = mail_of(engine, MessageKind.LEADER_DIGEST)
    text, html = parts_of(message)
    page = assert_finished_html(html)
    for said in (flat(text), page.text()):
        assert "No account is stuck or behind, and no KPI is off target." in said
        for heading in ("Stuck", "Behind:", "KPIs off target"):
            assert heading not in said, heading
        assert "Strategy" in said  # the accounts per stage are still there
    assert re.findall(r"<h2[^>]*>(.*?)</h2>", html) == ["Accounts per stage"]
