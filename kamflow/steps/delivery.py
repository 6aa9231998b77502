"""Delivering the outbox: claim a batch with a lease, send it over one connection, record the
results in one transaction, and go on while the run's time lasts.

At-least-once: a crash between sending and recording resends those messages later, with the same
Message-ID. Several daemons may deliver at once: a claimed row is invisible to the others until its
lease ends (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock serialises the claims),
and a run stops sending before its lease runs out.

A server that drops the connection while taking one message gets that message once more on a fresh
connection; if it drops it again, the message counts an attempt (backoff, then dead) and the rest
of the queue goes on. A true outage (no connection, TLS, authentication) counts against no message.

Several channels (mail and chat) may be on: a message is delivered once on each. The outbox row
records, as bits, the channels that have it (``delivered``) and those that refused it for good
(``refused``); a run sends only on the others, so a message that went by mail but failed in chat
is retried in chat only. The row is pending until every channel has it or refused it, then sent
(or dead, if one refused it). An outage or a rate limit of one channel holds only that channel
for the rest of the run: the others go on, and later claims of the run skip the messages that
owe nothing to a channel still open.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import defaults
from kamflow.db import read_scope, session_scope
from kamflow.errors import (
    ConnectionLost,
    PermanentFailure,
    RateLimited,
    TransientFailure,
    TransportDown,
)
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
    col(Notification.delivered),
    col(Notification.refused),
    col(Notification.last_error),
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
    #: Left pending for a channel that was down or rate limited (the other channels had them).
    deferred: int = 0
    #: Deliveries per channel ("mail", "chat") in this run.
    channels: dict[str, int] = field(default_factory=dict)
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
        if len(self.channels) > 1:
            text += (
                " (delivered: "
                + ", ".join(
                    f"{channel} {count}" for channel, count in sorted(self.channels.items())
                )
                + ")"
            )
        if self.deferred:
            text += f"; {self.deferred} left for a channel that was down or rate limited"
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
    owing: int | None = None,
) -> list[Any]:
    """Lease up to ``batch`` messages due at ``now`` to ``worker``, oldest first, in one
    transaction; ``lease_now``: the moment the lease starts (later than ``now`` in a long run);
    ``owing``: only messages that some channel of these bits has neither delivered nor refused."""
    now_for_lease = lease_now or now
    with session_scope(engine) as session:
        free = sa.or_(
            col(Notification.lease_until).is_(None),
            col(Notification.lease_until) < now_for_lease,
        )
        conditions = [
            col(Notification.status) == OutboxStatus.PENDING.value,
            col(Notification.next_attempt_at) <= now,
            free,
        ]
        if owing is not None:
            finished = col(Notification.delivered).op("|")(col(Notification.refused))
            conditions.append(finished.op("&")(owing) != owing)
        rows = session.execute(
            sa.select(*CLAIMED)
            .where(*conditions)
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
        else:  # retried, dead, deferred: counted when decided, whether or not the lease held
            setattr(self.report, outcome, getattr(self.report, outcome) + wanted)


def deliver(
    engine: sa.Engine,
    transport: Transport | Sequence[Transport],
    *,
    sender: str,
    now: datetime,
    worker: str | None = None,
    batch: int = defaults.DELIVERY_BATCH,
    lease_seconds: int = defaults.LEASE_SECONDS,
    limit: int | None = None,
    stale: Stale = stale_reasons,
) -> DeliveryReport:
    """Send what is due, over one connection per transport, while the run's lease lasts; what
    happened.

    ``transport``: one transport, or one per channel (mail, chat); each message is delivered
    once on each channel. ``batch``: how many messages are claimed at a time; ``limit``: at
    most this many in the run (by default all that are due).
    """
    sender_address(sender)  # a bad sender is a setting to fix, not a reason to kill messages
    transports = [transport] if not isinstance(transport, Sequence) else list(transport)
    run = _Run(engine, transports, sender, now, worker or worker_name(), lease_seconds, stale)
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
    """One delivery run: its connections (one per transport), its claimed batch, its results."""

    def __init__(
        self,
        engine: sa.Engine,
        transports: list[Transport],
        sender: str,
        now: datetime,
        worker: str,
        lease_seconds: int,
        stale: Stale,
    ) -> None:
        self.engine = engine
        self.transports = transports
        self.sender = sender
        self.now = now
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.stale = stale
        self.report = DeliveryReport()
        self.results = _Results(engine, worker, self.report)
        self.connections: dict[str, Sender] = {}
        #: The channels held for the rest of the run (an outage, a rate limit), and why.
        self.held: dict[str, str] = {}
        #: The bits of every channel of the run.
        self.wanted = 0
        for transport in transports:
            self.wanted |= defaults.CHANNELS[transport.channel]
        # Real time: a lease protects the messages only while it really lasts.
        self.started = time.monotonic()
        self.unfinished: list[Any] = []

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _open_bits(self) -> int:
        """The bits of the channels not held."""
        bits = 0
        for transport in self.transports:
            if transport.channel not in self.held:
                bits |= defaults.CHANNELS[transport.channel]
        return bits

    def drain(self, batch: int, limit: int | None) -> None:
        """Claim and send batch after batch (of at most ``batch``) until nothing is due, ``limit``
        messages are claimed, the run's share of the lease is spent, or every channel is held
        (an outage)."""
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
                # Once a channel is held, what owes nothing to the others waits for a later run.
                owing=self._open_bits() if self.held else None,
            )
            if not rows:
                return
            self.report.claimed += len(rows)
            self.unfinished = list(rows)
            if not self._send_batch(rows, claimed_at, budget):
                return

    def _send_batch(self, rows: list[Any], claimed_at: float, budget: float) -> bool:
        """Send one claimed batch; False when the run must stop (out of time, or an outage of
        every channel)."""
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
            if not self._open_bits():
                return False  # every channel is held: the rest is released, nothing counted
            self._deliver_one(*_readdressed(row, reasons.get(row.id), gone))
            self.unfinished.remove(row)
            if time.monotonic() - last_write > defaults.DELIVERY_RECORD_SECONDS:
                self.results.write()
                last_write = time.monotonic()
        self.results.write()
        return bool(self._open_bits())

    def _deliver_one(self, row: Any, reason: str | None) -> None:
        if reason is not None:
            self.results.add(
                "obsolete", row.id, status=OutboxStatus.OBSOLETE.value, last_error=reason
            )
            log.info("message %s not sent, no longer true: %s", row.id, reason)
            return
        try:
            message = build(row, self.sender)
        except Exception as error:
            # Bad data in the row: retrying will not help, and it must not hold up the rest.
            self._kill(row, f"{type(error).__name__}: {first_line(error)}")
            return
        delivered, refused = row.delivered, row.refused
        problems: list[str] = []
        notes: list[str] = []
        waits: list[TransientFailure] = []
        waiting = 0  # the bits of the channels that said "not now"
        for transport in self.transports:
            bit = defaults.CHANNELS[transport.channel]
            if (delivered | refused) & bit or transport.channel in self.held:
                continue
            try:
                note = self._send(transport, message)
            except TransientFailure as error:
                waits.append(error)
                waiting |= bit
                problems.append(f"{self._label(transport)}{error}")
                if isinstance(error, RateLimited):
                    self._hold(transport, f"rate limited ({error})", outage=False)
            except PermanentFailure as error:
                refused |= bit
                problems.append(f"{self._label(transport)}{error}")
            except TransportDown as error:
                self._hold(transport, str(error), outage=True)
            except Exception as error:
                # The message cannot be sent this way (an address the server cannot take):
                # retrying will not help, and it must not hold up the messages behind.
                refused |= bit
                problems.append(
                    f"{self._label(transport)}{type(error).__name__}: {first_line(error)}"
                )
            else:
                delivered |= bit
                self.report.channels[transport.channel] = (
                    self.report.channels.get(transport.channel, 0) + 1
                )
                if note:
                    notes.append(note)
                    log.warning("message %s delivered, but %s", row.id, note)
        # An attempt is counted when some channel took or refused the message; an outage counts
        # against no message.
        tried = bool(problems) or delivered != row.delivered
        attempts = row.attempts + (1 if tried else 0)
        if waits and attempts >= defaults.MAX_ATTEMPTS:
            refused |= waiting
            problems = [f"gave up after {attempts} attempts; last: {'; '.join(problems)}"]
            waits = []
        values: dict[str, Any] = {
            "attempts": attempts,
            "delivered": delivered,
            "refused": refused,
        }
        if problems:
            values["last_error"] = "; ".join(problems)
        if not self.wanted & ~(delivered | refused):
            if refused:
                values.setdefault("last_error", row.last_error)
                self.results.add("dead", row.id, status=OutboxStatus.DEAD.value, **values)
                log.warning("message %s is dead: %s", row.id, values["last_error"])
            else:
                values.update(last_error="; ".join(notes), sent_at=self.now)
                self.results.add("sent", row.id, status=OutboxStatus.SENT.value, **values)
        elif waits:
            self.results.add(
                "retried", row.id, next_attempt_at=self._next_attempt(attempts, waits), **values
            )
            log.info("message %s not delivered (%s)", row.id, values["last_error"])
        else:
            # What is left is for a held channel: the message stays due, for a later run.
            self.results.add("deferred", row.id, **values)
            if problems:
                log.warning("message %s: %s", row.id, values["last_error"])

    def _label(self, transport: Transport) -> str:
        """What starts an error of ``transport``'s channel: its name, when there are several."""
        return f"{transport.channel}: " if len(self.transports) > 1 else ""

    def _next_attempt(self, attempts: int, waits: list[TransientFailure]) -> datetime:
        """The backoff after ``attempts``, or later if a server asked to wait longer."""
        at = self.now + backoff(attempts)
        longest = self.now + timedelta(seconds=defaults.RETRY_AFTER_MAX_SECONDS)
        for error in waits:
            asked = error.retry_after
            if asked is None:
                continue
            until = asked if isinstance(asked, datetime) else self.now + timedelta(seconds=asked)
            at = max(at, min(until, longest))
        return at

    def _hold(self, transport: Transport, why: str, *, outage: bool) -> None:
        """Send nothing more on this transport's channel in this run."""
        self._drop_connection(transport)
        self.held[transport.channel] = why
        if outage:
            if self.report.stopped is None:
                self.report.stopped = why
            log.warning("delivery stopped on %s: %s", transport.channel, why)
        else:
            log.info("delivery on %s paused until the next run: %s", transport.channel, why)

    def _send(self, transport: Transport, message: Any) -> str | None:
        """Send on the transport's open connection; if it breaks during this message, once more
        on a fresh one; if that breaks too, the message is at fault (a transient failure of its
        own)."""
        for attempt in (1, 2):
            connection = self.connections.get(transport.channel)
            if connection is None:
                connection = self.connections[transport.channel] = self._connect(transport)
            try:
                return connection.send(message)
            except ConnectionLost as error:
                self._drop_connection(transport)
                if attempt == 2:
                    raise TransientFailure(f"{error} (twice, while sending this message)") from None
                log.info("connection lost while sending; trying once more on a fresh one")
        raise AssertionError("unreachable")

    def _connect(self, transport: Transport) -> Sender:
        """A fresh connection; any failure to get one is an outage, never a message's fault."""
        try:
            return transport.connect()
        except TransportDown:
            raise
        except Exception as error:
            raise TransportDown(
                f"cannot connect ({transport.name}): {type(error).__name__}: {first_line(error)}"
            ) from None

    def _kill(self, row: Any, error: str) -> None:
        """Make the message a dead letter, listed by `kamflow outbox list --status dead`."""
        self.results.add(
            "dead",
            row.id,
            status=OutboxStatus.DEAD.value,
            attempts=row.attempts + 1,
            refused=row.refused | (self.wanted & ~row.delivered),
            last_error=error,
        )
        log.warning("message %s is dead: %s", row.id, error)

    def _drop_connection(self, transport: Transport) -> None:
        connection = self.connections.pop(transport.channel, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Record what was decided, give back what was claimed but not sent, close the lines."""
        for transport in self.transports:
            self._drop_connection(transport)
        for row in self.unfinished:
            self.results.add("released", row.id)
        self.unfinished = []
        self.results.write()
