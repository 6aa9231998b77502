"""Leadership's weekly portfolio digest: accounts per stage, who is stuck or behind, KPIs off
target. Its size is bounded: the most urgent accounts in full, the rest counted, and the commands
that show the whole list named."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import defaults
from kamflow.config import DAYS
from kamflow.db import read_scope, stream
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar
from kamflow.definitions.ladder import Status, position
from kamflow.models import Account, Kpi, KpiValue, MessageKind, Notification, Person
from kamflow.outbox import Draft, Identity
from kamflow.records import snoozes
from kamflow.steps.base import BATCH, StepReport, StepRun, in_cycle, loaded_workflows, phases
from kamflow.text import shell_quote

NAME = "leader digests"


def latest_weekly(now: datetime, zone: ZoneInfo, day: str, hour: int, minute: int) -> datetime:
    """The latest ``day`` at ``hour:minute`` in ``zone`` that is not after ``now``."""
    local = now.astimezone(zone)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    at -= timedelta(days=(local.weekday() - DAYS.index(day)) % 7)
    return at if at <= local else at - timedelta(days=7)


def week_label(at: datetime) -> str:
    """The ISO week of ``at``, as a leader digest's period: ``2027-W03``."""
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def queue_leader_digests(run: StepRun) -> StepReport:
    """Leadership's weekly portfolio digest, one per active leader per week."""
    report = StepReport(NAME)
    at = latest_weekly(run.now, run.schedule.timezone, *run.schedule.leader_digest)
    label = week_label(at)
    with read_scope(run.engine) as reading:
        waiting = reading.execute(
            sa.select(col(Person.id), col(Person.email))
            .where(
                col(Person.is_leader),
                col(Person.active),
                ~sa.exists().where(
                    col(Notification.person_id) == col(Person.id),
                    col(Notification.kind) == MessageKind.LEADER_DIGEST.value,
                    col(Notification.period) == label,
                ),
            )
            .order_by(col(Person.email))
        ).all()
        if not waiting:
            return report  # this week's digests are all queued: nothing to build
        with Session(bind=reading) as session:
            view = leader_view(session, run.now, calendar=run.schedule.calendar)
    report.examined = len(waiting)
    subject = (
        f"Weekly portfolio digest {label}: {view['stuck_count']} stuck, "
        f"{view['behind_count']} behind"
    )
    report.offer(
        run,
        [
            Draft(
                identity=Identity.digest(
                    MessageKind.LEADER_DIGEST, person_id=person_id, period=label
                ),
                recipients=[email],
                cc=[],
                subject=subject,
                template="leader_digest",
                context={"week": label, **view},
                due_at=at,
            )
            for person_id, email in waiting
            if person_id is not None
        ],
    )
    return report


def leader_view(
    session: Session,
    now: datetime,
    limit: int = defaults.DIGEST_LIST_LIMIT,
    *,
    calendar: WorkCalendar = UTC_CALENDAR,
) -> dict[str, Any]:
    """The leadership view: accounts per stage, the most urgent stuck and behind accounts (and how
    many there are), the KPIs furthest off target (and how many are)."""
    definitions = loaded_workflows(session)
    counted = dict(
        (tuple(key), count)
        for *key, count in session.execute(
            sa.select(col(Account.workflow), col(Account.stage), sa.func.count()).group_by(
                col(Account.workflow), col(Account.stage)
            )
        ).all()
    )
    per_stage = [
        {
            "workflow": d.name,
            "stage": d.title_of(place),
            "count": counted.get((d.name, place), 0),
        }
        for d in definitions
        for place in d.places
    ]
    running = snoozes.any_active(session, now)
    lists: dict[Status, list[tuple[Any, ...]]] = {Status.STUCK: [], Status.BEHIND: []}
    counts = {Status.STUCK: 0, Status.BEHIND: 0}
    for phase in phases(definitions, now, calendar):
        counts[phase.status] += session.execute(
            sa.select(sa.func.count()).select_from(Account).where(phase.contains(Account))
        ).scalar_one()
        paused = snoozes.pausing(Account, now) if running else sa.false()
        oldest = session.execute(
            sa.select(
                col(Account.name),
                col(Account.stage_entered_at),
                col(Person.email),
                paused.label("snoozed"),
            )
            .join(Person, col(Person.id) == col(Account.owner_id))
            .where(phase.contains(Account))
            .order_by(col(Account.stage_entered_at), col(Account.id))
            .limit(limit)
        ).all()
        stage = phase.stage
        ladder = phase.workflow.ladder_for(stage)
        for name, entered, owner, snoozed in oldest:
            where = position(entered, stage.limit, ladder, now, phase.days)
            item = {
                "name": name,
                "owner": owner,
                "stage": phase.workflow.title_of(stage.name),
                "days": where.days_in_stage,
                "limit": stage.limit,
                "unit": phase.days.unit,
                "status": where.status.value,
                "snoozed": bool(snoozed),
                "command": f"kamflow why {shell_quote(name)}",
            }
            lists[phase.status].append((-where.days_over, name.lower(), item))
    off_target, off_count = _kpis_off_target(session, definitions, limit)
    return {
        "per_stage": per_stage,
        "stuck": [item for *_, item in heapq.nsmallest(limit, lists[Status.STUCK])],
        "stuck_count": counts[Status.STUCK],
        "behind": [item for *_, item in heapq.nsmallest(limit, lists[Status.BEHIND])],
        "behind_count": counts[Status.BEHIND],
        "kpis_off_target": off_target,
        "kpis_off_target_count": off_count,
    }


def _kpis_off_target(
    session: Session, definitions: list[Any], limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The KPIs of accounts in their cycle whose latest value misses the target: the furthest
    off first (at most ``limit``), and how many there are."""
    latest = (
        sa.select(col(KpiValue.id))
        .where(col(KpiValue.kpi_id) == col(Kpi.id))
        .order_by(col(KpiValue.recorded_at).desc(), col(KpiValue.id).desc())
        .limit(1)
        .correlate(Kpi)
        .scalar_subquery()
    )
    statement: Any = (
        sa.select(
            col(Account.name),
            col(Kpi.name).label("kpi"),
            col(Kpi.target),
            col(Kpi.unit),
            col(Kpi.lower_is_better),
            col(KpiValue.value),
        )
        .select_from(Kpi)
        .join(Account, col(Account.id) == col(Kpi.account_id))
        .join(KpiValue, col(KpiValue.id) == latest)
        .where(
            in_cycle(Account, definitions),
            col(Kpi.removed_at).is_(None),  # removed from the plan: no longer reported
            sa.or_(
                sa.and_(col(Kpi.lower_is_better), col(KpiValue.value) > col(Kpi.target)),
                sa.and_(~col(Kpi.lower_is_better), col(KpiValue.value) < col(Kpi.target)),
            ),
        )
    )
    furthest: list[tuple[float, str, str, dict[str, Any]]] = []
    count = 0
    for rows in stream(session.connection(), statement, BATCH):
        for account, kpi, target, unit, lower, value in rows:
            count += 1
            gap = abs(value - target) / (abs(target) or 1.0)
            item = {
                "account": account,
                "kpi": kpi,
                "target": target,
                "latest": value,
                "unit": unit,
                "direction": "at most" if lower else "at least",
            }
            entry = (gap, account.lower(), kpi, item)
            if len(furthest) < limit:
                heapq.heappush(furthest, entry)
            elif entry[:3] > furthest[0][:3]:
                heapq.heapreplace(furthest, entry)
    ordered = sorted(furthest, key=lambda e: (-e[0], e[1], e[2]))
    return [item for *_, item in ordered], count
