"""The history's hash chain: each row seals its own content and the row before it.

Every history row carries ``hash`` = SHA-256 over the previous row's hash (in id order; GENESIS
for the first) and a canonical text of the row's content (every column but ``id`` and ``hash``).
Editing a row, or deleting one, breaks the chain at that point, which ``verify`` finds. One
function, `row_hash`, computes it for the writers, the migration that sealed the rows written
before the chain existed, and the verifier.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from kamflow.errors import BrokenHistory
from kamflow.text import quoted

#: The hash the first row chains from.
GENESIS = "0" * 64
#: A SHA-256 digest in hexadecimal.
HASH_LENGTH = 64
#: The columns a row's hash seals, in the order they are encoded (everything but id and hash).
CONTENT_COLUMNS = (
    "account_id",
    "at",
    "actor",
    "kind",
    "transition",
    "from_stage",
    "to_stage",
    "note",
    "verdicts",
)
#: Columns added later: sealed after CONTENT_COLUMNS when a row holds any of them, so the rows
#: written before they existed (NULL in each) keep their hashes.
LATER_COLUMNS = ("login", "acted_by")
#: PostgreSQL's advisory lock that lets one transaction at a time extend the chain.
CHAIN_LOCK = 4242003
#: Where a connection keeps the chain's head for the transaction that is extending it.
_HEAD = "kamflow_history_head"


def _canonical(value: Any) -> Any:
    """A column's value in a form that reads back the same on both databases."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


def row_hash(previous: str, row: Mapping[str, Any]) -> str:
    """The hash of a history row whose content is ``row`` (its columns by name), after a row
    whose hash is ``previous``.

    The content is encoded as a JSON array of CONTENT_COLUMNS in their order: NULL stays null
    (distinct from an empty text), datetimes are UTC with microseconds, enums their value; then
    LATER_COLUMNS, when the row holds any of them.
    """
    values = [_canonical(row[name]) for name in CONTENT_COLUMNS]
    later = [_canonical(row.get(name)) for name in LATER_COLUMNS]
    if any(value is not None for value in later):
        values += later
    content = json.dumps(
        values,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{previous}\n{content}".encode()).hexdigest()


def _history() -> sa.Table:
    from kamflow.models import HistoryEntry

    table: sa.Table = HistoryEntry.__table__  # type: ignore[attr-defined]
    return table


def seal(connection: sa.Connection, rows: Iterable[MutableMapping[str, Any]]) -> None:
    """Set ``hash`` on each of ``rows`` (history rows about to be inserted, in that order), chained
    from the newest row in the database, within the caller's transaction.

    The first call of a transaction (or of a savepoint) takes the chain's lock on PostgreSQL and
    reads the head: one indexed read; later calls chain from what the transaction wrote. SQLite
    writers already run one at a time (BEGIN IMMEDIATE).
    """
    head = _head(connection)
    for row in rows:
        head = row_hash(head, row)
        row["hash"] = head
    connection.info[_HEAD] = (_scope(connection), head)


def _scope(connection: sa.Connection) -> tuple[Any, Any]:
    # A savepoint rolled back takes its rows with it: the head is read again inside a new one.
    return connection.get_transaction(), connection.get_nested_transaction()


def _head(connection: sa.Connection) -> str:
    cached = connection.info.get(_HEAD)
    if cached is not None:
        scope, head = cached
        if all(a is b for a, b in zip(scope, _scope(connection), strict=True)):
            return str(head)
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK})"))
    history = _history()
    newest = connection.execute(
        sa.select(history.c.hash).order_by(history.c.id.desc()).limit(1)
    ).scalar()
    return str(newest) if newest is not None else GENESIS


class Break(StrEnum):
    """How the chain breaks at a row."""

    #: The row's content (or its hash) is not what was written.
    CHANGED = "changed"
    #: The row is intact but the one(s) before it are gone.
    MISSING = "missing"


@dataclass(frozen=True)
class ChainReport:
    """What walking the chain found: how many rows matched, and the first that did not."""

    rows: int
    broken_id: int | None = None
    account_id: int | None = None
    account: str | None = None
    at: datetime | None = None
    problem: Break | None = None
    previous_id: int | None = None

    @property
    def intact(self) -> bool:
        """Whether every row matched."""
        return self.broken_id is None

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for --json)."""
        data: dict[str, Any] = {"intact": self.intact, "rows": self.rows}
        if not self.intact:
            data["broken"] = {
                "id": self.broken_id,
                "account_id": self.account_id,
                "account": self.account,
                "at": self.at.isoformat() if self.at else None,
                "problem": self.problem,
                "previous_id": self.previous_id,
            }
        return data


def broken(report: ChainReport) -> BrokenHistory:
    """The error that names where the chain breaks (``report`` must not be intact)."""
    account = quoted(report.account) if report.account else f"id {report.account_id}"
    when = report.at.strftime("%Y-%m-%d %H:%M UTC") if report.at else "unknown time"
    if report.problem is Break.MISSING:
        what = "a row before it is missing"
        if report.previous_id is not None:
            what += f" (the one before is row {report.previous_id})"
    else:
        what = "it was changed"
    return BrokenHistory(
        f"history broken at row {report.broken_id} (account {account}, {when}): {what}"
    )


def verify(connection: sa.Connection, batch: int) -> ChainReport:
    """Walk the whole chain in id order, ``batch`` rows fetched at a time, and report the first
    row whose hash does not follow from the row before it.

    Whether a broken row was changed or follows a missing row is told by its id: rows are
    numbered one after another, so a gap before a row that does not match means a row was
    removed there. (On PostgreSQL a transaction that was rolled back can leave a gap too: then
    a changed row right after such a gap is reported as following a missing one.)
    """
    from sqlmodel import col

    from kamflow.db import stream
    from kamflow.models import Account

    history = _history()
    statement = sa.select(
        history.c.id,
        history.c.hash,
        *(history.c[name] for name in (*CONTENT_COLUMNS, *LATER_COLUMNS)),
    ).order_by(history.c.id)
    previous, previous_id, count = GENESIS, 0, 0
    for rows in stream(connection, statement, batch):
        for row in rows:
            fields = row._mapping
            if fields["hash"] != row_hash(previous, fields):
                gap = fields["id"] != previous_id + 1
                name = connection.execute(
                    sa.select(col(Account.name)).where(col(Account.id) == fields["account_id"])
                ).scalar()
                return ChainReport(
                    rows=count,
                    broken_id=fields["id"],
                    account_id=fields["account_id"],
                    account=name,
                    at=fields["at"],
                    problem=Break.MISSING if gap else Break.CHANGED,
                    previous_id=previous_id or None,
                )
            previous, previous_id = fields["hash"], fields["id"]
            count += 1
    return ChainReport(rows=count)
