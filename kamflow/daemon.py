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
from kamflow.errors import InvalidInput
from kamflow.escalation import (
    StepReport,
    action_key,
    action_repeat,
    active_snooze,
    has_exited,
    overdue_accounts,
    queue_action_reminders,
    queue_stalls,
    stall_position,
)
from kamflow.ladder import Status, position, stall_key
from kamflow.ladder import schedule as ladder_schedule
from kamflow.models import Account, Action, ActionStatus, Notification, OutboxStatus
from kamflow.outbox import already_queued, counts
from kamflow.text import first_line
from kamflow.workflow import workflows_in_use

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


#: The heartbeat each queuing step records (delivery records "delivery" itself).
TICK, OWNER_DIGEST, LEADER_DIGEST = "tick", "owner_digest", "leader_digest"


def queue_reminders(
    engine: sa.Engine, now: datetime, schedule: Schedule, *, dry_run: bool = False
) -> list[StepReport]:
    """The frequent steps: stalled accounts, then overdue actions."""
    return [
        queue_stalls(engine, now, dry_run=dry_run),
        queue_action_reminders(
            engine,
            now,
            timezone=schedule.timezone,
            every_days=schedule.action_every_days,
            dry_run=dry_run,
        ),
    ]


def record_steps(engine: sa.Engine, beat: str, now: datetime, reports: list[StepReport]) -> None:
    """A heartbeat saying these steps ran, with their counts."""
    detail = {r.step: {"examined": r.examined, "queued": len(r.queued)} for r in reports}
    record_heartbeat(engine, beat, now, ok=True, detail=detail)


def queue_due(
    engine: sa.Engine, now: datetime, schedule: Schedule, *, dry_run: bool = False
) -> list[StepReport]:
    """Every queuing step once: stalls, overdue actions, digests."""
    reports = queue_reminders(engine, now, schedule, dry_run=dry_run)
    earlier = [item for report in reports for item in report.queued] if dry_run else []
    owners = queue_owner_digests(engine, now, schedule, dry_run=dry_run, also_sent=earlier)
    heads = queue_leader_digests(engine, now, schedule, dry_run=dry_run)
    reports += [owners, heads]
    if not dry_run:
        record_steps(engine, TICK, now, reports)
        record_steps(engine, OWNER_DIGEST, now, [owners])
        record_steps(engine, LEADER_DIGEST, now, [heads])
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
        "last_tick": _last_tick(beats),
        "last_delivery": beats.get("delivery"),
        "outbox": counts(session),
        "due_now": due,
        "accounts": {**stalled, "snoozed": snoozed},
    }


def _last_tick(beats: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The tick's heartbeat, showing a digest step's failure until that step runs well again."""
    found = beats.get(TICK)
    for name in (OWNER_DIGEST, LEADER_DIGEST):
        beat = beats.get(name)
        if beat is not None and not beat["ok"]:
            at = max(beat["at"], found["at"]) if found else beat["at"]
            return {**beat, "at": at}
    return found


def forecast(
    session: Session, now: datetime, days: int, schedule: Schedule
) -> list[dict[str, Any]]:
    """Reminders and escalations that would fire in the next ``days`` if nothing changed."""
    if not 1 <= days <= defaults.MAX_FORECAST_DAYS:
        raise InvalidInput(f"--days must be from 1 to {defaults.MAX_FORECAST_DAYS}, not {days}")
    end = now + timedelta(days=days)
    found: list[dict[str, Any]] = []
    for definition in workflows_in_use(session):
        for stage in definition.spec.stages:
            accounts = session.exec(
                select(Account).where(
                    Account.workflow == definition.name,
                    Account.stage == stage.name,
                    col(Account.stage_entered_at) <= end - timedelta(days=stage.limit_days),
                )
            ).all()
            ladder = definition.ladder_for(stage)
            for account in accounts:
                snooze = active_snooze(session, account, now)
                begin = snooze.until if snooze else now
                if begin > end:
                    continue
                entered = account.stage_entered_at
                # What is due when the window opens (now, or when the snooze ends) fires then:
                # the latest rung only, as the stall step sends it; then each later rung.
                rungs = []
                current = position(entered, stage.limit_days, ladder, begin)
                if current.rung is not None:
                    rungs.append((begin, current.rung, current.repeat))
                rungs += ladder_schedule(entered, stage.limit_days, ladder, begin, end)
                for at, rung, repeat in rungs:
                    key = stall_key(account.id, account.stage, entered, rung, repeat)  # type: ignore[arg-type]
                    if already_queued(session, key):
                        continue
                    found.append(
                        {
                            "at": at.isoformat(),
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
        if action.due is None or has_exited(account) is not False:
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

    def run_step(self, name: str) -> None:
        """Run one step now, logging its lines; a failure is logged and shown by `kamflow status`
        (its heartbeat says what went wrong), and the step's next run tries again."""
        if self.stop.is_set():
            return
        beat, function = self.steps[name]
        try:
            for line in function():
                log.info(line)
        except Exception as error:
            log.exception("step %s failed", name)
            problem = f"{name} failed: {first_line(error)}"
            try:
                record_heartbeat(
                    self.engine, beat, self.clock.now(), ok=False, detail={"stopped": problem}
                )
            except Exception:  # the database itself may be what failed
                log.exception("cannot record the failure of step %s", name)

    @property
    def steps(self) -> dict[str, tuple[str, Callable[[], list[str]]]]:
        """Each step by name, with the heartbeat it records."""
        return {
            "queue": (TICK, self.queue_step),
            "delivery": ("delivery", self.delivery_step),
            "owner digest": (OWNER_DIGEST, self.owner_digest_step),
            "leader digest": (LEADER_DIGEST, self.leader_digest_step),
        }

    def queue_step(self) -> list[str]:
        now = self.clock.now()
        reports = queue_reminders(self.engine, now, self.schedule)
        record_steps(self.engine, TICK, now, reports)
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
        now = self.clock.now()
        report = queue_owner_digests(self.engine, now, self.schedule)
        record_steps(self.engine, OWNER_DIGEST, now, [report])
        return [report.summary()]

    def leader_digest_step(self) -> list[str]:
        now = self.clock.now()
        report = queue_leader_digests(self.engine, now, self.schedule)
        record_steps(self.engine, LEADER_DIGEST, now, [report])
        return [report.summary()]

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
        for name in ("queue", "owner digest", "leader digest", "delivery"):
            self.run_step(name)
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
        triggers: dict[str, Any] = {
            "queue": IntervalTrigger(seconds=self.schedule.stall_seconds),
            "delivery": IntervalTrigger(seconds=self.schedule.delivery_seconds),
            "owner digest": CronTrigger(hour=hour, minute=minute, timezone=zone),
            "leader digest": CronTrigger(
                day_of_week=day, hour=leader_hour, minute=leader_minute, timezone=zone
            ),
        }
        for name, trigger in triggers.items():
            scheduler.add_job(self.run_step, trigger, args=[name], id=name, name=name)
        scheduler.start()
        try:
            self.stop.wait()
        finally:
            log.info("stopping: finishing the current step")
            scheduler.shutdown(wait=True)
            log.info("stopped")
