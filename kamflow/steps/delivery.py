"""Delivering the outbox: claim a batch with a lease, send it over one connection, record the
results in one transaction, and go on while the run's time lasts.

At-least-once: a crash between sending and recording resends those messages later, with the same
Message-ID. Several daemons may deliver at once: a claimed row is invisible to the others until its
lease ends (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock serialises the claims),
and a run stops sending before its lease runs out.

A server that drops the connection while taking one message gets that message once more on a fresh
connection; if it drops it again, the message counts an attempt (backoff, then dead) and the rest
of the queue goes on. A true outage (no connection, TLS, authentication) counts against no message.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import defaults
from kamflow.db import read_scope, session_scope
from kamflow.errors import ConnectionLost, PermanentFailure, TransientFailure, TransportDown
from kamflow.models import Notification, OutboxStatus
from kamflow.notify.message import addresses, build, sender_address
from kamflow.notify.transports import Sender, Transport
from kamflow.records.people import inactive_among
from kamflow.steps.base import record_heartbeat
from kamflow.steps.table import stale_reasons
from kamflow.text import first_line

log = logging.getLogger("kamflow.delivery")

NAME = "delivery"
#: The columns a delivery reads of a claimed message.
CLAIMED = (
    col(Notification.id),
    col(Notification.key),
    col(Notification.kind),
    col(Notification.recipients),
    col(Notification.cc),
    col(Notification.subject),
    col(Notification.template),
    col(Notification.context),
    col(Notification.body_text),
    col(Notification.body_html),
    col(Notification.attempts),
    col(Notification.created_at),
)
Stale = Callable[[Session, list[Any], datetime], dict[int, str]]


def worker_name() -> str:
    """A name for this delivery worker that no other has: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DeliveryReport:
    """What one delivery run did: the messages it claimed and what became of them."""

    #: Messages claimed; of those, sent, left to retry later, and made dead letters.
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    #: Sent (or found obsolete) after the run's lease had ended: another run may have sent them.
    lost_lease: int = 0
    #: Not sent because no longer true (the account left the stage or is snoozed; the action is
    #: done or its due date moved; everyone it was for is deactivated).
    obsolete: int = 0
    #: Left for the next run because the lease was running out.
    released: int = 0
    #: The outage that stopped the run, or None when it went through.
    stopped: str | None = None

    def summary(self) -> str:
        """One line for the log: the messages claimed, sent, left to retry, dead and obsolete; those
        left for the next run or sent after the lease ended; and what stopped the run."""
        text = (
            f"delivery: claimed {self.claimed}, sent {self.sent}, retry later {self.retried}, "
            f"dead {self.dead}"
        )
        if self.obsolete:
            text += f", obsolete {self.obsolete}"
        if self.released:
            text += f"; {self.released} left for the next run (the lease was running out)"
        if self.lost_lease:
            text += f"; {self.lost_lease} sent after their lease ended (possibly sent twice)"
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")

    def as_dict(self) -> dict[str, Any]:
        """The counts and what stopped the run, as the delivery heartbeat records them."""
        return asdict(self)


def backoff(attempts: int) -> timedelta:
    """1 min, 2, 4, 8 ... up to 6 hours between attempts."""
    seconds = defaults.RETRY_FIRST_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, defaults.RETRY_MAX_SECONDS))


