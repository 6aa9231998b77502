"""Corrections: a person can be deactivated, a KPI removed (its values kept), an action cancelled.

A cancelled action needs no column: its status says so. Existing people stay active.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kamflow.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: a batch copy of `person` would have to drop a table
    # that accounts, roles and actions point to, which SQLite refuses with foreign keys on.
    op.add_column(
        "person", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("kpi", sa.Column("removed_at", kamflow.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("kpi", "removed_at")
    op.drop_column("person", "active")
