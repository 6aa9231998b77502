"""The outbox: typed message identities, queued once each, in the caller's transaction.

A message's identity says what it is about, as columns of its row: a rung of the reminder ladder
for one stay of an account in a stage, one repeat of an overdue action's reminder, or one
period's digest for one person. The unique key is derived from the identity here and nowhere
else; nothing ever parses it back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.db import dialect_insert
from kamflow.errors import InvalidInput, NotFound
from kamflow.models import MessageKind, Notification, OutboxStatus
from kamflow.text import first_line


@dataclass(frozen=True)
class Identity:
    """What a message is about; two messages with the same identity are the same message."""

    kind: MessageKind
    account_id: int | None = None
    person_id: int | None = None
    stage: str | None = None
    stage_entered_at: datetime | None = None
    rung: str | None = None
    repeat: int | None = None
    action_id: int | None = None
    action_due: date | None = None
    period: str | None = None

    @classmethod
    def stall(
        cls,
        kind: MessageKind,
        *,
        account_id: int,
        owner_id: int,
        stage: str,
        entered_at: datetime,
        rung: str,
        repeat: int,
    ) -> Identity:
        """A reminder or escalation: one per account, stay in a stage, rung and repeat."""
        return cls(
            kind,
            account_id=account_id,
            person_id=owner_id,
            stage=stage,
            stage_entered_at=entered_at,
            rung=rung,
            repeat=repeat,
        )

    @classmethod
    def action(
        cls, *, action_id: int, account_id: int, owner_id: int, due: date, repeat: int, day: date
    ) -> Identity:
        """An overdue action's reminder: one per action, due date and repeat (sent on ``day``)."""
        return cls(
            MessageKind.ACTION,
            account_id=account_id,
            person_id=owner_id,
            action_id=action_id,
            action_due=due,
            repeat=repeat,
            period=day.isoformat(),
        )

    @classmethod
    def digest(cls, kind: MessageKind, *, person_id: int, period: str) -> Identity:
        """An owner's daily or a leader's weekly digest: one per person and period."""
        return cls(kind, person_id=person_id, period=period)

    @functools.cached_property
    def key(self) -> str:
        """The unique key of the message, derived from the identity (and only here)."""
        if self.kind in (MessageKind.REMINDER, MessageKind.ESCALATION):
            assert self.stage_entered_at is not None
            return (
                f"stall:{self.account_id}:{self.stage}:{self.stage_entered_at.isoformat()}:"
                f"{self.rung}:{self.repeat}"
            )
        if self.kind == MessageKind.ACTION:
            assert self.action_due is not None
            return f"action:{self.action_id}:{self.action_due.isoformat()}:{self.repeat}"
        who = "owner" if self.kind == MessageKind.OWNER_DIGEST else "leaders"
        return f"digest:{who}:{self.person_id}:{self.period}"

    def columns(self) -> dict[str, Any]:
        """The identity as the outbox row's column values, its key included."""
        return {
            "key": self.key,
            "kind": self.kind.value,
            "account_id": self.account_id,
            "person_id": self.person_id,
            "stage": self.stage,
            "stage_entered_at": self.stage_entered_at,
            "rung": self.rung,
            "repeat": self.repeat,
            "action_id": self.action_id,
            "action_due": self.action_due,
            "period": self.period,
        }