def claim(
    engine: sa.Engine,
    now: datetime,
    worker: str,
    *,
    batch: int,
    lease_seconds: int,
    lease_now: datetime | None = None,
) -> list[Any]:
    """Lease up to ``batch`` messages due at ``now`` to ``worker``, oldest first, in one
    transaction; ``lease_now``: the moment the lease starts (later than ``now`` in a long run)."""
    now_for_lease = lease_now or now
    with session_scope(engine) as session:
        free = sa.or_(
            col(Notification.lease_until).is_(None),
            col(Notification.lease_until) < now_for_lease,
        )
        rows = session.execute(
            sa.select(*CLAIMED)
            .where(
                col(Notification.status) == OutboxStatus.PENDING.value,
                col(Notification.next_attempt_at) <= now,
                free,
            )
            .order_by(col(Notification.next_attempt_at), col(Notification.id))
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if rows:
            session.execute(
                sa.update(Notification)
                .where(col(Notification.id).in_([row.id for row in rows]))
                .values(
                    lease_owner=worker,
                    lease_until=now_for_lease + timedelta(seconds=lease_seconds),
                )
                .execution_options(synchronize_session=False)
            )
        return list(rows)


class _Results:
    """What became of the claimed messages, written in one transaction per batch."""

    def __init__(self, engine: sa.Engine, worker: str, report: DeliveryReport) -> None:
        self.engine = engine
        self.worker = worker
        self.report = report
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def add(self, outcome: str, row_id: int, **values: Any) -> None:
        """Note what became of one claimed message, with the columns to set; the next write()
        records it."""
        self.pending.append((outcome, {"row_id": row_id, **values}))

    def write(self) -> None:
        """Update every finished row while this worker still holds its lease; count what held."""
        if not self.pending:
            return
        groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
        for outcome, values in self.pending:
            groups[(outcome, tuple(sorted(values)))].append(values)
        with session_scope(self.engine) as session:
            for (outcome, names), params in groups.items():
                table = Notification.__table__  # type: ignore[attr-defined]
                statement = (
                    table.update()
                    .where(
                        table.c.id == sa.bindparam("row_id"),
                        table.c.lease_owner == self.worker,
                    )
                    .values(
                        lease_owner=None,
                        lease_until=None,
                        **{name: sa.bindparam(name) for name in names if name != "row_id"},
                    )
                )
                changed = session.connection().execute(statement, params).rowcount
                self._count(outcome, len(params), changed)
        self.pending = []

    def _count(self, outcome: str, wanted: int, changed: int) -> None:
        held = max(0, min(wanted, changed))
        if outcome == "released":
            return
        if outcome in ("sent", "obsolete"):
            setattr(self.report, outcome, getattr(self.report, outcome) + held)
            self.report.lost_lease += wanted - held
        else:  # retried, dead: counted when decided, whether or not the lease held
            setattr(self.report, outcome, getattr(self.report, outcome) + wanted)


def deliver(
    engine: sa.Engine,
    transport: Transport,
    *,
    sender: str,
    now: datetime,
    worker: str | None = None,
    batch: int = defaults.DELIVERY_BATCH,
    lease_seconds: int = defaults.LEASE_SECONDS,
    limit: int | None = None,
    stale: Stale = stale_reasons,
) -> DeliveryReport:
    """Send what is due, over one connection, while the run's lease lasts; what happened.

    ``batch``: how many messages are claimed at a time; ``limit``: at most this many in the
    run (by default all that are due).
    """
    sender_address(sender)  # a bad sender is a setting to fix, not a reason to kill messages
    run = _Run(engine, transport, sender, now, worker or worker_name(), lease_seconds, stale)
    try:
        run.drain(batch, limit)
    finally:
        run.close()
    record_heartbeat(engine, NAME, now, ok=run.report.stopped is None, detail=run.report.as_dict())
    return run.report


def _readdressed(row: Any, reason: str | None, gone: set[str]) -> tuple[Any, str | None]:
    """The message to send without the addresses of deactivated people (``gone``), and the
    reason not to send it at all: ``reason``, or that everyone it was for is deactivated."""
    if reason is not None or not gone:
        return row, reason
    to, cc = addresses(row.recipients), addresses(row.cc)
    dropped = sorted({a for a in to + cc if a.lower() in gone})
    if not dropped:
        return row, None
    to = [a for a in to if a.lower() not in gone]
    cc = [a for a in cc if a.lower() not in gone]
    if not to and not cc:
        verb = "is" if len(dropped) == 1 else "are"
        return row, f"{', '.join(dropped)} {verb} deactivated"
    if not to:
        to, cc = cc, []
    # The row keeps whom it was queued for; only this sending leaves the deactivated out.
    return SimpleNamespace(
        **{**row._asdict(), "recipients": ", ".join(to), "cc": ", ".join(cc)}
    ), None


class _Run:
    """One delivery run: its connection, its claimed batch, its results."""

    def __init__(
        self,
        engine: sa.Engine,
        transport: Transport,
        sender: str,
        now: datetime,
        worker: str,
        lease_seconds: int,
        stale: Stale,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.sender = sender
        self.now = now
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.stale = stale
        self.report = DeliveryReport()
        self.results = _Results(engine, worker, self.report)
        self.connection: Sender | None = None
        # Real time: a lease protects the messages only while it really lasts.
        self.started = time.monotonic()
        self.unfinished: list[Any] = []

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def drain(self, batch: int, limit: int | None) -> None:
        """Claim and send batch after batch (of at most ``batch``) until nothing is due, ``limit``
        messages are claimed, the run's share of the lease is spent, or an outage stops it."""
        budget = defaults.LEASE_SHARE * self.lease_seconds
        while self._elapsed() < budget:
            if limit is not None:
                if self.report.claimed >= limit:
                    return
                batch = min(batch, limit - self.report.claimed)
            # Each batch is leased from the moment it is claimed.
            lease_now = self.now + timedelta(seconds=self._elapsed())
            claimed_at = time.monotonic()
            rows = claim(
                self.engine,
                self.now,
                self.worker,
                batch=batch,
                lease_seconds=self.lease_seconds,
                lease_now=lease_now,
            )
            if not rows:
                return
            self.report.claimed += len(rows)
            self.unfinished = list(rows)
            if not self._send_batch(rows, claimed_at, budget):
                return

    def _send_batch(self, rows: list[Any], claimed_at: float, budget: float) -> bool:
        """Send one claimed batch; False when the run must stop (out of time, or an outage)."""
        with read_scope(self.engine) as reading, Session(bind=reading) as session:
            reasons = self.stale(session, rows, self.now)
            gone = inactive_among(
                session, [a for row in rows for a in addresses(f"{row.recipients},{row.cc}")]
            )
        last_write = time.monotonic()
        for row in rows:
            if time.monotonic() - claimed_at > budget:
                self.report.released += len(self.unfinished)
                log.warning(
                    "delivery: %s messages left for the next run: the lease of %s s was "
                    "running out",
                    len(self.unfinished),
                    self.lease_seconds,
                )
                return False
            try:
                self._deliver_one(*_readdressed(row, reasons.get(row.id), gone))
            except TransportDown as error:
                self.report.stopped = str(error)
                log.warning("delivery stopped: %s", error)
                return False
            self.unfinished.remove(row)
            if time.monotonic() - last_write > defaults.DELIVERY_RECORD_SECONDS:
                self.results.write()
                last_write = time.monotonic()
        self.results.write()
        return True

    def _deliver_one(self, row: Any, reason: str | None) -> None:
        if reason is not None:
            self.results.add(
                "obsolete", row.id, status=OutboxStatus.OBSOLETE.value, last_error=reason
            )
            log.info("message %s not sent, no longer true: %s", row.id, reason)
            return
        try:
            message = build(row, self.sender)
            note = self._send(message)
        except TransientFailure as error:
            self._retry_or_kill(row, str(error))
        except PermanentFailure as error:
            self._kill(row, str(error))
        except TransportDown:
            raise  # not this message's fault: the run stops, the rest is released
        except Exception as error:
            # The message cannot be built or sent (bad data in the row, an address the server
            # cannot take): retrying will not help, and it must not hold up the messages behind.
            self._kill(row, f"{type(error).__name__}: {first_line(error)}")
        else:
            self.results.add(
                "sent",
                row.id,
                status=OutboxStatus.SENT.value,
                attempts=row.attempts + 1,
                sent_at=self.now,
                last_error=note or "",
            )
            if note:
                log.warning("message %s delivered, but %s", row.id, note)

    def _send(self, message: Any) -> str | None:
        """Send on the open connection; if it breaks during this message, once more on a fresh
        one; if that breaks too, the message is at fault (a transient failure of its own)."""
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = self._connect()
            try:
                return self.connection.send(message)
            except ConnectionLost as error:
                self._drop_connection()
                if attempt == 2:
                    raise TransientFailure(f"{error} (twice, while sending this message)") from None
                log.info("connection lost while sending; trying once more on a fresh one")
        raise AssertionError("unreachable")

    def _connect(self) -> Sender:
        """A fresh connection; any failure to get one is an outage, never a message's fault."""
        try:
            return self.transport.connect()
        except TransportDown:
            raise
        except Exception as error:
            raise TransportDown(
                f"cannot connect ({self.transport.name}): {type(error).__name__}: "
                f"{first_line(error)}"
            ) from None

    def _retry_or_kill(self, row: Any, error: str) -> None:
        attempts = row.attempts + 1
        if attempts >= defaults.MAX_ATTEMPTS:
            self.results.add(
                "dead",
                row.id,
                status=OutboxStatus.DEAD.value,
                attempts=attempts,
                last_error=f"gave up after {attempts} attempts; last: {error}",
            )
        else:
            self.results.add(
                "retried",
                row.id,
                attempts=attempts,
                next_attempt_at=self.now + backoff(attempts),
                last_error=error,
            )
        log.info("message %s not delivered (%s)", row.id, error)

    def _kill(self, row: Any, error: str) -> None:
        """Make the message a dead letter, listed by `kamflow outbox list --status dead`."""
        self.results.add(
            "dead",
            row.id,
            status=OutboxStatus.DEAD.value,
            attempts=row.attempts + 1,
            last_error=error,
        )
        log.warning("message %s is dead: %s", row.id, error)

    def _drop_connection(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def close(self) -> None:
        """Record what was decided, give back what was claimed but not sent, close the line."""
        self._drop_connection()
        for row in self.unfinished:
            self.results.add("released", row.id)
        self.unfinished = []
        self.results.write()
