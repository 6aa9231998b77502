"""Identity: a person's login and admin flag, who really acted on each history row, and the
login that created the database (for a database made before, the login that upgrades it).

Existing people have no login and are not admins; existing history rows keep NULL in the new
columns, which leaves their hashes as they were (kamflow.records.chain seals these columns only
when they hold something).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kamflow.records.identity import FOUNDER, os_login

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: a batch copy of `person` would have to drop a table
    # that accounts, roles and actions point to (SQLite refuses with foreign keys on), and one of
    # `history` would lift its append-only triggers.
    op.add_column("person", sa.Column("login", sa.String(128), nullable=True))
    op.add_column(
        "person", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_index("ix_person_login", "person", ["login"], unique=True)
    op.add_column("history", sa.Column("login", sa.String(128), nullable=True))
    op.add_column("history", sa.Column("acted_by", sa.String(340), nullable=True))
    setting = op.create_table(
        "kamflow_setting",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(1000), nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        login = str(bind.execute(sa.text("SELECT session_user")).scalar())
    else:
        login = os_login()
    op.bulk_insert(setting, [{"name": FOUNDER, "value": login}])


def downgrade() -> None:
    op.drop_table("kamflow_setting")
    op.drop_column("history", "acted_by")
    op.drop_column("history", "login")
    op.drop_index("ix_person_login", table_name="person")
    op.drop_column("person", "is_admin")
    op.drop_column("person", "login")
