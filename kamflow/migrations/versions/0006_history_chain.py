"""A hash chain over the history: each row seals its content and the row before it.

The rows written before this revision are chained here, in id order, a batch at a time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kamflow.models
from kamflow.records.chain import CONTENT_COLUMNS, GENESIS, HASH_LENGTH, row_hash

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows read and updated per round trip while the existing history is chained.
_BATCH = 5000

_HISTORY = sa.table(
    "history",
    sa.column("id", sa.Integer()),
    sa.column("account_id", sa.Integer()),
    sa.column("at", kamflow.models.UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("transition", sa.String()),
    sa.column("from_stage", sa.String()),
    sa.column("to_stage", sa.String()),
    sa.column("note", sa.String()),
    sa.column("verdicts", sa.String()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    # Plain ADD COLUMN on both databases (a batch copy of the table would rebuild it). SQLite
    # cannot make a column NOT NULL afterwards, and adds a NOT NULL one only with a default:
    # there the empty default stays, and a row written without a hash fails verification.
    if postgresql:
        op.add_column("history", sa.Column("hash", sa.String(HASH_LENGTH), nullable=True))
    else:
        op.add_column(
            "history",
            sa.Column("hash", sa.String(HASH_LENGTH), nullable=False, server_default=""),
        )
    # The append-only triggers refuse the UPDATEs that fill the column: lift them meanwhile,
    # inside this migration's transaction, so no other writer ever sees the table without them.
    _drop_append_only(postgresql)
    _chain_existing_rows()
    _create_append_only(postgresql)
    if postgresql:
        op.alter_column("history", "hash", nullable=False)


def _chain_existing_rows() -> None:
    """Seal every row, oldest first, reading the table by id ranges (never all of it at once)."""
    bind = op.get_bind()
    select = sa.select(_HISTORY).where(_HISTORY.c.id > sa.bindparam("after"))
    select = select.order_by(_HISTORY.c.id).limit(_BATCH)
    update = (
        _HISTORY.update()
        .where(_HISTORY.c.id == sa.bindparam("row_id"))
        .values(hash=sa.bindparam("row_hash"))
    )
    previous, after = GENESIS, 0
    while True:
        rows = bind.execute(select, {"after": after}).all()
        if not rows:
            return
        sealed = []
        for row in rows:
            fields = row._mapping
            previous = row_hash(previous, {name: fields[name] for name in CONTENT_COLUMNS})
            sealed.append({"row_id": fields["id"], "row_hash": previous})
        bind.execute(update, sealed)
        after = rows[-1].id


def _drop_append_only(postgresql: bool) -> None:
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS history_append_only ON history")
    else:
        for operation in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS history_append_only_{operation}")


def _create_append_only(postgresql: bool) -> None:
    """The triggers of revision 0001, as they were (PostgreSQL keeps the function)."""
    if postgresql:
        op.execute(
            "CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON history "
            "FOR EACH ROW EXECUTE FUNCTION kamflow_history_append_only()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER history_append_only_{operation.lower()} "
                f"BEFORE {operation} ON history "
                "BEGIN SELECT RAISE(ABORT, 'history is append-only'); END"
            )


def downgrade() -> None:
    op.drop_column("history", "hash")
