"""The outbox: notifications queued once per key, in the caller's transaction, then delivered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow.db import dialect_insert
from kamflow.models import Notification, OutboxStatus


@dataclass(frozen=True)
class Draft:
    """A message to queue: rendered, addressed, and named by its idempotency key."""

    key: str
    kind: str
    account_id: int | None
    recipients: list[str]
    cc: list[str]
    subject: str
    body_text: str
    body_html: str

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "to": self.recipients,
            "cc": self.cc,
            "subject": self.subject,
        }


def already_queued(session: Session, key: str) -> bool:
    return session.exec(select(Notification.id).where(Notification.key == key)).first() is not None


def queue(session: Session, draft: Draft, *, now: datetime) -> bool:
    """Insert the draft unless its key is already there; True when this call inserted it."""
    values = {
        "key": draft.key,
        "account_id": draft.account_id,
        "kind": draft.kind,
        "recipients": ", ".join(draft.recipients),
        "cc": ", ".join(draft.cc),
        "subject": draft.subject,
        "body_text": draft.body_text,
        "body_html": draft.body_html,
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "created_at": now,
    }
    statement = (
        dialect_insert(session)(Notification)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(col(Notification.id))
    )
    # RETURNING yields a row only when this statement inserted one (rowcount is not reliable here).
    return session.execute(statement).first() is not None


def counts(session: Session) -> dict[str, int]:
    """How many messages are pending, sent, dead and obsolete."""
    rows = session.exec(
        select(Notification.status, sa.func.count()).group_by(col(Notification.status))
    ).all()
    found = {status.value: 0 for status in OutboxStatus}
    found.update({status: count for status, count in rows})
    return found
