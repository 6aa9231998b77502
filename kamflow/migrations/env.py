"""Alembic's entry point: kamflow runs migrations on a connection it already holds."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import kamflow.models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("kamflow runs its migrations itself: use `kamflow init`")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
