"""The tables of kamflow. The database row is the truth; nothing lives only in memory."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC; SQLite's naive values come back as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """The value in UTC, as the database stores it (naive on SQLite); ValueError for a naive
        datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("kamflow stores only timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """A stored value as a timezone-aware datetime in UTC."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnumText(sa.types.TypeDecorator[Any]):
    """A str enum kept as its text (a plain VARCHAR, no database enum type), read back as the
    enum; a value that is not one of the enum's is refused before it reaches the database."""

    impl = sa.String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """The enum's text; ValueError for a value that is not one of the enum's."""
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        """The stored text as the enum."""
        return None if value is None else self.enum(value)


def enum_column(enum: type[StrEnum], length: int, *, default: StrEnum | None = None) -> Any:
    """A fresh NOT NULL column for a str enum (each table needs its own Column object)."""
    return sa.Column(EnumText(enum, length), nullable=False, default=default)


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    """A fresh column for a UTC datetime (each table needs its own Column object)."""
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class AccountKind(StrEnum):
    """Whether a key account is an existing customer or a new one to win."""

    EXISTING = "existing"
    NEW = "new"


class ActionStatus(StrEnum):
    """Where a plan action stands."""

    OPEN = "open"
    DONE = "done"
    #: Dropped from the plan (with the reason in the history): no reminders, not counted.
    CANCELLED = "cancelled"


class HistoryKind(StrEnum):
    """What a history entry records."""

    CREATED = "created"
    TRANSITION = "transition"
    STRATEGY = "strategy"
    ROLE = "role"
    ANSWER = "answer"
    ACTION = "action"
    KPI = "kpi"
    REVIEW = "review"
    SNOOZE = "snooze"
    SCORE = "score"
    WORKFLOW = "workflow"
    #: The account was renamed.
    NAME = "name"
    #: The account passed to another owner.
    OWNER = "owner"


class OutboxStatus(StrEnum):
    """Where a queued notification stands."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    #: No longer true when its turn came (the account left the stage, was snoozed; the action
    #: was done): never sent, kept for the record.
    OBSOLETE = "obsolete"


class MessageKind(StrEnum):
    """What a queued message is about."""

    REMINDER = "reminder"
    ESCALATION = "escalation"
    ACTION = "action"
    OWNER_DIGEST = "owner_digest"
    LEADER_DIGEST = "leader_digest"


class Person(SQLModel, table=True):
    """Someone who owns accounts, holds roles or leads the organisation."""

    __tablename__ = "person"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str = Field(default="", max_length=200)
    is_leader: bool = Field(default=False)
    #: A deactivated person receives no mail; what they still own shows as a warning.
    active: bool = Field(
        default=True, sa_column=sa.Column(sa.Boolean(), nullable=False, server_default=sa.true())
    )
    created_at: datetime = Field(sa_column=utc_column())
    #: The login this person signs in with: the PostgreSQL role (``session_user``), or on SQLite
    #: the operating-system user. A login is linked to one person at most.
    login: str | None = Field(default=None, max_length=128, unique=True, index=True)
    #: An admin manages people and logins, and may act on another person's behalf (``--as``).
    is_admin: bool = Field(
        default=False,
        sa_column=sa.Column(sa.Boolean(), nullable=False, server_default=sa.false()),
    )


class Setting(SQLModel, table=True):
    """A fact about the database itself, by name (the login that created it)."""

    __tablename__ = "kamflow_setting"

    name: str = Field(primary_key=True, max_length=100)
    value: str = Field(max_length=1000)


class Account(SQLModel, table=True):
    """A key account and where it stands in its workflow."""

    __tablename__ = "account"
    __table_args__ = (
        # Accounts are looked up by name in any case; the index keeps that one probe, not a scan.
        sa.Index("ix_account_name_lower", sa.text("lower(name)"), unique=True),
        # The stall scan: the accounts of one stage that entered it before a moment.
        sa.Index("ix_account_stall", "workflow", "stage", "stage_entered_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    owner_id: int = Field(foreign_key="person.id", index=True)
    workflow: str = Field(max_length=100)
    kind: AccountKind = Field(default=AccountKind.EXISTING, sa_column=enum_column(AccountKind, 20))
    stage: str = Field(max_length=100, index=True)
    stage_entered_at: datetime = Field(sa_column=utc_column())
    version: int = Field(default=1)
    created_at: datetime = Field(sa_column=utc_column())


class Strategy(SQLModel, table=True):
    """What the account plan is trying to do, with whom, and why."""

    __tablename__ = "strategy"

    account_id: int = Field(foreign_key="account.id", primary_key=True)
    objective: str = Field(default="")
    stakeholders: str = Field(default="")
    rationale: str = Field(default="")
    updated_at: datetime = Field(sa_column=utc_column())
    updated_by: str = Field(max_length=320)


class RoleAssignment(SQLModel, table=True):
    """One person holding one of the six account-team roles on one account."""

    __tablename__ = "role_assignment"
    __table_args__ = (sa.UniqueConstraint("account_id", "role", "person_id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    role: str = Field(max_length=50)
    person_id: int = Field(foreign_key="person.id")
    assigned_at: datetime = Field(sa_column=utc_column())


class Answer(SQLModel, table=True):
    """An answer to a planning question, or its mark as not applicable (with the reason)."""

    __tablename__ = "answer"
    __table_args__ = (sa.UniqueConstraint("account_id", "question_id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    question_id: str = Field(max_length=100)
    text: str = Field(default="")
    not_applicable: bool = Field(default=False)
    answered_at: datetime = Field(sa_column=utc_column())
    answered_by: str = Field(max_length=320)


class Action(SQLModel, table=True):
    """A task of the action plan: who does what by when, with which resources."""

    __tablename__ = "action"
    # The overdue-actions scan: open actions due by a day.
    __table_args__ = (sa.Index("ix_action_open_due", "status", "due"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    title: str = Field(max_length=500)
    owner_id: int | None = Field(default=None, foreign_key="person.id")
    due: date | None = Field(default=None)
    resources: str = Field(default="")
    status: ActionStatus = Field(
        default=ActionStatus.OPEN,
        sa_column=enum_column(ActionStatus, 20, default=ActionStatus.OPEN),
    )
    created_at: datetime = Field(sa_column=utc_column())
    done_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Kpi(SQLModel, table=True):
    """A measure of the account's success, with its target."""

    __tablename__ = "kpi"
    __table_args__ = (sa.UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    name: str = Field(max_length=200)
    target: float
    unit: str = Field(default="", max_length=50)
    lower_is_better: bool = Field(default=False)
    created_at: datetime = Field(sa_column=utc_column())
    #: Set when the KPI was removed from the plan: guards stop asking for it, its values stay.
    removed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class KpiValue(SQLModel, table=True):
    """A value of a KPI, recorded for a period such as 2027-Q2."""

    __tablename__ = "kpi_value"
    # A KPI's latest value is one probe: its values in the order they were recorded.
    __table_args__ = (sa.Index("ix_kpi_value_latest", "kpi_id", "recorded_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    kpi_id: int = Field(foreign_key="kpi.id")
    value: float
    period: str = Field(max_length=50)
    recorded_at: datetime = Field(sa_column=utc_column())
    recorded_by: str = Field(max_length=320)


class Review(SQLModel, table=True):
    """The written conclusion of one pass through Review."""

    __tablename__ = "review"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    conclusion: str
    written_at: datetime = Field(sa_column=utc_column())
    written_by: str = Field(max_length=320)


class HistoryEntry(SQLModel, table=True):
    """One change to an account: who, when, what; never updated or deleted."""

    __tablename__ = "history"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    at: datetime = Field(sa_column=utc_column())
    actor: str = Field(max_length=320)
    kind: HistoryKind = Field(sa_column=enum_column(HistoryKind, 20))
    transition: str | None = Field(default=None, max_length=100)
    from_stage: str | None = Field(default=None, max_length=100)
    to_stage: str | None = Field(default=None, max_length=100)
    note: str = Field(default="")
    verdicts: str = Field(default="[]")
    #: Seals this row and the one before it (kamflow.records.chain): set by every writer.
    hash: str = Field(max_length=64)
    #: The login that made the change (NULL on rows written before logins were recorded).
    login: str | None = Field(default=None, max_length=128)
    #: Who really acted when an admin acted on behalf of ``actor`` (``--as``): their email, or
    #: ``login NAME`` for the login that created the database before it was linked to a person.
    acted_by: str | None = Field(default=None, max_length=340)


class Notification(SQLModel, table=True):
    """A queued message: inserted once per identity, delivered at least once.

    What the message is about is kept in typed columns (kind, account, stay in a stage, rung,
    repeat, action, due date, period, person); ``key`` is derived from them in one place
    (`kamflow.outbox.Identity.key`) and is what makes a second insert a no-op. The body is
    rendered from ``template`` and its frozen ``context`` when the message is delivered, so every
    attempt sends the same bytes; rows queued without a template carry their bodies.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # Is this rung of this stay already queued? (the stall step's anti-join)
        sa.Index("ix_outbox_stall", "account_id", "stage", "stage_entered_at", "rung", "due_at"),
        # Is this reminder of this action, for this due date, already queued?
        sa.Index("ix_outbox_action", "action_id", "action_due", "period"),
        # Has this person had this period's digest?
        sa.Index("ix_outbox_person", "person_id", "kind", "period"),
        # Delivery claims what is pending and due, oldest first.
        sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    kind: MessageKind = Field(sa_column=enum_column(MessageKind, 50))
    account_id: int | None = Field(default=None, foreign_key="account.id")
    #: Whom the message is for: the owner reminded, the action's owner, the digest's reader.
    person_id: int | None = Field(default=None)
    stage: str | None = Field(default=None, max_length=100)
    stage_entered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    rung: str | None = Field(default=None, max_length=20)
    repeat: int | None = Field(default=None)
    action_id: int | None = Field(default=None)
    action_due: date | None = Field(default=None)
    #: The day of an action reminder or owner digest (2027-01-19), the week of a leader digest.
    period: str | None = Field(default=None, max_length=20)
    #: When the message fell due (a rung of the ladder, a digest's hour).
    due_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    recipients: str
    cc: str = Field(default="")
    subject: str
    template: str = Field(default="", max_length=50)
    context: str = Field(default="")
    body_text: str = Field(default="")
    body_html: str = Field(default="")
    status: OutboxStatus = Field(
        default=OutboxStatus.PENDING,
        sa_column=enum_column(OutboxStatus, 20, default=OutboxStatus.PENDING),
    )
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_column=utc_column())
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_error: str = Field(default="")
    created_at: datetime = Field(sa_column=utc_column())
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    #: The channels (bits of ``defaults.CHANNELS``: mail 1, chat 2) that have the message, and
    #: those that refused it for good: a run sends only on the channels in neither.
    delivered: int = Field(
        default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0")
    )
    refused: int = Field(
        default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0")
    )


class Snooze(SQLModel, table=True):
    """A pause of the reminder ladder for one stay in one stage."""

    __tablename__ = "snooze"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    stage: str = Field(max_length=100)
    stage_entered_at: datetime = Field(sa_column=utc_column())
    until: datetime = Field(sa_column=utc_column())
    reason: str
    snoozed_by: str = Field(max_length=320)
    snoozed_at: datetime = Field(sa_column=utc_column())


class Heartbeat(SQLModel, table=True):
    """The last run of one daemon step, with its counts or the problem that stopped it."""

    __tablename__ = "heartbeat"

    step: str = Field(primary_key=True, max_length=50)
    at: datetime = Field(sa_column=utc_column())
    ok: bool = Field(default=True)
    detail: str = Field(default="")
    #: The latest period (a day, a week) for which the step finished its whole pass.
    done_period: str = Field(default="", max_length=20)


class Score(SQLModel, table=True):
    """One scoring of an account on the eight selection factors (1-5); earlier ones are kept."""

    __tablename__ = "score"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    revenue: int
    growth: int
    renewal: int
    win_now: int
    effort: int
    relationship: int
    fit: int
    logo: int
    total: float
    scored_at: datetime = Field(sa_column=utc_column())
    scored_by: str = Field(max_length=320)
