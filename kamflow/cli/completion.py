"""Shell completion from the database: account names, people, roles, question ids, KPI names,
stages and workflows, offered by click's completion API (bash, zsh and fish).

The commands name their arguments the same way everywhere (``name`` is an account, ``email`` a
person, ``role_name`` a role ...), so completion is attached once, after every command module has
registered its commands, by the parameter's name: a new command gets it without a line of its own.

A completion never fails loudly: no database, a broken workflow, a bad URL all complete to
nothing. It never creates a database either, and reads at most ``LIMIT`` names, in the order of
the indexes on ``lower(account.name)`` and ``person.email``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem
    from sqlalchemy.engine import Connection

#: The most names one completion offers.
LIMIT = 50

Suggest = Callable[[click.Context, str], list[str]]


class Completing(click.types.StringParamType):
    """A plain string parameter whose completions come from ``suggest``."""

    def __init__(self, kind: str, suggest: Suggest) -> None:
        self.name = kind
        self._suggest = suggest

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        try:
            found = self._suggest(ctx, incomplete)
        except Exception:  # a completion must never print a traceback into the user's shell
            return []
        return [CompletionItem(value) for value in found]


@contextmanager
def _connection(ctx: click.Context) -> Iterator[Connection | None]:
    """A read-only connection on the database the command line names, or None when there is
    no database there (a completion never creates one)."""
    from kamflow import defaults
    from kamflow.db import engine_for

    url = ctx.find_root().params.get("database") or os.environ.get(defaults.ENV_DATABASE)
    url = url or defaults.DATABASE_URL
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:" and not os.path.exists(path):
            yield None
            return
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _prefixed(column: str, table: str, incomplete: str) -> tuple[str, dict[str, Any]]:
    """A statement for the values of an indexed lower-case column that start with
    ``incomplete``, as a range (which both databases answer from the index)."""
    low = incomplete.lower()
    sql = f"SELECT {column} FROM {table}"
    params: dict[str, Any] = {"limit": LIMIT}
    if low:
        sql += f" WHERE lower({column}) >= :low AND lower({column}) < :high"
        params.update(low=low, high=low[:-1] + chr(ord(low[-1]) + 1))
    return sql + f" ORDER BY lower({column}) LIMIT :limit", params


def accounts(ctx: click.Context, incomplete: str) -> list[str]:
    """Account names starting with ``incomplete``, in any case."""
    import sqlalchemy as sa

    with _connection(ctx) as connection:
        if connection is None:
            return []
        sql, params = _prefixed("name", "account", incomplete)
        return [str(name) for (name,) in connection.execute(sa.text(sql), params)]


def people(ctx: click.Context, incomplete: str) -> list[str]:
    """People's emails starting with ``incomplete``."""
    import sqlalchemy as sa

    with _connection(ctx) as connection:
        if connection is None:
            return []
        sql, params = _prefixed("email", "person", incomplete)
        return [str(email) for (email,) in connection.execute(sa.text(sql), params)]


def roles(ctx: click.Context, incomplete: str) -> list[str]:
    """The six roles of the account team."""
    from kamflow import defaults

    return [role for role in defaults.ROLES if role.startswith(incomplete)]


def _account_workflow(ctx: click.Context) -> str | None:
    """The workflow of the account named earlier on the command line, if it names one."""
    import sqlalchemy as sa

    name = ctx.params.get("name")
    if not name:
        return None
    with _connection(ctx) as connection:
        if connection is None:
            return None
        found = connection.execute(
            sa.text("SELECT workflow FROM account WHERE lower(name) = :name"),
            {"name": str(name).lower()},
        ).scalar()
    return str(found) if found else None


def _workflows(ctx: click.Context) -> list[Any]:
    """The workflow of the account named earlier, or else every workflow that loads."""
    from kamflow.definitions.discovery import available, get_workflow

    named = _account_workflow(ctx)
    found = []
    for name in [named] if named else sorted(available()):
        try:
            found.append(get_workflow(name))
        except Exception:  # a broken workflow file completes to nothing, the others still do
            continue
    return found


def questions(ctx: click.Context, incomplete: str) -> list[str]:
    """The question ids of the account's workflow (of every workflow before an account)."""
    ids = {q.id for workflow in _workflows(ctx) for q in workflow.questions.questions}
    return sorted(i for i in ids if i.startswith(incomplete))


def stages(ctx: click.Context, incomplete: str) -> list[str]:
    """The places of the account's workflow (of every workflow before an account)."""
    names: list[str] = []
    for workflow in _workflows(ctx):
        names += [place for place in workflow.places if place not in names]
    return [name for name in names if name.startswith(incomplete)]


def kpis(ctx: click.Context, incomplete: str) -> list[str]:
    """The KPI names of the account named earlier on the command line."""
    import sqlalchemy as sa

    name = ctx.params.get("name")
    if not name:
        return []
    with _connection(ctx) as connection:
        if connection is None:
            return []
        rows = connection.execute(
            sa.text(
                "SELECT kpi.name FROM kpi JOIN account ON account.id = kpi.account_id "
                "WHERE lower(account.name) = :name ORDER BY kpi.name LIMIT :limit"
            ),
            {"name": str(name).lower(), "limit": LIMIT},
        )
        return [str(kpi) for (kpi,) in rows if str(kpi).lower().startswith(incomplete.lower())]


def workflows(ctx: click.Context, incomplete: str) -> list[str]:
    """The names of the workflows kamflow finds."""
    from kamflow.definitions.discovery import available

    return sorted(name for name in available() if name.startswith(incomplete))


#: What a parameter of a given name holds, and where its completions come from.
BY_PARAMETER: dict[str, tuple[str, Suggest]] = {
    "name": ("account", accounts),
    "account": ("account", accounts),
    "out_name": ("account", accounts),
    "in_name": ("account", accounts),
    "email": ("person", people),
    "owner": ("person", people),
    "reassign_to": ("person", people),
    "role_name": ("role", roles),
    "question_id": ("question", questions),
    "kpi_name": ("kpi", kpis),
    "to": ("stage", stages),
    "stage": ("stage", stages),
    "workflow_name": ("workflow", workflows),
    "workflow": ("workflow", workflows),
}


def attach(group: click.Group) -> None:
    """Give every plain-text parameter of ``group``'s commands, by its name, its completions."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            attach(command)
            continue
        for param in command.params:
            known = BY_PARAMETER.get(param.name or "")
            if known and isinstance(param.type, click.types.StringParamType):
                param.type = Completing(*known)
