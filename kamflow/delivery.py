"""Delivering the outbox: claim with a lease, send, mark sent only while the lease is still ours.

At-least-once: a crash between sending and marking resends the message later, with the same
Message-ID. Several daemons may deliver at once: a claimed row is invisible to the others until its
lease ends (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock serialises the claims).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, or_, select

from kamflow import defaults
from kamflow.db import dialect_insert, session_scope
from kamflow.errors import (
    InvalidInput,
    NotFound,
    PermanentFailure,
    TransientFailure,
    TransportDown,
)
from kamflow.escalation import obsolete_reason
from kamflow.models import Heartbeat, Notification, OutboxStatus
from kamflow.notify.message import build, sender_address
from kamflow.notify.transports import Sender, Transport
from kamflow.text import first_line

log = logging.getLogger("kamflow.delivery")

#: A run stops sending once this share of its lease is gone, so that no message it still holds
#: can be claimed (and sent again) by another daemon whose clock says the lease is over.


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DeliveryReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost_lease: int = 0
    obsolete: int = 0
    released: int = 0
    stopped: str | None = None

    def summary(self) -> str:
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


def backoff(attempts: int) -> timedelta:
    """1 min, 2, 4, 8 ... up to 6 hours between attempts."""
    seconds = defaults.RETRY_FIRST_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, defaults.RETRY_MAX_SECONDS))


def claim(
    engine: sa.Engine, now: datetime, worker: str, *, batch: int, lease_seconds: int
) -> list[Notification]:
    with session_scope(engine) as session:
        query = (
            select(Notification)
            .where(
                Notification.status == OutboxStatus.PENDING,
                col(Notification.next_attempt_at) <= now,
                or_(col(Notification.lease_until).is_(None), col(Notification.lease_until) < now),
            )
            .order_by(col(Notification.next_attempt_at), col(Notification.id))
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        rows = list(session.exec(query).all())
        for row in rows:
            row.lease_owner = worker
            row.lease_until = now + timedelta(seconds=lease_seconds)
        return rows


def _ours(row: Notification, worker: str) -> Any:
    return sa.and_(col(Notification.id) == row.id, col(Notification.lease_owner) == worker)


def _finish(engine: sa.Engine, row: Notification, worker: str, **values: Any) -> bool:
    """Update a claimed row only while this worker still holds its lease."""
    with session_scope(engine) as session:
        result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
            sa.update(Notification)
            .where(_ours(row, worker))
            .values(lease_owner=None, lease_until=None, **values)
        )
        return result.rowcount == 1


def deliver(
    engine: sa.Engine,
    transport: Transport,
    *,
    sender: str,
    now: datetime,
    worker: str | None = None,
    batch: int = defaults.DELIVERY_BATCH,
    lease_seconds: int = defaults.LEASE_SECONDS,
) -> DeliveryReport:
    """Send what is due, over one connection; returns what happened."""
    sender_address(sender)  # a bad sender is a setting to fix, not a reason to kill messages
    worker = worker or worker_name()
    report = DeliveryReport()
    started = time.monotonic()  # real time: the lease protects us only while it really lasts
    rows = claim(engine, now, worker, batch=batch, lease_seconds=lease_seconds)
    report.claimed = len(rows)
    if rows:
        done: set[int | None] = set()
        try:
            with transport.session() as connection:
                for row in rows:
                    if time.monotonic() - started > defaults.LEASE_SHARE * lease_seconds:
                        report.released = len(rows) - len(done)
                        log.warning(
                            "delivery: %s of %s messages left for the next run: the lease of "
                            "%s s was running out",
                            report.released,
                            len(rows),
                            lease_seconds,
                        )
                        break
                    _send_one(engine, connection, row, worker, sender, now, report)
                    done.add(row.id)
        except TransportDown as error:
            report.stopped = str(error)
            log.warning("delivery stopped: %s", error)
        finally:
            for row in rows:
                if row.id not in done:
                    _finish(engine, row, worker)  # release: the next run tries again
    record_heartbeat(engine, "delivery", now, ok=report.stopped is None, detail=asdict(report))
    return report


def _send_one(
    engine: sa.Engine,
    connection: Sender,
    row: Notification,
    worker: str,
    sender: str,
    now: datetime,
    report: DeliveryReport,
) -> None:
    with session_scope(engine) as session:
        reason = obsolete_reason(session, row.key, now)
    if reason is not None:
        if _finish(engine, row, worker, status=OutboxStatus.OBSOLETE.value, last_error=reason):
            report.obsolete += 1
            log.info("message %s not sent, no longer true: %s", row.id, reason)
        else:
            report.lost_lease += 1
        return
    try:
        note = connection.send(build(row, sender))
    except TransientFailure as error:
        attempts = row.attempts + 1
        if attempts >= defaults.MAX_ATTEMPTS:
            dead = f"gave up after {attempts} attempts; last: {error}"
            _finish(
                engine,
                row,
                worker,
                status=OutboxStatus.DEAD.value,
                attempts=attempts,
                last_error=dead,
            )
            report.dead += 1
        else:
            _finish(
                engine,
                row,
                worker,
                attempts=attempts,
                next_attempt_at=now + backoff(attempts),
                last_error=str(error),
            )
            report.retried += 1
        log.info("message %s not delivered (%s)", row.id, error)
    except PermanentFailure as error:
        _kill(engine, row, worker, str(error), report)
    except TransportDown:
        raise  # not this message's fault: the run stops, the rest is released
    except Exception as error:
        # The message cannot be built or sent (bad data in the row, an address the server cannot
        # take): retrying will not help, and it must not hold up the messages behind it.
        _kill(engine, row, worker, f"{type(error).__name__}: {first_line(error)}", report)
    else:
        if _finish(
            engine,
            row,
            worker,
            status=OutboxStatus.SENT.value,
            attempts=row.attempts + 1,
            sent_at=now,
            last_error=note or "",
        ):
            report.sent += 1
            if note:
                log.warning("message %s delivered, but %s", row.id, note)
        else:
            report.lost_lease += 1


def _kill(
    engine: sa.Engine, row: Notification, worker: str, error: str, report: DeliveryReport
) -> None:
    """Make the message a dead letter, listed by `kamflow outbox list --status dead`."""
    _finish(
        engine,
        row,
        worker,
        status=OutboxStatus.DEAD.value,
        attempts=row.attempts + 1,
        last_error=error,
    )
    report.dead += 1
    log.warning("message %s is dead: %s", row.id, error)


def record_heartbeat(
    engine: sa.Engine, step: str, now: datetime, *, ok: bool, detail: dict[str, Any]
) -> None:
    values = {"step": step, "at": now, "ok": ok, "detail": json.dumps(detail, default=str)}
    with session_scope(engine) as session:
        statement = dialect_insert(session)(Heartbeat).values(**values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["step"],
                set_={"at": now, "ok": ok, "detail": values["detail"]},
            )
        )


def heartbeats(session: Session) -> dict[str, dict[str, Any]]:
    return {
        row.step: {"at": row.at.isoformat(), "ok": row.ok, "detail": json.loads(row.detail or "{}")}
        for row in session.exec(select(Heartbeat)).all()
    }


def list_messages(
    session: Session, *, status: str | None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(Notification).order_by(col(Notification.id).desc()).limit(limit)
    if status:
        if status not in {s.value for s in OutboxStatus}:
            known = ", ".join(s.value for s in OutboxStatus)
            raise NotFound(f"no status {status!r} (statuses: {known})")
        query = query.where(Notification.status == status)
    return [
        {
            "id": row.id,
            "kind": row.kind,
            "status": row.status,
            "to": row.recipients,
            "cc": row.cc,
            "subject": row.subject,
            "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(),
            "created_at": row.created_at.isoformat(),
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
            "last_error": row.last_error,
            "key": row.key,
        }
        for row in session.exec(query).all()
    ]


def retry(session: Session, message_id: str, *, now: datetime) -> Notification:
    """Put a dead message back in the queue, to be sent at the next delivery."""
    row = session.get(Notification, int(message_id)) if message_id.strip().isdigit() else None
    if row is None:
        raise NotFound(f"no message {message_id!r} in the outbox (see: kamflow outbox list)")
    if row.status != OutboxStatus.DEAD:
        raise InvalidInput(f"message {row.id} is {row.status}, not dead: nothing to retry")
    row.status, row.attempts, row.next_attempt_at = OutboxStatus.PENDING.value, 0, now
    row.lease_owner, row.lease_until = None, None
    return row
