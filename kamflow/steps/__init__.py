"""The daemon's work as plain steps over the database, each callable once from a test, from
`kamflow tick` or from the daemon's schedule (see `table` for the queuing steps, `delivery` for
sending). A step finds what is due with set-based queries and writes it in batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kamflow.config import MailSettings, Schedule
from kamflow.steps.base import StepReport, StepRun, record_heartbeat
from kamflow.steps.delivery import DeliveryReport, deliver
from kamflow.steps.table import QUEUING, Step


@dataclass
class TickReport:
    """What one tick did: each queuing step's report, then delivery's (None on a dry run)."""

    steps: list[StepReport] = field(default_factory=list)
    delivery: DeliveryReport | None = None

    def lines(self) -> list[str]:
        """One summary line per queuing step, then one for delivery when it ran."""
        found = [step.summary() for step in self.steps]
        if self.delivery is not None:
            found.append(self.delivery.summary())
        return found


def run_step(entry: Step, run: StepRun) -> StepReport:
    """Run one queuing step and, unless it is a dry run, record its heartbeat."""
    report = entry.queue(run)
    if run.dry_run:
        run.earlier |= report.mentions
    else:
        record_heartbeat(run.engine, entry.name, run.now, ok=True, detail=report.as_dict())
    return report


def queue_due(
    engine: sa.Engine,
    now: datetime,
    schedule: Schedule,
    *,
    dry_run: bool = False,
    on_queued: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> list[StepReport]:
    """Every queuing step once, in the table's order: stalls, actions, digests.

    ``on_queued`` is told of each message as it is queued and ``on_step`` of each step when it is
    done; given ``on_queued``, the reports keep counts, not the list of what was queued.
    """
    run = StepRun(
        engine, now, schedule, dry_run=dry_run, on_queued=on_queued, keep_queued=on_queued is None
    )
    reports = []
    for entry in QUEUING:
        reports.append(run_step(entry, run))
        if on_step is not None:
            on_step(reports[-1])
    return reports


def tick(
    engine: sa.Engine,
    now: datetime,
    schedule: Schedule,
    mail: MailSettings,
    *,
    dry_run: bool = False,
    on_queued: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> TickReport:
    """One pass of every step: queue what is due, then deliver (a dry run only lists)."""
    report = TickReport(
        steps=queue_due(
            engine, now, schedule, dry_run=dry_run, on_queued=on_queued, on_step=on_step
        )
    )
    if not dry_run:
        report.delivery = deliver(
            engine,
            mail.make_transports(),
            sender=mail.sender,
            now=now,
            lease_seconds=schedule.lease_seconds,
        )
    return report


__all__ = ["QUEUING", "DeliveryReport", "StepReport", "StepRun", "TickReport", "deliver", "tick"]
