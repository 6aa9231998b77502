"""RFC 5322 messages from outbox rows: stable Message-IDs, clean headers, text and HTML."""

from __future__ import annotations

import email.policy
import functools
import hashlib
import json
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from kamflow import defaults
from kamflow.errors import ConfigError
from kamflow.text import quoted


def clean_header(value: str) -> str:
    """User data on one line: CR, LF and other control characters never reach a header."""
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(value.split())


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, which makes each header's class once.

    CPython's registry builds a new class for every header it parses or sets, which costs more
    than the rest of a message put together when thousands are sent in a run.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = super().__getitem__(name)
        return found


#: The policy of kamflow's messages: the standard one, with a registry that does not make classes
#: over and over.
POLICY = email.policy.default.clone(header_factory=_HeaderClasses())
#: The same, with the line ends SMTP wants.
SMTP_POLICY = POLICY.clone(linesep="\r\n")


@functools.lru_cache(maxsize=8)
def sender_address(sender: str) -> Address:
    """``kamflow@example.com`` or ``kamflow <kamflow@example.com>`` as an Address (parsed once
    per sender, not once per message)."""
    name, address = parseaddr(clean_header(sender))
    try:
        return Address(display_name=name, addr_spec=address)
    except (ValueError, IndexError):
        raise ConfigError(
            f"{defaults.ENV_MAIL_FROM}={quoted(sender)} is not an email address"
        ) from None


def domain_of(sender: str) -> str:
    """The domain of the sender's address, for Message-IDs (``localhost`` when it has none)."""
    return sender_address(sender).domain or "localhost"


def message_id(key: str, sender: str) -> str:
    """The same key always gives the same Message-ID, so a resend is recognisably the same mail."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}.kamflow@{domain_of(sender)}>"


def addresses(field: str) -> list[str]:
    """A comma-separated list of addresses, each made safe for a header; empty entries left out."""
    return [clean_header(a) for a in field.split(",") if a.strip()]


def bodies(row: Any) -> tuple[str, str]:
    """The text and HTML bodies of an outbox row: rendered from its template and frozen context
    (the same on every attempt), or as stored for a message queued without a template."""
    if row.template:
        from kamflow.notify.templates import render

        return render(row.template, **json.loads(row.context or "{}"))
    return row.body_text, row.body_html


def build(row: Any, sender: str) -> EmailMessage:
    """The message for an outbox row, the same bytes-for-bytes headers on every attempt."""
    message = EmailMessage(policy=POLICY)
    message["From"] = sender_address(sender)
    message["To"] = ", ".join(addresses(row.recipients))
    if row.cc.strip():
        message["Cc"] = ", ".join(addresses(row.cc))
    message["Subject"] = clean_header(row.subject)
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = message_id(row.key, sender)
    message["X-Kamflow-Kind"] = clean_header(row.kind)
    message["Auto-Submitted"] = "auto-generated"
    text, html = bodies(row)
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message
