"""The reminder ladder: snoozes and the daemon's heartbeat.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kamflow.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snooze",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("stage_entered_at", kamflow.models.UTCDateTime(), nullable=False),
        sa.Column("until", kamflow.models.UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("snoozed_by", sa.String(length=320), nullable=False),
        sa.Column("snoozed_at", kamflow.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_snooze_account_id", "snooze", ["account_id"])
    op.create_table(
        "heartbeat",
        sa.Column("step", sa.String(length=50), nullable=False),
        sa.Column("at", kamflow.models.UTCDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("step"),
    )


def downgrade() -> None:
    op.drop_table("heartbeat")
    op.drop_index("ix_snooze_account_id", table_name="snooze")
    op.drop_table("snooze")
