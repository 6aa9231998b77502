"""Digests: each owner's daily list of what needs them, and leadership's weekly portfolio view.

A digest is due at its latest scheduled time (e.g. today 08:00 in KAMFLOW_TIMEZONE); its key names
the day or week, so it is queued once however often the step runs, and a step that runs after a
pause sends only the latest one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow.config import DAYS, Schedule
from kamflow.db import session_scope
from kamflow.escalation import (
    StepReport,
    active_snooze,
    has_exited,
    leaders,
    overdue_accounts,
    stall_position,
)
from kamflow.ladder import Status
from kamflow.models import (
    Account,
    Action,
    ActionStatus,
    Kpi,
    KpiValue,
    Notification,
    OutboxStatus,
    Person,
)
from kamflow.notify.templates import render
from kamflow.outbox import Draft, already_queued
from kamflow.text import shell_quote
from kamflow.workflow import workflows_in_use


def latest_daily(now: datetime, zone: ZoneInfo, hour: int, minute: int) -> datetime:
    local = now.astimezone(zone)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at <= local else at - timedelta(days=1)


def latest_weekly(now: datetime, zone: ZoneInfo, day: str, hour: int, minute: int) -> datetime:
    local = now.astimezone(zone)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    at -= timedelta(days=(local.weekday() - DAYS.index(day)) % 7)
    return at if at <= local else at - timedelta(days=7)


def _stalled(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Behind and stuck accounts (not snoozed), with their owner."""
    found = []
    for account, definition, stage in overdue_accounts(session, now):
        where = stall_position(account, definition, now)
        if where is None or where.status == Status.ON_TRACK:
            continue
        owner = session.get(Person, account.owner_id)
        found.append(
            {
                "id": account.id,
                "name": account.name,
                "owner_id": account.owner_id,
                "owner": owner.email if owner else "",
                "stage": definition.title_of(stage.name),
                "days": where.days_in_stage,
                "limit": stage.limit_days,
                "status": where.status.value,
                "snoozed": active_snooze(session, account, now) is not None,
                "command": f"kamflow why {shell_quote(account.name)}",
            }
        )
    return found


def _overdue_actions(session: Session, today: Any) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Action, Account)
        .join(Account, col(Action.account_id) == col(Account.id))
        .where(Action.status == ActionStatus.OPEN, col(Action.due) <= today)
        .order_by(col(Action.due), col(Action.id))
    ).all()
    found = []
    for action, account in rows:
        if has_exited(account) is not False or action.due is None:
            continue
        found.append(
            {
                "id": action.id,
                "owner_id": action.owner_id,
                "account": account.name,
                "title": action.title,
                "due": action.due.isoformat(),
                "days_late": (today - action.due).days,
                "command": f"kamflow action done {shell_quote(account.name)} {action.id}",
            }
        )
    return found


def _sent_today(session: Session, email: str, since: datetime) -> set[str]:
    """Keys of the stall and action messages queued for ``email`` since ``since``, sent or about
    to be (a dead or obsolete one never reached the owner: the digest still names its subject)."""
    rows = session.exec(
        select(Notification.key, Notification.recipients, Notification.cc).where(
            col(Notification.created_at) >= since,
            col(Notification.kind).in_(["reminder", "escalation", "action"]),
            col(Notification.status).in_([OutboxStatus.PENDING.value, OutboxStatus.SENT.value]),
        )
    ).all()
    return {key for key, to, cc in rows if email in f"{to}, {cc}".split(", ")}


def queue_owner_digests(
    engine: sa.Engine,
    now: datetime,
    schedule: Schedule,
    *,
    dry_run: bool = False,
    also_sent: list[dict[str, Any]] | None = None,
) -> StepReport:
    """Each owner's daily digest of behind/stuck accounts and overdue actions, if any is left.

    ``also_sent``: messages a dry run of this same pass would have queued before the digest.
    """
    report = StepReport("owner digests")
    zone = schedule.timezone
    at = latest_daily(now, zone, *schedule.owner_digest)
    day_start = at.replace(hour=0, minute=0)
    with session_scope(engine) as session:
        owners = _may_need_digest(session, now, at)
        if _all_queued(session, [_owner_key(person_id, at) for person_id in owners]):
            return report  # every owner who may need one has today's: nothing to build
        stalled = _stalled(session, now)
        actions = _overdue_actions(session, at.date())
        people: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(
            lambda: {"accounts": [], "actions": []}
        )
        for item in stalled:
            if not item["snoozed"]:
                people[item["owner_id"]]["accounts"].append(item)
        for item in actions:
            if item["owner_id"] is not None:
                people[item["owner_id"]]["actions"].append(item)
    for person_id, items in sorted(people.items()):
        report.examined += 1
        with session_scope(engine) as session:
            person = session.get(Person, person_id)
            if person is None:
                continue
            key = _owner_key(person_id, at)
            if already_queued(session, key):
                continue
            sent = _sent_today(session, person.email, day_start)
            sent |= {d["key"] for d in also_sent or [] if person.email in [*d["to"], *d["cc"]]}
            accounts = [a for a in items["accounts"] if not _mentions(sent, "stall", a["id"])]
            todo = [a for a in items["actions"] if not _mentions(sent, "action", a["id"])]
            if not accounts and not todo:
                continue
            text, html = render(
                "owner_digest",
                owner=person.email,
                day=at.date().isoformat(),
                accounts=accounts,
                actions=todo,
            )
            parts = []
            if accounts:
                parts.append(f"{len(accounts)} account{'s' if len(accounts) != 1 else ''}")
            if todo:
                parts.append(f"{len(todo)} action{'s' if len(todo) != 1 else ''}")
            draft = Draft(
                key=key,
                kind="owner_digest",
                account_id=None,
                recipients=[person.email],
                cc=[],
                subject=(
                    f"Daily digest for {at.date().isoformat()}: {' and '.join(parts)} "
                    f"need{'s' if len(accounts) + len(todo) == 1 else ''} you"
                ),
                body_text=text,
                body_html=html,
            )
            report.offer(session, draft, now=now, dry_run=dry_run)
    return report


