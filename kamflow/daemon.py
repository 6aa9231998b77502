"""The daemon: APScheduler decides when the steps run; the steps do the work over the database.

Several daemons may share one database: the outbox's unique keys and delivery leases, not the
scheduler, keep any message from being sent twice.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow import defaults
from kamflow.clock import Clock
from kamflow.config import MailSettings, Schedule
from kamflow.delivery import DeliveryReport, deliver, heartbeats, record_heartbeat, worker_name
from kamflow.digests import queue_leader_digests, queue_owner_digests
from kamflow.escalation import (
    StepReport,
    action_key,
    action_repeat,
    active_snooze,
    overdue_accounts,
    queue_action_reminders,
    queue_stalls,
    stall_position,
)
from kamflow.ladder import Status, stall_key
from kamflow.ladder import schedule as ladder_schedule
from kamflow.models import Account, Action, ActionStatus, Notification, OutboxStatus
from kamflow.outbox import already_queued, counts
from kamflow.workflow import available, get_workflow

log = logging.getLogger("kamflow.daemon")


@dataclass
class TickReport:
    steps: list[StepReport] = field(default_factory=list)
    delivery: DeliveryReport | None = None

    def lines(self) -> list[str]:
        found = [step.summary() for step in self.steps]
        if self.delivery is not None:
            found.append(self.delivery.summary())
        return found


def queue_due(
    engine: sa.Engine, now: datetime, schedule: Schedule, *, dry_run: bool = False
) -> list[StepReport]:
    """Every queuing step once: stalls, overdue actions, digests."""
    reports = [
        queue_stalls(engine, now, dry_run=dry_run),
        queue_action_reminders(
            engine,
            now,
            timezone=schedule.timezone,
            every_days=schedule.action_every_days,
            dry_run=dry_run,
        ),
    ]
    earlier = [item for report in reports for item in report.queued] if dry_run else []
    reports += [
        queue_owner_digests(engine, now, schedule, dry_run=dry_run, also_sent=earlier),
        queue_leader_digests(engine, now, schedule, dry_run=dry_run),
    ]
    if not dry_run:
        record_heartbeat(
            engine,
            "tick",
            now,
            ok=True,
            detail={r.step: {"examined": r.examined, "queued": len(r.queued)} for r in reports},
        )
    return reports


def tick(
    engine: sa.Engine,
    now: datetime,
    schedule: Schedule,
    mail: MailSettings,
    *,
    dry_run: bool = False,
) -> TickReport:
    """One pass of every step: queue what is due, then deliver (a dry run only lists)."""
    report = TickReport(steps=queue_due(engine, now, schedule, dry_run=dry_run))
    if not dry_run:
        report.delivery = deliver(engine, mail.make_transport(), sender=mail.sender, now=now)
    return report


# --- status and forecast --------------------------------------------------------------------


def status(session: Session, now: datetime) -> dict[str, Any]:
    stalled = {Status.BEHIND.value: 0, Status.STUCK.value: 0}
    snoozed = 0
    for account, definition, _stage in overdue_accounts(session, now):
        where = stall_position(account, definition, now)
        if where is not None and where.status != Status.ON_TRACK:
            stalled[where.status.value] += 1
            snoozed += active_snooze(session, account, now) is not None
    due = session.exec(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.status == OutboxStatus.PENDING,
            col(Notification.next_attempt_at) <= now,
        )
    ).one()
    beats = heartbeats(session)
    return {
        "now": now.isoformat(),
        "last_tick": beats.get("tick"),
        "last_delivery": beats.get("delivery"),
        "outbox": counts(session),
        "due_now": due,
        "accounts": {**stalled, "snoozed": snoozed},
    }


def forecast(
    session: Session, now: datetime, days: int, schedule: Schedule
) -> list[dict[str, Any]]:
    """Reminders and escalations that would fire in the next ``days`` if nothing changed."""
    end = now + timedelta(days=days)
    found: list[dict[str, Any]] = []
    for name in sorted(available()):
        definition = get_workflow(name)
        for stage in definition.spec.stages:
            accounts = session.exec(
                select(Account).where(
                    Account.workflow == name,
                    Account.stage == stage.name,
                    col(Account.stage_entered_at) <= end - timedelta(days=stage.limit_days),
                )
            ).all()
            ladder = definition.ladder_for(stage)
            for account in accounts:
                snooze = active_snooze(session, account, now)
                start = snooze.until if snooze else now
                for at, rung, repeat in ladder_schedule(
                    account.stage_entered_at,
                    stage.limit_days,
                    ladder,
                    start - timedelta(seconds=1),
                    end,
                ):
                    key = stall_key(
                        account.id,  # type: ignore[arg-type]
                        account.stage,
                        account.stage_entered_at,
                        rung,
                        repeat,
                    )
                    if already_queued(session, key):
                        continue
                    found.append(
                        {
                            "at": max(at, now).isoformat(),
                            "account": account.name,
                            "stage": definition.title_of(stage.name),
                            "kind": "escalation" if rung == "escalate" else "reminder",
                            "repeat": repeat,
                        }
                    )
    zone = schedule.timezone
    today = now.astimezone(zone).date()
    last_day = end.astimezone(zone).date()
    actions = session.exec(
        select(Action, Account)
        .join(Account, col(Action.account_id) == col(Account.id))
        .where(Action.status == ActionStatus.OPEN, col(Action.due) <= last_day)
    ).all()
    for action, account in actions:
        if action.due is None or get_workflow(account.workflow).is_exit(account.stage):
            continue
        day = max(action.due, today)
        while day <= last_day:
            repeat = action_repeat(action.due, day, schedule.action_every_days)
            if not already_queued(session, action_key(action, repeat)):
                found.append(
                    {
                        "at": day.isoformat(),
                        "account": account.name,
                        "stage": "",
                        "kind": "action",
                        "repeat": repeat,
                        "action": action.title,
                    }
                )
            day = action.due + timedelta(days=(repeat + 1) * schedule.action_every_days)
    return sorted(found, key=lambda item: (item["at"], item["account"]))


# --- the daemon -----------------------------------------------------------------------------


class Daemon:
    """Runs the steps on APScheduler's schedule until SIGTERM or SIGINT."""

    def __init__(
        self, engine: sa.Engine, clock: Clock, schedule: Schedule, mail: MailSettings
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.schedule = schedule
        self.mail = mail
        self.worker = worker_name()
        self.stop = threading.Event()
        self._signals = 0

    def _step(self, name: str, function: Callable[[], list[str]]) -> None:
        if self.stop.is_set():
            return
        try:
            for line in function():
                log.info(line)
        except Exception:  # a failing step is logged; the next run tries again
            log.exception("step %s failed", name)

    def queue_step(self) -> list[str]:
        now = self.clock.now()
        reports = [queue_stalls(self.engine, now)]
        reports.append(
            queue_action_reminders(
                self.engine,
                now,
                timezone=self.schedule.timezone,
                every_days=self.schedule.action_every_days,
            )
        )
        record_heartbeat(
            self.engine,
            "tick",
            now,
            ok=True,
            detail={r.step: {"examined": r.examined, "queued": len(r.queued)} for r in reports},
        )
        return [r.summary() for r in reports]

    def delivery_step(self) -> list[str]:
        report = deliver(
            self.engine,
            self.mail.make_transport(),
            sender=self.mail.sender,
            now=self.clock.now(),
            worker=self.worker,
        )
        return [report.summary()]

    def owner_digest_step(self) -> list[str]:
        return [queue_owner_digests(self.engine, self.clock.now(), self.schedule).summary()]

    def leader_digest_step(self) -> list[str]:
        return [queue_leader_digests(self.engine, self.clock.now(), self.schedule).summary()]

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(128 + signum)  # a second signal: stop at once
        self.stop.set()

    def run(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        log.info(
            "kamflow daemon %s starting: stalls every %ss, delivery every %ss, mail to %s",
            self.worker,
            self.schedule.stall_seconds,
            self.schedule.delivery_seconds,
            self.mail.describe(),
        )
        # One full pass at start-up, then the schedule.
        self._step("queue", self.queue_step)
        self._step("owner digest", self.owner_digest_step)
        self._step("leader digest", self.leader_digest_step)
        self._step("delivery", self.delivery_step)
        zone = self.schedule.timezone
        scheduler = BackgroundScheduler(
            timezone=zone,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": defaults.MISFIRE_GRACE_SECONDS,
            },
        )
        hour, minute = self.schedule.owner_digest
        day, leader_hour, leader_minute = self.schedule.leader_digest
        jobs: list[tuple[str, Callable[[], list[str]], Any]] = [
            ("queue", self.queue_step, IntervalTrigger(seconds=self.schedule.stall_seconds)),
            (
                "delivery",
                self.delivery_step,
                IntervalTrigger(seconds=self.schedule.delivery_seconds),
            ),
            (
                "owner digest",
                self.owner_digest_step,
                CronTrigger(hour=hour, minute=minute, timezone=zone),
            ),
            (
                "leader digest",
                self.leader_digest_step,
                CronTrigger(day_of_week=day, hour=leader_hour, minute=leader_minute, timezone=zone),
            ),
        ]
        for name, function, trigger in jobs:
            scheduler.add_job(self._step, trigger, args=[name, function], id=name, name=name)
        scheduler.start()
        try:
            self.stop.wait()
        finally:
            log.info("stopping: finishing the current step")
            scheduler.shutdown(wait=True)
            log.info("stopped")
