"""Delivery per channel: which channels (mail, chat) have each message, and which refused it.

Messages sent before this revision went by mail: they are marked so, in one statement.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The bit of the mail channel (kamflow.defaults.CHANNELS, as of this revision).
_MAIL = 1


def upgrade() -> None:
    # Plain ADD COLUMN with a default on both databases: no copy of the table.
    op.add_column(
        "outbox", sa.Column("delivered", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("outbox", sa.Column("refused", sa.Integer(), nullable=False, server_default="0"))
    op.execute(sa.text(f"UPDATE outbox SET delivered = {_MAIL} WHERE status = 'sent'"))
    op.execute(sa.text(f"UPDATE outbox SET refused = {_MAIL} WHERE status = 'dead'"))


def downgrade() -> None:
    op.drop_column("outbox", "refused")
    op.drop_column("outbox", "delivered")
