"""Transports behind one small interface: mail by SMTP, as .eml files in a folder or on the console;
chat by a webhook (kamflow.notify.webhook)."""

from __future__ import annotations

import contextlib
import hashlib
import smtplib
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Protocol, TextIO
from urllib.parse import unquote, urlsplit

from kamflow import defaults
from kamflow.errors import (
    ConfigError,
    ConnectionLost,
    PermanentFailure,
    TransientFailure,
    TransportDown,
)
from kamflow.files import create_private_folder, private_file

TIMEOUT_SECONDS = 30


class Transport(Protocol):
    """Sends messages over connections that each carry many messages."""

    name: str
    #: The channel it delivers on (a key of defaults.CHANNELS): "mail" or "chat". A message is
    #: delivered once per channel.
    channel: str

    def connect(self) -> Sender:
        """A connection ready to send (raises TransportDown when there is none to be had)."""
        ...


class Sender(Protocol):
    """A connection of a transport: it sends one message after another until it is closed."""

    def send(self, message: EmailMessage) -> str | None:
        """Send one message; what is worth keeping about a delivery that was not whole, if any.

        Raises TransientFailure (try later), PermanentFailure (never), ConnectionLost (the
        connection broke while sending this message) or TransportDown (not this message's fault).
        """
        ...

    def close(self) -> None:
        """Let the connection go (quietly: it may be broken already)."""
        ...


@contextlib.contextmanager
def session(transport: Transport) -> Iterator[Sender]:
    """One connection of ``transport`` for the length of a block."""
    connection = transport.connect()
    try:
        yield connection
    finally:
        connection.close()


# --- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP server, from KAMFLOW_SMTP_URL and KAMFLOW_SMTP_PASSWORD (the
    password never shows in the repr)."""

    host: str
    port: int
    #: TLS from the first byte (smtps://), rather than STARTTLS when the server offers it.
    implicit_tls: bool
    user: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str, password: str | None) -> SmtpSettings:
        """``smtp://user@host:port`` (STARTTLS when offered) or ``smtps://`` (TLS at once)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                f"{defaults.ENV_SMTP_URL} must look like smtp://user@host:587 or smtps://host:465"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{defaults.ENV_SMTP_URL} has a bad port") from None
        implicit = parts.scheme == "smtps"
        if parts.password:
            raise ConfigError(
                f"put the SMTP password in {defaults.ENV_SMTP_PASSWORD}, not in the URL"
            )
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            implicit_tls=implicit,
            user=unquote(parts.username) if parts.username else None,
            password=password,
        )

    def __repr__(self) -> str:  # never show the password
        return f"SmtpSettings(host={self.host!r}, port={self.port}, user={self.user!r})"


class SmtpTransport:
    """Mail over SMTP: TLS from the start for smtps://, else STARTTLS when the server offers it
    (without it, no password is sent); logged in when the URL names a user."""

    name = "smtp"
    channel = "mail"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _context(self) -> ssl.SSLContext:
        # The system's CAs, or the bundle named by SSL_CERT_FILE (OpenSSL reads that variable).
        return ssl.create_default_context()

    def connect(self) -> _SmtpSender:
        """A connection to the server, encrypted where possible and logged in when a user is set;
        TransportDown when there is none to be had (no connection, TLS, authentication)."""
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            client = self._open(where)
        except smtplib.SMTPAuthenticationError as error:
            raise TransportDown(
                f"SMTP authentication failed at {where} ({error.smtp_code})"
            ) from None
        except ssl.SSLError as error:
            raise TransportDown(f"TLS with {where} failed: {error.reason or error}") from None
        except (OSError, smtplib.SMTPException) as error:
            raise TransportDown(
                f"cannot connect to SMTP server {where}: {_describe(error)}"
            ) from None
        return _SmtpSender(client, where)

    def _open(self, where: str) -> smtplib.SMTP:
        """A connection ready to send: TLS when possible, logged in when a user is set."""
        s = self.settings
        client: smtplib.SMTP
        if s.implicit_tls:
            client = smtplib.SMTP_SSL(
                s.host, s.port, timeout=TIMEOUT_SECONDS, context=self._context()
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=TIMEOUT_SECONDS)
        try:
            if not s.implicit_tls:
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=self._context())
                    client.ehlo()
                elif s.user:
                    raise TransportDown(
                        f"SMTP server {where} offers no STARTTLS; "
                        "refusing to send the password unencrypted"
                    )
            if s.user:
                if not s.password:
                    raise TransportDown(
                        f"SMTP user {s.user} given but {defaults.ENV_SMTP_PASSWORD} is not set"
                    )
                client.login(s.user, s.password)
        except BaseException:
            # Never half open: a connection that did not become usable is dropped, not left over.
            with contextlib.suppress(OSError):
                client.close()
            raise
        return client