def _owner_key(person_id: int, at: datetime) -> str:
    return f"digest:owner:{person_id}:{at.date().isoformat()}"


def _leader_key(person_id: int | None, label: str) -> str:
    return f"digest:leaders:{person_id}:{label}"


def _all_queued(session: Session, keys: list[str]) -> bool:
    """Whether every one of ``keys`` is in the outbox already (one query)."""
    if not keys:
        return True
    found = session.exec(
        select(func.count()).select_from(Notification).where(col(Notification.key).in_(keys))
    ).one()
    return found == len(set(keys))


def _may_need_digest(session: Session, now: datetime, at: datetime) -> set[int]:
    """Owners of an account past its stage's limit or of an open action due by ``at``'s day: a
    superset of those who get a digest, found without building one."""
    owners = {account.owner_id for account, _, _ in overdue_accounts(session, now)}
    owners.update(
        owner
        for owner in session.exec(
            select(Action.owner_id)
            .distinct()
            .where(Action.status == ActionStatus.OPEN, col(Action.due) <= at.date())
        ).all()
        if owner is not None
    )
    return owners


def _mentions(keys: set[str], kind: str, item_id: int) -> bool:
    return any(key.startswith(f"{kind}:{item_id}:") for key in keys)


def portfolio(session: Session, now: datetime) -> dict[str, Any]:
    """The leadership view: accounts per stage, who is behind or stuck, KPIs off target."""
    per_stage: list[dict[str, Any]] = []
    for definition in workflows_in_use(session):
        counted = dict(
            session.exec(
                select(Account.stage, func.count())
                .where(Account.workflow == definition.name)
                .group_by(col(Account.stage))
            ).all()
        )
        for stage in definition.places:
            per_stage.append(
                {
                    "workflow": definition.name,
                    "stage": definition.title_of(stage),
                    "count": counted.get(stage, 0),
                }
            )
    stalled = _stalled(session, now)
    escalations = [a for a in stalled if a["status"] == Status.STUCK.value]
    off_target = []
    kpis = session.exec(
        select(Kpi, Account).join(Account, col(Kpi.account_id) == col(Account.id))
    ).all()
    for kpi, account in kpis:
        if has_exited(account) is not False:  # exited, or its workflow cannot be loaded
            continue
        latest = session.exec(
            select(KpiValue)
            .where(KpiValue.kpi_id == kpi.id)
            .order_by(col(KpiValue.recorded_at).desc(), col(KpiValue.id).desc())
        ).first()
        if latest is None:
            continue
        met = latest.value <= kpi.target if kpi.lower_is_better else latest.value >= kpi.target
        if not met:
            off_target.append(
                {
                    "account": account.name,
                    "kpi": kpi.name,
                    "target": kpi.target,
                    "latest": latest.value,
                    "unit": kpi.unit,
                    "direction": "at most" if kpi.lower_is_better else "at least",
                }
            )
    return {
        "per_stage": per_stage,
        "behind": [a for a in stalled if a["status"] == Status.BEHIND.value],
        "stuck": escalations,
        "kpis_off_target": off_target,
    }


def queue_leader_digests(
    engine: sa.Engine, now: datetime, schedule: Schedule, *, dry_run: bool = False
) -> StepReport:
    """Leadership's weekly portfolio digest, one per leader per week."""
    report = StepReport("leader digests")
    at = latest_weekly(now, schedule.timezone, *schedule.leader_digest)
    year, week, _ = at.isocalendar()
    label = f"{year}-W{week:02d}"
    with session_scope(engine) as session:
        heads = [(p.id, p.email) for p in leaders(session)]
        if _all_queued(session, [_leader_key(person_id, label) for person_id, _ in heads]):
            return report  # this week's digests are all queued: nothing to build
        view = portfolio(session, now)
    text, html = render("leader_digest", week=label, **view)
    for person_id, email in heads:
        report.examined += 1
        with session_scope(engine) as session:
            key = _leader_key(person_id, label)
            if already_queued(session, key):
                continue
            draft = Draft(
                key=key,
                kind="leader_digest",
                account_id=None,
                recipients=[email],
                cc=[],
                subject=(
                    f"Weekly portfolio digest {label}: {len(view['stuck'])} stuck, "
                    f"{len(view['behind'])} behind"
                ),
                body_text=text,
                body_html=html,
            )
            report.offer(session, draft, now=now, dry_run=dry_run)
    return report
