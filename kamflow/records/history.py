"""The append-only history of every account: who changed what, when."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.guards import AccountLike
from kamflow.models import Account, HistoryEntry, HistoryKind
from kamflow.records import chain
from kamflow.verdict import Verdict, verdicts_json

HISTORY = HistoryEntry.__table__  # type: ignore[attr-defined]


def record(
    session: Session,
    account: AccountLike,
    *,
    actor: str,
    at: datetime,
    kind: HistoryKind,
    note: str = "",
    transition: str | None = None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    verdicts: list[Verdict] | None = None,
) -> None:
    """Append one entry, in the caller's transaction (written at once, not at the next flush),
    chained to the entry before it."""
    connection = session.connection()
    row: dict[str, Any] = {
        "account_id": account.id,
        "at": at,
        "actor": str(actor),
        "kind": kind,
        "note": note,
        "transition": transition,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "verdicts": verdicts_json(verdicts or []),
        **who_really(actor),
    }
    chain.seal(connection, [row])
    connection.execute(_APPEND, row)


def append_many(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Append these entries in one executemany, chained in their order, in the caller's
    transaction. Each row names every content column (kamflow.records.chain.CONTENT_COLUMNS);
    the login and who really acted come from its ``actor``."""
    for row in rows:
        row.update(who_really(row["actor"]), actor=str(row["actor"]))
    if rows:
        chain.seal(connection, rows)
        connection.execute(_APPEND, rows)


def who_really(actor: str) -> dict[str, str | None]:
    """The history's ``login`` and ``acted_by`` for a change made by ``actor`` (an
    kamflow.records.identity.Actor; a plain email has neither)."""
    return {"login": getattr(actor, "login", None), "acted_by": getattr(actor, "acted_by", None)}


#: Built once: the statement's shape never changes, only the values bound to it.
_APPEND = HISTORY.insert()


def entries(
    session: Session, account: Account, kinds: tuple[HistoryKind, ...] | None = None
) -> list[dict[str, Any]]:
    """The account's history, oldest first, as plain data; only the entries of ``kinds``, if
    given."""
    which = sa.true() if kinds is None else col(HistoryEntry.kind).in_([k.value for k in kinds])
    rows = session.exec(
        select(HistoryEntry)
        .where(HistoryEntry.account_id == account.id, which)
        .order_by(col(HistoryEntry.at), col(HistoryEntry.id))
    ).all()
    return [
        {
            "id": row.id,
            "at": row.at.isoformat(),
            "actor": row.actor,
            "acted_by": row.acted_by,
            "login": row.login,
            "kind": row.kind,
            "transition": row.transition,
            "from": row.from_stage,
            "to": row.to_stage,
            "note": row.note,
            "verdicts": json.loads(row.verdicts),
        }
        for row in rows
    ]


def verify(connection: sa.Connection) -> chain.ChainReport:
    """Walk the whole history's hash chain, a batch at a time: intact, or where it breaks."""
    return chain.verify(connection, defaults.HISTORY_VERIFY_BATCH)
