"""Selection: the eight-factor scores of accounts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kamflow.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FACTORS = ("revenue", "growth", "renewal", "win_now", "effort", "relationship", "fit", "logo")


def upgrade() -> None:
    op.create_table(
        "score",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        *(sa.Column(factor, sa.Integer(), nullable=False) for factor in FACTORS),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("scored_at", kamflow.models.UTCDateTime(), nullable=False),
        sa.Column("scored_by", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_score_account_id", "score", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_score_account_id", table_name="score")
    op.drop_table("score")
