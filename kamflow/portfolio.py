"""The portfolio: scoring and ranking accounts, moving them between workflows, and the views
leadership looks at (the board, role coverage, KPIs against targets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults, history
from kamflow.accounts import editable, find_account, summary, touch
from kamflow.errors import InvalidInput
from kamflow.guards import key_accounts, latest_scores
from kamflow.models import Account, HistoryKind, Person, RoleAssignment, Score
from kamflow.people import require_owner_or_leader
from kamflow.plan import kpis_view
from kamflow.selection import FACTORS, portfolio_config
from kamflow.selection import score as compute_score
from kamflow.workflow import get_workflow, workflows_in_use


def score_account(
    session: Session, ref: str, values: dict[str, Any], *, actor: str, now: datetime
) -> Score:
    """Record a scoring on the eight factors; earlier scores are kept."""
    account, _ = editable(session, ref)
    result = compute_score(values, portfolio_config().selection)
    row = Score(
        account_id=account.id,  # type: ignore[arg-type]
        total=result.total,
        scored_at=now,
        scored_by=actor,
        **result.values,
    )
    session.add(row)
    inputs = ", ".join(f"{factor} {result.values[factor]}" for factor in FACTORS)
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.SCORE,
        note=f"scored {result.total:g} ({inputs})",
    )
    touch(session, account)
    return row


def scores_of(session: Session, ref: str) -> list[dict[str, Any]]:
    """Every scoring of an account, newest first."""
    account = find_account(session, ref)
    rows = session.exec(
        select(Score).where(Score.account_id == account.id).order_by(col(Score.id).desc())
    ).all()
    return [
        {
            "total": row.total,
            "scored_at": row.scored_at.isoformat(),
            "scored_by": row.scored_by,
            **{factor: getattr(row, factor) for factor in FACTORS},
        }
        for row in rows
    ]


def board(session: Session, *, now: datetime) -> list[dict[str, Any]]:
    """Every candidate and key account (not the exited), stage by stage across the workflows,
    with owner, days in stage, status and latest score."""
    rows: list[tuple[int, str, dict[str, Any]]] = []
    for definition in workflows_in_use(session):
        name = definition.name
        places = [*definition.intake_names, *definition.stage_names]
        found = session.exec(
            select(Account, Person)
            .join(Person, col(Account.owner_id) == col(Person.id))
            .where(Account.workflow == name, col(Account.stage).in_(places))
            .order_by(col(Account.name))
        ).all()
        scores = latest_scores(session, [a.id for a, _ in found])
        for account, owner in found:
            row = {
                **summary(account, owner, definition, now),
                "key_account": not definition.is_intake(account.stage),
                "score": scores.get(account.id),
            }
            rows.append((places.index(account.stage), account.name.lower(), row))
    # Stage by stage across all workflows (kam and kam-lite share the stages' order).
    return [row for _, _, row in sorted(rows, key=lambda item: item[:2])]


def rank(session: Session, *, now: datetime) -> list[dict[str, Any]]:
    """Candidates and key accounts by their latest score, best first (unscored last)."""
    threshold = portfolio_config().selection.threshold
    rows = board(session, now=now)
    for row in rows:
        row["above_threshold"] = row["score"] is not None and row["score"] >= threshold
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), r["name"].lower()))
    for position, row in enumerate(rows, start=1):
        row["rank"] = position
    return rows


def set_workflow(
    session: Session, ref: str, workflow: str, *, actor: str, now: datetime
) -> Account:
    """Move an account to another workflow, keeping its stage, data and history."""
    account = find_account(session, ref)
    current, target = get_workflow(account.workflow), get_workflow(workflow)
    if target.name == current.name:
        raise InvalidInput(f"{account.name} already follows workflow {target.name}")
    if account.stage not in target.places:
        raise InvalidInput(
            f"workflow {target.name} has no stage {account.stage!r}: "
            f"{account.name} cannot keep its place there"
        )
    require_owner_or_leader(session, account, actor, "change the workflow of")
    session.execute(
        sa.update(Account)
        .where(col(Account.id) == account.id)
        .values(workflow=target.name, version=Account.version + 1)
    )
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.WORKFLOW,
        note=f"workflow {current.name} -> {target.name}",
    )
    account.workflow = target.name
    return account


# --- views ---------------------------------------------------------------------------------------


def coverage(session: Session) -> list[dict[str, Any]]:
    """Key accounts x the six roles: who holds each, and the gaps."""
    accounts = key_accounts(session)
    ids = [a.id for a in accounts]
    holders: dict[int | None, dict[str, list[str]]] = {
        a.id: {role: [] for role in defaults.ROLES} for a in accounts
    }
    if ids:
        rows = session.exec(
            select(RoleAssignment.account_id, RoleAssignment.role, Person.email)
            .join(Person, col(RoleAssignment.person_id) == col(Person.id))
            .where(col(RoleAssignment.account_id).in_(ids))
            .order_by(col(Person.email))
        ).all()
        for account_id, role, email in rows:
            holders[account_id].setdefault(role, []).append(email)
    return [
        {
            "account": a.name,
            "stage": a.stage,
            "roles": holders[a.id],
            "gaps": [role for role in defaults.ROLES if not holders[a.id][role]],
        }
        for a in accounts
    ]


def kpi_report(session: Session) -> list[dict[str, Any]]:
    """Every key account's KPIs: target against the latest value, off target marked."""
    rows = []
    for account in key_accounts(session):
        for kpi in kpis_view(session, account):
            rows.append({"account": account.name, **kpi, "off_target": kpi["on_target"] is False})
    return rows


def stage_counts(session: Session) -> list[dict[str, Any]]:
    """How many accounts are in each place of each workflow (the funnel)."""
    counted = dict(
        session.exec(
            select(Account.workflow + ":" + Account.stage, sa.func.count()).group_by(
                col(Account.workflow), col(Account.stage)
            )
        ).all()
    )
    rows = []
    for definition in workflows_in_use(session):
        name = definition.name
        for place in definition.places:
            rows.append(
                {
                    "workflow": name,
                    "stage": place,
                    "title": definition.title_of(place),
                    "count": counted.get(f"{name}:{place}", 0),
                }
            )
    return rows
