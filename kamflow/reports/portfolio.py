"""The portfolio as leadership looks at it: the board, the rank, role coverage, KPIs against
targets, the account list; each one set-based statement, streamed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar
from kamflow.definitions.discovery import (
    available,
    get_workflow,
    workflow_names_in_use,
    workflows_in_use,
)
from kamflow.definitions.selection import portfolio_config
from kamflow.definitions.workflow import Workflow
from kamflow.errors import KamflowError, NotFound
from kamflow.models import Account, Kpi, KpiValue, Person, RoleAssignment, Score
from kamflow.records.cap import latest_score
from kamflow.records.people import get_person
from kamflow.records.plan import kpi_rows, kpi_view
from kamflow.reports.listing import (
    INTAKE,
    STAGE,
    Listing,
    Places,
    census,
    display_length,
    name_order,
    paused,
    place_in,
    rows_of,
    text_widths,
    widest,
)
from kamflow.text import format_number, score_text


def board_select(places: Places, where: Any, pausing: Any = None) -> Any:
    """SQL: the accounts ``where`` selects, with their owner's address, latest score and whether
    a snooze pauses their stay (``pausing``, as `listing.paused` gives it: None when no snooze
    runs)."""
    snoozed = sa.false() if pausing is None else pausing
    return (
        sa.select(
            col(Account.id),
            col(Account.name),
            col(Account.workflow),
            col(Account.kind),
            col(Account.stage),
            col(Account.stage_entered_at),
            col(Person.email).label("owner"),
            latest_score(Account.id).label("score"),
            snoozed.label("snoozed"),
        )
        .join(Person, col(Person.id) == col(Account.owner_id))
        .where(places.where(Account, INTAKE, STAGE), where)
    )


def board_row(places: Places, row: Any, now: datetime) -> dict[str, Any]:
    """A row of board_select() as the board shows it."""
    return {
        **places.summary(row, row.owner, now, snoozed=bool(row.snoozed)),
        "key_account": places.of(row.workflow, row.stage).kind == STAGE,
        "score": row.score,
    }


def _board_widths(session: Session, places: Places, now: datetime) -> dict[str, int]:
    on_board = places.where(Account, INTAKE, STAGE)
    found = census(session, places, now, on_board)
    widths = text_widths(session, found, now, on_board)
    widths["rank"] = len(str(sum(group.count for group in found)))
    # Any score ever given bounds the latest ones; there are few distinct totals.
    totals = sa.select(col(Score.total)).distinct()
    widths["score"] = widest(session, totals, score_text, len(score_text(None)))
    return widths


def board(session: Session, *, now: datetime, calendar: WorkCalendar = UTC_CALENDAR) -> Listing:
    """Every candidate and key account (not the exited), stage by stage across the workflows,
    then by name, with owner, days in stage, status and latest score; streamed."""
    places = Places(workflows_in_use(session), calendar)
    statement = board_select(places, sa.true(), paused(session, now)).order_by(
        places.order(Account, INTAKE, STAGE), name_order(session, Account.name)
    )
    rows = (board_row(places, row, now) for row in rows_of(session, statement))
    return Listing(rows, _board_widths(session, places, now))


def rank(session: Session, *, now: datetime, calendar: WorkCalendar = UTC_CALENDAR) -> Listing:
    """Candidates and key accounts by their latest score, best first (unscored last), then by
    name; streamed."""
    threshold = portfolio_config().selection.threshold
    places = Places(workflows_in_use(session), calendar)
    statement = board_select(places, sa.true(), paused(session, now))
    score = statement.selected_columns.score
    statement = statement.order_by(score.desc().nulls_last(), name_order(session, Account.name))

    def ranked() -> Iterator[dict[str, Any]]:
        """The rows with their rank, and whether their score reaches the promotion threshold."""
        for position, row in enumerate(rows_of(session, statement), start=1):
            yield {
                **board_row(places, row, now),
                "above_threshold": row.score is not None and row.score >= threshold,
                "rank": position,
            }

    return Listing(ranked(), _board_widths(session, places, now))


# --- views ---------------------------------------------------------------------------------------


def team_rows(accounts: Any, *order: Any) -> Any:
    """SQL: each account of the subquery ``accounts`` (id, name, stage) with every role held on
    it and its holder's address (one row with NULLs for an account without a team), in
    ``order`` and then by address."""
    return (
        sa.select(
            accounts.c.id,
            accounts.c.name,
            accounts.c.stage,
            col(RoleAssignment.role),
            col(Person.email),
        )
        .select_from(accounts)
        .outerjoin(RoleAssignment, col(RoleAssignment.account_id) == accounts.c.id)
        .outerjoin(Person, col(Person.id) == col(RoleAssignment.person_id))
        .order_by(*order, accounts.c.id, col(Person.email))
    )


def teams(rows: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Rows of team_rows(), an account's rows together, as coverage shows each account."""
    for _, group in groupby(rows, key=lambda row: row.id):
        first = None
        holders: dict[str, list[str]] = {role: [] for role in defaults.ROLES}
        for row in group:
            first = first or row
            if row.role is not None:
                holders.setdefault(row.role, []).append(row.email)
        assert first is not None
        yield {
            "account": first.name,
            "stage": first.stage,
            "roles": holders,
            "gaps": [role for role in defaults.ROLES if not holders[role]],
        }