@dataclass(frozen=True)
class Draft:
    """A message to queue: its identity, its addressees and subject, and what makes its body.

    The body is rendered at delivery from ``template`` and the frozen ``context``; a message made
    without a template carries ``body_text`` (and ``body_html``) as they are.
    """

    identity: Identity
    recipients: list[str]
    cc: list[str]
    subject: str
    template: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    body_text: str = ""
    body_html: str = ""
    due_at: datetime | None = None

    @property
    def key(self) -> str:
        """The message's unique key (its identity's)."""
        return self.identity.key

    def mention(self) -> tuple[int | None, str, int | None] | None:
        """(person, "account" or "action", id): what this message reminds its person of."""
        identity = self.identity
        if identity.kind in (MessageKind.REMINDER, MessageKind.ESCALATION):
            return (identity.person_id, "account", identity.account_id)
        if identity.kind == MessageKind.ACTION:
            return (identity.person_id, "action", identity.action_id)
        return None

    def describe(self) -> dict[str, Any]:
        """The message in brief, as a step reports what it queued: key, kind, addressees,
        subject."""
        return {
            "key": self.key,
            "kind": self.identity.kind.value,
            "to": self.recipients,
            "cc": self.cc,
            "subject": self.subject,
        }

    def row(self, now: datetime, *, every_column: bool = False) -> dict[str, Any]:
        """The outbox row's values, queued at ``now`` and due at once. What is empty is left to
        the column's default (fewer values to bind makes a large batch cheaper); with
        ``every_column``, only what is NULL is left out, for an insert that applies no default."""
        values = {
            **self.identity.columns(),
            "due_at": self.due_at,
            "recipients": ", ".join(self.recipients),
            "cc": ", ".join(self.cc),
            "subject": self.subject,
            "template": self.template,
            "context": json.dumps(self.context, ensure_ascii=False, default=str)
            if self.template
            else "",
            "body_text": self.body_text,
            "body_html": self.body_html,
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "created_at": now,
        }
        if every_column:
            return {name: value for name, value in values.items() if value is not None}
        return {name: value for name, value in values.items() if value is not None and value != ""}


def queue_many(session: Session, drafts: Sequence[Draft], *, now: datetime) -> set[str]:
    """Insert the drafts whose keys are not queued yet; the keys this call inserted.

    Rows that fill the same columns go in one statement. On PostgreSQL, where another daemon may
    insert the same key at the same moment, ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` says
    which rows this call wrote. On SQLite the transaction holds the write lock from its start
    (BEGIN IMMEDIATE), so the keys already there are looked up first and the rest inserted with
    the driver's executemany: the same answer, at about half the cost for a large batch.
    """
    if not drafts:
        return set()
    connection = session.connection()
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    if connection.dialect.name == "sqlite":
        fresh = _not_queued(connection, drafts)
        for draft in fresh:
            row = draft.row(now, every_column=True)
            groups.setdefault(tuple(row), []).append(row)
        for names, rows in groups.items():
            _insert_many(connection, names, rows)
        return {draft.key for draft in fresh}
    statement = (
        dialect_insert(session)(OUTBOX)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(OUTBOX.c.key)
    )
    for draft in drafts:
        row = draft.row(now)
        groups.setdefault(tuple(row), []).append(row)
    inserted: set[str] = set()
    for rows in groups.values():
        # RETURNING yields a row only for what this statement inserted (rowcount may not).
        inserted.update(key for (key,) in connection.execute(statement, rows).all())
    return inserted


OUTBOX = Notification.__table__  # type: ignore[attr-defined]
_QUEUED_KEYS = sa.select(OUTBOX.c.key).where(OUTBOX.c.key.in_(sa.bindparam("keys", expanding=True)))


def _not_queued(connection: sa.Connection, drafts: Sequence[Draft]) -> list[Draft]:
    """The drafts whose keys are not in the outbox (nor earlier in ``drafts``)."""
    unique = {draft.key: draft for draft in drafts}
    there = set(connection.execute(_QUEUED_KEYS, {"keys": list(unique)}).scalars())
    return [draft for key, draft in unique.items() if key not in there]


