"""A typed outbox: what a message is about in columns; the stall scan's index; digest passes.

Existing rows keep their keys; what those keys say is written into the new columns once, here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

import kamflow.models
from kamflow.config import work_calendar
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.create_index("ix_account_stall", ["workflow", "stage", "stage_entered_at"])
    with op.batch_alter_table("action") as batch:
        batch.create_index("ix_action_open_due", ["status", "due"])
    with op.batch_alter_table("kpi_value") as batch:
        batch.drop_index("ix_kpi_value_kpi_id")
        batch.create_index("ix_kpi_value_latest", ["kpi_id", "recorded_at", "id"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stage", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("stage_entered_at", kamflow.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("rung", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("repeat", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("action_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("action_due", sa.Date(), nullable=True))
        batch.add_column(sa.Column("period", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("due_at", kamflow.models.UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("template", sa.String(length=50), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("context", sa.String(), nullable=False, server_default=""))
        batch.drop_index("ix_outbox_status")
        batch.drop_index("ix_outbox_next_attempt_at")
        batch.drop_index("ix_outbox_account_id")
    with op.batch_alter_table("heartbeat") as batch:
        batch.add_column(
            sa.Column("done_period", sa.String(length=20), nullable=False, server_default="")
        )
    _carry_over_keys()
    with op.batch_alter_table("outbox") as batch:
        batch.create_index(
            "ix_outbox_stall", ["account_id", "stage", "stage_entered_at", "rung", "due_at"]
        )
        batch.create_index("ix_outbox_action", ["action_id", "action_due", "period"])
        batch.create_index("ix_outbox_person", ["person_id", "kind", "period"])
        batch.create_index("ix_outbox_due", ["status", "next_attempt_at"])


def _carry_over_keys() -> None:
    """Write what each existing key says into the typed columns (the last time a key is parsed)."""
    bind = op.get_bind()
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer()),
        sa.column("key", sa.String()),
        sa.column("account_id", sa.Integer()),
        sa.column("created_at", kamflow.models.UTCDateTime()),
        sa.column("person_id", sa.Integer()),
        sa.column("stage", sa.String()),
        sa.column("stage_entered_at", kamflow.models.UTCDateTime()),
        sa.column("rung", sa.String()),
        sa.column("repeat", sa.Integer()),
        sa.column("action_id", sa.Integer()),
        sa.column("action_due", sa.Date()),
        sa.column("period", sa.String()),
        sa.column("due_at", kamflow.models.UTCDateTime()),
    )
    owners: dict[int, int] = {
        row[0]: row[1] for row in bind.execute(sa.text("SELECT id, owner_id FROM account"))
    }
    actions: dict[int, int | None] = {
        row[0]: row[1] for row in bind.execute(sa.text("SELECT id, owner_id FROM action"))
    }
    workflows: dict[int, str] = {
        row[0]: row[1] for row in bind.execute(sa.text("SELECT id, workflow FROM account"))
    }
    rows = bind.execute(
        sa.select(outbox.c.id, outbox.c.key, outbox.c.account_id, outbox.c.created_at)
    ).all()
    updates = []
    for row in rows:
        values = _columns(row.key, row.created_at, owners, actions, workflows)
        if values:
            updates.append({"row_id": row.id, **values})
    for start in range(0, len(updates), CHUNK):
        chunk = updates[start : start + CHUNK]
        for names in {tuple(sorted(u)) for u in chunk}:
            same = [u for u in chunk if tuple(sorted(u)) == names]
            statement = (
                outbox.update()
                .where(outbox.c.id == sa.bindparam("row_id"))
                .values({name: sa.bindparam(name) for name in names if name != "row_id"})
            )
            bind.execute(statement, same)


def _columns(
    key: str,
    created_at: datetime,
    owners: dict[int, int],
    actions: dict[int, int | None],
    workflows: dict[int, str],
) -> dict[str, Any]:
    kind, _, rest = key.partition(":")
    try:
        if kind == "stall":
            account_id, stage, tail = rest.split(":", 2)
            entered_text, rung, repeat = tail.rsplit(":", 2)
            entered = datetime.fromisoformat(entered_text)
            account = int(account_id)
            return {
                "person_id": owners.get(account),
                "stage": stage,
                "stage_entered_at": entered,
                "rung": rung,
                "repeat": int(repeat),
                "due_at": _rung_due(workflows.get(account), stage, entered, rung, int(repeat))
                or created_at,
            }
        if kind == "action":
            action_id, due_text, repeat = rest.split(":")
            due = date.fromisoformat(due_text)
            every = _action_every_days()
            return {
                "person_id": actions.get(int(action_id)),
                "action_id": int(action_id),
                "action_due": due,
                "repeat": int(repeat),
                "period": (due + timedelta(days=int(repeat) * every)).isoformat(),
            }
        if kind == "digest":
            _who, person, period = rest.split(":", 2)
            return {"person_id": int(person) if person.isdigit() else None, "period": period}
    except ValueError:
        return {}
    return {}


def _rung_due(
    workflow: str | None, stage: str, entered: datetime, rung: str, repeat: int
) -> datetime | None:
    """When a queued rung fell due, from its workflow's limits (None if that cannot be known)."""
    if workflow is None:
        return None
    from kamflow.definitions.businessdays import counting
    from kamflow.definitions.discovery import get_workflow
    from kamflow.errors import KamflowError

    try:
        definition = get_workflow(workflow)
    except KamflowError:
        return None
    spec = definition.stage(stage)
    if spec is None:
        return None
    ladder = definition.ladder_for(spec)
    days = counting(spec, _calendar())
    if rung == "remind":
        return days.deadline(entered, spec.limit + repeat * ladder.remind_every_days)
    offset = spec.limit + ladder.escalate_after_days + repeat * ladder.escalate_every_days
    return days.deadline(entered, offset)


def _calendar() -> WorkCalendar:
    """The business days of the environment's KAMFLOW_TIMEZONE and KAMFLOW_HOLIDAYS (UTC without
    holidays when they cannot be used): a stage that counts business days counts them."""
    from kamflow.errors import ConfigError

    try:
        return work_calendar(os.environ)
    except ConfigError:
        return UTC_CALENDAR


def _action_every_days() -> int:
    from kamflow import defaults

    text = os.environ.get(defaults.ENV_ACTION_REMIND_EVERY_DAYS, "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else defaults.ACTION_REMIND_EVERY_DAYS


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_due")
        batch.drop_index("ix_outbox_person")
        batch.drop_index("ix_outbox_action")
        batch.drop_index("ix_outbox_stall")
        for name in (
            "context",
            "template",
            "due_at",
            "period",
            "action_due",
            "action_id",
            "repeat",
            "rung",
            "stage_entered_at",
            "stage",
            "person_id",
        ):
            batch.drop_column(name)
        batch.create_index("ix_outbox_status", ["status"])
        batch.create_index("ix_outbox_next_attempt_at", ["next_attempt_at"])
        batch.create_index("ix_outbox_account_id", ["account_id"])
    with op.batch_alter_table("heartbeat") as batch:
        batch.drop_column("done_period")
    with op.batch_alter_table("kpi_value") as batch:
        batch.drop_index("ix_kpi_value_latest")
        batch.create_index("ix_kpi_value_kpi_id", ["kpi_id"])
    with op.batch_alter_table("action") as batch:
        batch.drop_index("ix_action_open_due")
    with op.batch_alter_table("account") as batch:
        batch.drop_index("ix_account_stall")
