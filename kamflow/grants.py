"""PostgreSQL's grants for kamflow's users: what a login may do in the database, below kamflow.

`kamflow init` on PostgreSQL makes two group roles (once per server) and grants them what kamflow
needs in its schema and no more:

- ``kamflow_users`` reads every table; inserts and updates the rows kamflow changes; only
  inserts into ``history`` (no UPDATE, DELETE or TRUNCATE: the history stays append-only even
  for a login that bypasses kamflow); deletes only role assignments; never writes ``person``
  or the database's own settings.
- ``kamflow_admins``, a member of ``kamflow_users``, also adds and changes people.

A person's login joins one of them (``GRANT kamflow_users TO alice``) and is linked to the person
in kamflow (``kamflow person link alice@example.com alice``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

USERS, ADMINS = "kamflow_users", "kamflow_admins"
#: Tables kamflow's users may only read, or (history) only append to, or (person) only admins
#: may change.
_READ_ONLY = ("alembic_version", "kamflow_setting")
_APPEND_ONLY = ("history",)
_ADMINS_WRITE = ("person",)
#: The only table rows are deleted from (a role unassigned).
_DELETABLE = ("role_assignment",)


def grant(engine: Engine) -> None:
    """Create the group roles if they are missing and (re)grant them kamflow's tables in the
    schema kamflow is in. PostgreSQL only."""
    from sqlmodel import SQLModel

    import kamflow.models  # noqa: F401  (the tables)

    with engine.begin() as connection:
        run = connection.exec_driver_sql
        preparer = connection.dialect.identifier_preparer
        current = connection.execute(sa.text("SELECT current_schema()")).scalar()
        schema = preparer.quote(str(current))
        for role in (USERS, ADMINS):
            # Roles belong to the whole server: another kamflow database may have made them.
            run(
                f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
        run(f"GRANT {USERS} TO {ADMINS}")
        run(f"GRANT USAGE ON SCHEMA {schema} TO {USERS}")
        with_ids = {t.name for t in SQLModel.metadata.sorted_tables if "id" in t.c}
        tables = [table.name for table in SQLModel.metadata.sorted_tables]
        for name in [*tables, "alembic_version"]:
            table = f"{schema}.{preparer.quote(name)}"
            run(f"REVOKE ALL ON {table} FROM {USERS}, {ADMINS}")
            run(f"GRANT {_users_may(name)} ON {table} TO {USERS}")
            if name in _ADMINS_WRITE:
                run(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {ADMINS}")
            if name in with_ids:
                sequence = connection.execute(
                    sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table}
                ).scalar()
                if sequence is not None:
                    run(f"GRANT USAGE ON SEQUENCE {sequence} TO {USERS}")


def _users_may(table: str) -> str:
    """What kamflow's users may do to ``table``."""
    if table in _READ_ONLY or table in _ADMINS_WRITE:
        return "SELECT"
    if table in _APPEND_ONLY:
        return "SELECT, INSERT"
    if table in _DELETABLE:
        return "SELECT, INSERT, UPDATE, DELETE"
    return "SELECT, INSERT, UPDATE"