def coverage(session: Session) -> Listing:
    """Key accounts x the six roles, by name: who holds each, and the gaps; streamed."""
    places = Places(workflows_in_use(session))
    key = places.where(Account, STAGE)
    accounts = (
        sa.select(col(Account.id), col(Account.name), col(Account.stage)).where(key).subquery()
    )
    statement = team_rows(accounts, name_order(session, accounts.c.name))
    held = (
        sa.select(
            col(RoleAssignment.role),
            (
                sa.func.sum(display_length(col(Person.email))) + len(", ") * (sa.func.count() - 1)
            ).label("width"),
        )
        .join(Person, col(Person.id) == col(RoleAssignment.person_id))
        .join(Account, col(Account.id) == col(RoleAssignment.account_id))
        .where(key)
        .group_by(col(RoleAssignment.account_id), col(RoleAssignment.role))
        .subquery()
    )
    widths = dict(
        session.execute(
            sa.select(held.c.role, sa.func.max(held.c.width)).group_by(held.c.role)
        ).all()
    )
    longest = session.execute(sa.select(sa.func.max(display_length(col(Account.name)))).where(key))
    widths["account"] = longest.scalar() or 0
    return Listing(teams(rows_of(session, statement)), widths)


def kpi_report(session: Session) -> Listing:
    """Every key account's KPIs, by account name: target against the latest value, off target
    marked; streamed."""
    places = Places(workflows_in_use(session))
    key = places.where(Account, STAGE)
    statement = kpi_rows(key)
    columns = statement.selected_columns
    statement = statement.order_by(
        name_order(session, columns.account_name), columns.account_id, columns.kpi_id
    )

    def rows() -> Iterator[dict[str, Any]]:
        """Each KPI as kpi_view() shows it, with its account's name and whether it is off target."""
        for row in rows_of(session, statement):
            view = kpi_view(row)
            yield {"account": row.account_name, **view, "off_target": view["on_target"] is False}

    return Listing(rows(), _kpi_widths(session, key))


def _kpi_widths(session: Session, key: Any) -> dict[str, int]:
    """The widest account name, KPI name, unit and period, and the widest target and latest
    value as `format_number` writes them (over the distinct numbers, a batch at a time)."""
    length = display_length
    account, name, unit = session.execute(
        sa.select(
            sa.func.max(length(col(Account.name))),
            sa.func.max(length(col(Kpi.name))),
            sa.func.max(length(col(Kpi.unit))),
        )
        .join(Kpi, col(Kpi.account_id) == col(Account.id))
        .where(key, col(Kpi.removed_at).is_(None))
    ).one()
    period = session.execute(sa.select(sa.func.max(length(col(KpiValue.period))))).scalar()
    widths = {"account": account or 0, "name": name or 0, "unit": unit or 0, "period": period or 0}
    for field, column in (("target", col(Kpi.target)), ("latest", col(KpiValue.value))):
        widths[field] = widest(session, sa.select(column).distinct(), format_number)
    return widths


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


# --- the account list ----------------------------------------------------------------------------


def normalise_stage(text: str) -> str:
    """A stage named in any common spelling (``Action plan``, ``action-plan``) as a stage name."""
    wanted = text.strip().lower().replace("-", "_").replace(" ", "_")
    for name in sorted(available()):
        try:
            return get_workflow(name).resolve_stage(wanted)
        except KamflowError:  # not in this workflow, or its file does not load
            continue
    raise NotFound(f"no stage {text!r} in any workflow")


def summary(
    account: Account,
    owner: Person,
    definition: Workflow,
    now: datetime,
    *,
    snoozed: bool = False,
    calendar: WorkCalendar = UTC_CALENDAR,
) -> dict[str, Any]:
    """The one-line facts about an account, as shown by `account list` (``snoozed``: a snooze
    pauses its stay; business days are those of ``calendar``)."""
    place = place_in(definition, account.stage, calendar)
    return place.summary(account, owner.email, now, snoozed=snoozed)


def list_accounts(
    session: Session,
    *,
    stage: str | None,
    now: datetime,
    owner: str | None = None,
    calendar: WorkCalendar = UTC_CALENDAR,
) -> Listing:
    """Every account (of ``stage``, of the person whose email is ``owner``, if given) by name,
    streamed, with its one-line facts; those of a workflow whose file does not load are left out
    (workflows_in_use warns)."""
    definitions = workflows_in_use(session)
    places = Places(definitions, calendar)
    which: Any = sa.true() if stage is None else col(Account.stage) == normalise_stage(stage)
    if owner is not None:
        which = sa.and_(which, col(Account.owner_id) == get_person(session, owner).id)
    pausing = paused(session, now)
    if len(definitions) < len(workflow_names_in_use(session)):
        # A workflow whose file does not load is left out with its accounts (and a warning).
        which = sa.and_(which, col(Account.workflow).in_([d.name for d in definitions]))
    statement = (
        sa.select(
            col(Account.id),
            col(Account.name),
            col(Account.workflow),
            col(Account.kind),
            col(Account.stage),
            col(Account.stage_entered_at),
            col(Person.email),
            (sa.false() if pausing is None else pausing).label("snoozed"),
        )
        .join(Person, col(Account.owner_id) == col(Person.id))
        .where(which)
        .order_by(col(Account.name))
    )
    widths = text_widths(session, census(session, places, now, which), now, which)
    widths["id"] = len(str(session.execute(sa.select(sa.func.max(col(Account.id)))).scalar() or 0))
    rows = (
        places.summary(row, row.email, now, snoozed=bool(row.snoozed))
        for row in rows_of(session, statement)
    )
    return Listing(rows, widths)
