"""Chat: each message posted as JSON to an incoming webhook (Slack, Mattermost, Microsoft Teams).

The URL of an incoming webhook is its password: whoever has it can post to the channel. It is
never printed or logged; errors and the log name its host at most, and any echo of its path in a
server's reply is blanked before the reply is quoted.

One HTTP/1.1 connection carries a whole batch (keep-alive). The reply decides what becomes of the
message: 2xx delivered; 429 rate limited (this message waits for the server's Retry-After, and the
rest of the run's chat messages wait for the next run); 408 and 5xx try later (after Retry-After
when given); any other 4xx (or 3xx) refused for good.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from kamflow import defaults
from kamflow.errors import (
    ConfigError,
    ConnectionLost,
    PermanentFailure,
    RateLimited,
    TransientFailure,
    TransportDown,
)
from kamflow.text import quoted

TIMEOUT_SECONDS = 30
#: The formats of KAMFLOW_WEBHOOK_FORMAT.
FORMATS = ("slack", "mattermost", "teams")
#: How much of a server's reply an error quotes.
REPLY_CHARACTERS = 120


@dataclass(frozen=True)
class WebhookSettings:
    """Where to post (from KAMFLOW_WEBHOOK_URL, a secret never shown) and in which format."""

    url: str
    format: str = defaults.WEBHOOK_FORMAT

    @classmethod
    def parse(cls, url: str, format_name: str | None = None) -> WebhookSettings:
        """``https://host/path`` (or ``http://``) and one of FORMATS; ConfigError otherwise,
        naming neither the URL nor its path."""
        chosen = (format_name or defaults.WEBHOOK_FORMAT).strip().lower()
        if chosen not in FORMATS:
            raise ConfigError(
                f"{defaults.ENV_WEBHOOK_FORMAT}={quoted(chosen)} "
                f"must be one of {', '.join(FORMATS)}"
            )
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            parts, port = None, None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or any(ch.isspace() for ch in url.strip())
        ):
            raise ConfigError(
                f"{defaults.ENV_WEBHOOK_URL} must look like https://host/path "
                "(the value is not shown: it is a secret)"
            )
        del port  # parsed only to refuse a bad one
        return cls(url=url.strip(), format=chosen)

    @property
    def host(self) -> str:
        """The host the messages go to: all of the URL that may be shown."""
        return urlsplit(self.url).hostname or "?"

    def describe(self) -> str:
        """Where the chat messages go, in words for the log: the format and the host only."""
        return f"a {self.format.capitalize()} webhook at {self.host}"

    def __repr__(self) -> str:  # never show the URL's path: it is the webhook's password
        return f"WebhookSettings(host={self.host!r}, format={self.format!r})"


class WebhookTransport:
    """Posts each message as JSON to an incoming webhook, over one kept-alive connection."""

    name = "webhook"
    channel = "chat"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"WebhookTransport({self.settings!r})"

    def connect(self) -> WebhookSender:
        """An open connection to the webhook's host; TransportDown when there is none to be had
        (no connection, TLS)."""
        parts = urlsplit(self.settings.url)
        host = parts.hostname or ""
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, parts.port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(host, parts.port, timeout=TIMEOUT_SECONDS)
        where = self.settings.host
        try:
            connection.connect()
        except ssl.SSLError as error:
            connection.close()
            raise TransportDown(f"TLS with webhook host {where} failed: {error.reason}") from None
        except OSError as error:
            connection.close()
            raise TransportDown(
                f"cannot connect to webhook host {where}: {_describe(error)}"
            ) from None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return WebhookSender(connection, target, self.settings)


class WebhookSender:
    """A connection to the webhook's host: it posts one message after another."""

    def __init__(
        self, connection: http.client.HTTPConnection, target: str, settings: WebhookSettings
    ) -> None:
        self.connection = connection
        self.target = target
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        """Post the message's chat text; raises RateLimited (429), TransientFailure (408, 5xx),
        PermanentFailure (any other refusal) or ConnectionLost (the connection broke)."""
        body = json.dumps(payload(message, self.settings.format), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "kamflow",
            # Lets a relay that keeps them tell a resend from a new message.
            "X-Kamflow-Message-Id": str(message["Message-ID"] or ""),
        }
        where = self.settings.host
        try:
            self.connection.request("POST", self.target, body=body, headers=headers)
            response = self.connection.getresponse()
            reply = response.read()
        except (http.client.HTTPException, OSError) as error:
            self.close()
            raise ConnectionLost(f"lost webhook host {where}: {_describe(error)}") from None
        status = response.status
        if 200 <= status < 300:
            return
        text = f"webhook host {where} answered {status} {self._reply(reply, response.reason)}"
        wait = retry_after(response.getheader("Retry-After"))
        if status == 429:
            raise RateLimited(text.rstrip(), retry_after=wait)
        if status == 408 or status >= 500:
            raise TransientFailure(text.rstrip(), retry_after=wait)
        raise PermanentFailure(text.rstrip())

    def _reply(self, raw: bytes, reason: str) -> str:
        """The start of the server's reply (or its reason phrase), on one line, without any echo
        of the URL's secret path."""
        text = " ".join(raw[:1000].decode(errors="replace").split()) or reason or ""
        secret = urlsplit(self.settings.url)
        parts = [self.settings.url, self.target, secret.path, secret.query]
        # A token on its own (a long piece of the path or query) is blanked as well.
        parts += [piece for piece in re.split(r"[/?&=]", self.target) if len(piece) >= 8]
        for part in parts:
            if len(part) > 1:
                text = text.replace(part, "[webhook path]")
        return text if len(text) <= REPLY_CHARACTERS else text[:REPLY_CHARACTERS] + "..."

    def close(self) -> None:
        """Close the connection, quietly if it is broken already."""
        with contextlib.suppress(OSError):
            self.connection.close()