def _insert_many(
    connection: sa.Connection, names: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """One executemany of ``rows`` (which all fill the columns ``names``), each value passed
    through its column type as SQLAlchemy would, without building a statement per row."""
    dialect = connection.dialect
    processors = [
        OUTBOX.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    # A batch repeats values (its moment in two columns of every row): each is converted once.
    converted: dict[tuple[int, Any], Any] = {}

    def convert(index: int, value: Any) -> Any:
        process = processors[index]
        if process is None:
            return value
        if not isinstance(value, datetime):
            return process(value)
        key = (index, value)
        found = converted.get(key, converted)
        if found is converted:
            found = converted[key] = process(value)
        return found

    values = [tuple(convert(i, value) for i, value in enumerate(row.values())) for row in rows]
    columns = ", ".join(names)
    marks = ", ".join("?" for _ in names)
    connection.exec_driver_sql(
        f"INSERT INTO outbox ({columns}) VALUES ({marks}) ON CONFLICT (key) DO NOTHING", values
    )


def queue(session: Session, draft: Draft, *, now: datetime) -> bool:
    """Insert one draft unless its key is already there; True when this call inserted it."""
    return bool(queue_many(session, [draft], now=now))


def already_queued(session: Session, identity: Identity) -> bool:
    """Whether a message with this identity is in the outbox, whatever its status."""
    key = identity.key
    return session.exec(select(Notification.id).where(Notification.key == key)).first() is not None


def counts(session: Session) -> dict[str, int]:
    """How many messages are pending, sent, dead and obsolete."""
    rows = session.exec(
        select(Notification.status, sa.func.count()).group_by(col(Notification.status))
    ).all()
    found = {status.value: 0 for status in OutboxStatus}
    found.update({status: count for status, count in rows})
    return found


def list_messages(
    session: Session, *, status: str | None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest messages (of one status, if given), newest first."""
    query = select(Notification).order_by(col(Notification.id).desc()).limit(limit)
    if status:
        if status not in {s.value for s in OutboxStatus}:
            known = ", ".join(s.value for s in OutboxStatus)
            raise NotFound(f"no status {status!r} (statuses: {known})")
        query = query.where(Notification.status == status)
    return [
        {
            "id": row.id,
            "kind": row.kind,
            "status": row.status,
            "to": row.recipients,
            "cc": row.cc,
            "subject": row.subject,
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(),
            "created_at": row.created_at.isoformat(),
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "last_error": row.last_error,
            "key": row.key,
            "delivered": channel_names(row.delivered),
            "refused": channel_names(row.refused),
        }
        for row in session.exec(query).all()
    ]


def channel_names(bits: int) -> list[str]:
    """The names of the channels (mail, chat) whose bits are set in ``bits``."""
    return [name for name, bit in defaults.CHANNELS.items() if bits & bit]


def _message(session: Session, message_id: str) -> Notification:
    """The outbox row with id ``message_id``; NotFound when there is none."""
    row = session.get(Notification, int(message_id)) if message_id.strip().isdigit() else None
    if row is None:
        raise NotFound(f"no message {message_id!r} in the outbox (see: kamflow outbox list)")
    return row


def show_message(session: Session, message_id: str) -> dict[str, Any]:
    """One message in full: what it is about (its kind, its account), whom it is for, where it
    stands (status, attempts, last error) and its subject and plain-text body, rendered as
    delivery renders it; NotFound for an unknown id.

    A body that cannot be rendered (delivery would make the message a dead letter) is None, and
    ``body_error`` says why.
    """
    from kamflow.models import Account
    from kamflow.notify.message import bodies

    row = _message(session, message_id)
    account = session.get(Account, row.account_id) if row.account_id is not None else None
    body: str | None = None
    problem = None
    try:
        body = bodies(row)[0]
    except Exception as error:  # bad data in the row: shown, not raised
        problem = f"{type(error).__name__}: {first_line(error)}"
    return {
        "id": row.id,
        "key": row.key,
        "kind": row.kind,
        "account": account.name if account is not None else None,
        "to": row.recipients,
        "cc": row.cc,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "last_error": row.last_error,
        "delivered": channel_names(row.delivered),
        "refused": channel_names(row.refused),
        "subject": row.subject,
        "body": body,
        "body_error": problem,
    }


def retry(session: Session, message_id: str, *, now: datetime) -> Notification:
    """Put a dead message back in the queue, to be sent at the next delivery on the channels
    that do not have it yet (one that had it is not sent it again)."""
    row = _message(session, message_id)
    if row.status != OutboxStatus.DEAD:
        raise InvalidInput(f"message {row.id} is {row.status}, not dead: nothing to retry")
    row.status, row.attempts, row.next_attempt_at = OutboxStatus.PENDING, 0, now
    row.refused = 0
    row.lease_owner, row.lease_until = None, None
    return row