class _SmtpSender:
    def __init__(self, client: smtplib.SMTP, where: str) -> None:
        self.client = client
        self.where = where

    def send(self, message: EmailMessage) -> str | None:
        """Send one message to its To and Cc addresses; a note of the recipients the server refused
        when others took it, else None.

        Raises TransientFailure for a 4xx reply, PermanentFailure for any other refusal (when every
        recipient is refused, the lowest code decides) and ConnectionLost when the connection
        breaks.
        """
        try:
            # Not send_message(): its generator turns a body line "From ..." into ">From ...".
            envelope_to = [
                address
                for _, address in getaddresses(
                    [str(message[field]) for field in ("To", "Cc") if message[field]]
                )
            ]
            _, envelope_from = parseaddr(str(message["From"]))
            data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
            refused = self.client.sendmail(envelope_from, envelope_to, data)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            _raise_for(min(codes), f"all recipients refused: {_first_reply(error.recipients)}")
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            _raise_for(error.smtp_code, _reply(error.smtp_error))
        except smtplib.SMTPResponseException as error:
            _raise_for(error.smtp_code, _reply(error.smtp_error))
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            raise ConnectionLost(f"lost the SMTP server {self.where}: {_describe(error)}") from None
        except Exception:
            # Something about this message (an address smtplib cannot encode, an extension the
            # server lacks) broke off the transaction: reset it so the next message starts clean.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.client.rset()
            raise
        if refused:
            # Some recipients took it: the message is delivered; the rest is worth a note.
            return "refused by the server: " + "; ".join(
                f"{address}: {code} {_reply(text)}" for address, (code, text) in refused.items()
            )
        return None

    def close(self) -> None:
        """Send QUIT and close the connection, quietly if it is broken already."""
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self.client.quit()
        with contextlib.suppress(OSError):
            self.client.close()


def _raise_for(code: int, text: str) -> None:
    if 400 <= code < 500:
        raise TransientFailure(f"{code} {text}")
    raise PermanentFailure(f"{code} {text}")


def _reply(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _first_reply(recipients: dict[str, tuple[int, bytes]]) -> str:
    address, (code, text) = next(iter(recipients.items()))
    return f"{address}: {code} {_reply(text)}"


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


# --- files and console ------------------------------------------------------------------------


class FileTransport:
    """Each message becomes ``<folder>/<stable name>.eml``, written whole or not at all."""

    name = "file"
    channel = "mail"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def connect(self) -> FileTransport:
        """Itself, once the folder exists (private, 0700, when it is made here); TransportDown
        when the folder cannot be created."""
        try:
            create_private_folder(self.folder)
        except OSError as error:
            raise TransportDown(
                f"cannot create the outbox folder {self.folder}: {error.strerror}"
            ) from None
        return self

    def close(self) -> None:
        """Nothing to let go: files need no connection."""
        return None

    def send(self, message: EmailMessage) -> None:
        """Write the message to its file in the folder, whole or not at all (a second delivery of
        the same message replaces the file); TransportDown when it cannot be written."""
        try:
            with private_file(self.folder / eml_name(message), binary=True) as out:
                out.write(message.as_bytes())
        except OSError as error:
            raise TransportDown(f"cannot write to {self.folder}: {error.strerror}") from None


def eml_name(message: EmailMessage) -> str:
    """A file name that is the same for every delivery of the same message."""
    digest = hashlib.sha256(str(message["Message-ID"]).encode()).hexdigest()[:16]
    return f"{message['X-Kamflow-Kind'] or 'message'}-{digest}.eml"


class ConsoleTransport:
    """Prints messages, for trying things out."""

    name = "console"
    channel = "mail"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def connect(self) -> ConsoleTransport:
        """Itself: the console needs no connection."""
        return self

    def close(self) -> None:
        """Nothing to let go: the console needs no connection."""
        return None

    def send(self, message: EmailMessage) -> None:
        """Print the message's id, addressees, subject and bodies (text, then HTML) to the stream
        (standard output by default)."""
        stream = self.stream or sys.stdout
        parts = []
        for kind in ("plain", "html"):
            body = message.get_body((kind,))
            if body is not None:
                parts.append(("" if kind == "plain" else "--- html part\n") + body.get_content())
        stream.write(
            f"--- mail {message['Message-ID']}\n"
            f"From: {message['From']}\nTo: {message['To']}\n"
            + (f"Cc: {message['Cc']}\n" if message["Cc"] else "")
            + f"Subject: {message['Subject']}\n\n"
            + "\n".join(parts)
            + "\n"
        )
        stream.flush()
