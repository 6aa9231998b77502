"""The daemon: APScheduler decides when the steps run; the steps do the work over the database.

Every few minutes the queuing steps of the table run in order (stalls, actions, digests; a digest
is queued when its moment has come, so one missed during an outage goes out at the next run); at
the digests' hours they run at once, so digests are punctual; delivery runs on its own interval.
Several daemons may share one database: the outbox's unique keys and delivery leases, not the
scheduler, keep any message from being sent twice.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from kamflow import defaults
from kamflow.clock import Clock
from kamflow.config import MailSettings, Schedule
from kamflow.errors import KamflowError
from kamflow.steps import run_step as run_queuing_step
from kamflow.steps.base import StepRun, record_heartbeat
from kamflow.steps.delivery import NAME as DELIVERY
from kamflow.steps.delivery import deliver, worker_name
from kamflow.steps.table import QUEUING, step
from kamflow.text import first_line

log = logging.getLogger("kamflow.daemon")

#: The daemon's job that runs every queuing step of the table, in order.
QUEUE = "queue"
#: Failures that are about the world (the database or the mail server is away), not a bug: one
#: log line each; a traceback only with KAMFLOW_DEBUG.
EXPECTED = (KamflowError, exc.SQLAlchemyError, OSError)


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
        self._queuing = threading.Lock()  # the interval and a digest's hour may coincide

    def run_step(self, name: str) -> None:
        """Run ``queue`` (every queuing step), ``delivery`` or one queuing step by name, now.

        A failure is one log line and a heartbeat that `kamflow status` shows; the step's next
        run tries again. Each queuing step fails on its own: the others still run.
        """
        if name == QUEUE:
            with self._queuing:
                for entry in QUEUING:
                    self._guarded(entry.name)
        else:
            self._guarded(name)

    def _guarded(self, name: str) -> None:
        if self.stop.is_set():
            return
        try:
            for line in self._run(name):
                log.info(line)
        except Exception as error:
            problem = f"{name} failed: {first_line(error)}"
            if isinstance(error, EXPECTED) and not os.environ.get(defaults.ENV_DEBUG):
                log.error("step %s", problem)
            else:
                log.exception("step %s", problem)
            try:
                record_heartbeat(
                    self.engine, name, self.clock.now(), ok=False, detail={"stopped": problem}
                )
            except Exception as again:  # the database itself may be what failed
                log.debug("cannot record the failure of step %s: %s", name, first_line(again))

    def _run(self, name: str) -> list[str]:
        now = self.clock.now()
        if name == DELIVERY:
            report = deliver(
                self.engine,
                self.mail.make_transports(),
                sender=self.mail.sender,
                now=now,
                worker=self.worker,
                lease_seconds=self.schedule.lease_seconds,
            )
            return [report.summary()]
        run = StepRun(self.engine, now, self.schedule, worker=self.worker, keep_queued=False)
        return [run_queuing_step(step(name), run).summary()]

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(128 + signum)  # a second signal: stop at once
        self.stop.set()

    def run(self) -> None:
        """Run until SIGTERM or SIGINT: one pass of the queuing steps and of delivery at once, then
        APScheduler's schedule (the queuing steps every stall interval and at the digests' hours,
        delivery every delivery interval). The first signal lets the current step finish; a second
        one exits at once."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        log.info(
            "kamflow daemon %s starting: stalls every %ss, delivery every %ss, messages to %s",
            self.worker,
            self.schedule.stall_seconds,
            self.schedule.delivery_seconds,
            self.mail.describe(),
        )
        # One full pass at start-up, then the schedule.
        self.run_step(QUEUE)
        self.run_step(DELIVERY)
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
        jobs: dict[str, tuple[str, Any]] = {
            QUEUE: (QUEUE, IntervalTrigger(seconds=self.schedule.stall_seconds)),
            DELIVERY: (DELIVERY, IntervalTrigger(seconds=self.schedule.delivery_seconds)),
            "owner digest hour": (QUEUE, CronTrigger(hour=hour, minute=minute, timezone=zone)),
            "leader digest hour": (
                QUEUE,
                CronTrigger(day_of_week=day, hour=leader_hour, minute=leader_minute, timezone=zone),
            ),
        }
        for job_id, (name, trigger) in jobs.items():
            scheduler.add_job(self.run_step, trigger, args=[name], id=job_id, name=job_id)
        scheduler.start()
        try:
            self.stop.wait()
        finally:
            log.info("stopping: finishing the current step")
            scheduler.shutdown(wait=True)
            log.info("stopped")