def retry_after(value: str | None) -> float | datetime | None:
    """An HTTP Retry-After value: a number of seconds, or the moment an HTTP date names (the
    caller compares it with its own clock); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else None


# --- the chat text ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatText:
    """What a chat message says: the subject, whom it is for, and the essential lines of the
    plain-text body (commands to run marked as such)."""

    subject: str
    addressees: list[str]
    lines: list[str]


#: The line that starts a mail's signature (RFC 3676): what follows it stays out of chat.
SIGNATURE = "-- "


def chat_text(message: EmailMessage) -> ChatText:
    """The chat version of a built message: its subject, its addressees, and its text part up to
    the signature, each line without its indentation, empty lines kept single, at most
    WEBHOOK_TEXT_LIMIT characters (the rest counted)."""
    addressees = [
        address.addr_spec
        for name in ("To", "Cc")
        if message[name] is not None
        for address in message[name].addresses
    ]
    plain = message.get_body(("plain",))
    text = plain.get_content() if plain is not None else ""
    lines: list[str] = []
    for raw in text.splitlines():
        if raw == SIGNATURE:
            break
        line = raw.strip()
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        size += len(line) + 1
        if size > defaults.WEBHOOK_TEXT_LIMIT:
            rest = sum(1 for later in lines[index:] if later)
            kept.append(f"... ({rest} more lines)")
            break
        kept.append(line)
    return ChatText(subject=str(message["Subject"] or ""), addressees=addressees, lines=kept)


def _is_command(line: str) -> bool:
    return line.startswith("kamflow ")


def _slack_escape(text: str) -> str:
    # Slack's own markup: these three must be escaped, nothing else.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(line: str) -> str:
    return f"`{line}`" if _is_command(line) and "`" not in line else line


def payload(message: EmailMessage, format_name: str) -> dict[str, Any]:
    """The JSON a webhook of ``format_name`` takes for ``message``.

    slack: ``{"text": ...}`` in Slack's markup (*bold*, `code`, & < > escaped), which Mattermost
    takes too; mattermost: ``{"text": ...}`` in Markdown (**bold**); teams: a message carrying an
    Adaptive Card, one text block per line, as Teams' Workflows webhooks (and the older connector
    webhooks) take it.
    """
    chat = chat_text(message)
    for_line = f"For: {', '.join(chat.addressees)}" if chat.addressees else ""
    if format_name == "teams":
        blocks: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": chat.subject, "weight": "Bolder", "wrap": True}
        ]
        if for_line:
            blocks.append({"type": "TextBlock", "text": for_line, "isSubtle": True, "wrap": True})
        gap = True
        for line in chat.lines:
            if not line:
                gap = True
                continue
            block = {"type": "TextBlock", "text": line, "wrap": True}
            if _is_command(line):
                block["fontType"] = "Monospace"
            block["spacing"] = "Medium" if gap else "None"
            blocks.append(block)
            gap = False
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": blocks,
                    },
                }
            ],
        }
    if format_name == "mattermost":
        head = [f"**{chat.subject}**"] + ([for_line] if for_line else [])
        return {"text": "\n".join(head + [""] + [_code(line) for line in chat.lines]).rstrip()}
    head = [f"*{_slack_escape(chat.subject)}*"] + ([_slack_escape(for_line)] if for_line else [])
    body = [_code(_slack_escape(line)) for line in chat.lines]
    return {"text": "\n".join([*head, "", *body]).rstrip()}


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__).strip()
