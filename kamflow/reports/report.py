"""`kamflow report --html FILE`: the portfolio on one self-contained page.

Everything is inline (CSS and SVG drawn here): no script, no font, no image to fetch, so the page
works offline and can be mailed around as one file. It keeps one readable size whatever the
portfolio's: the summaries count every account in SQL, and each list holds at most
``defaults.REPORT_LIST_LIMIT`` rows, the most urgent first, naming the command for the rest.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup
from sqlmodel import Session, col

from kamflow import defaults
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar
from kamflow.definitions.discovery import get_workflow, workflows_in_use
from kamflow.definitions.ladder import Status
from kamflow.files import write_private
from kamflow.models import Account, RoleAssignment
from kamflow.notify.templates import STATUS_COLOURS
from kamflow.records.plan import kpi_rows, kpi_view
from kamflow.reports.diagram import mermaid, svg
from kamflow.reports.listing import (
    CANDIDATE,
    INTAKE,
    SNOOZED,
    STAGE,
    Census,
    Places,
    census,
    name_order,
    paused,
)
from kamflow.reports.portfolio import board_row, board_select, stage_counts, team_rows, teams
from kamflow.text import plural

#: The colour of each status on the page, the same as in the mails.
COLOURS = STATUS_COLOURS


#: The commands that give each list of the page in full.
FULL_LISTS = {
    "board": "kamflow portfolio --json",
    "stuck": "kamflow portfolio --json",
    "behind": "kamflow portfolio --json",
    "coverage": "kamflow coverage --json",
    "kpis": "kamflow kpis --json",
    "export": "kamflow account export FILE",
}


def build_report(
    session: Session,
    *,
    now: datetime,
    limit: int = defaults.REPORT_LIST_LIMIT,
    calendar: WorkCalendar = UTC_CALENDAR,
) -> dict[str, Any]:
    """Everything the page shows, as plain data (also what `report --json` prints).

    Summaries count the whole portfolio in SQL; the lists hold everything while it fits in
    ``limit`` rows and otherwise the most urgent ``limit`` (the longest over their stage's limit,
    the teams with the most gaps, the KPIs furthest off target), with how many more there are and
    the command that lists them all. The page has the same size whatever the portfolio's.
    """
    definitions = workflows_in_use(session)
    places = Places(definitions, calendar)
    used = [definition.name for definition in definitions] or [defaults.WORKFLOW]
    on_board = census(session, places, now, places.where(Account, INTAKE, STAGE))
    summary = _summary(places, on_board)
    pausing = paused(session, now)
    board_rows: list[dict[str, Any]] = []
    if summary["accounts"] <= limit:
        statement = board_select(places, sa.true(), pausing).order_by(
            places.order(Account, INTAKE, STAGE), name_order(session, Account.name)
        )
        board_rows = [board_row(places, row, now) for row in session.execute(statement)]
    stuck = _most_overdue(session, places, now, Status.STUCK, limit, pausing)
    behind = _most_overdue(session, places, now, Status.BEHIND, limit, pausing)
    key = places.where(Account, STAGE)
    teams_shown = _least_covered(session, key, limit)
    kpi_counts = _kpi_counts(session, key)
    kpis_shown = _kpis_furthest_off(session, key, limit, everything=kpi_counts["kpis"] <= limit)
    shown = {
        "board": (board_rows, summary["accounts"]),
        "stuck": (stuck, summary["stuck"]),
        "behind": (behind, summary["behind"]),
        "coverage": (teams_shown, summary["key_accounts"]),
        "kpis": (kpis_shown, kpi_counts["kpis"]),
    }
    return {
        "generated_at": now.isoformat(),
        "summary": summary,
        "board": board_rows,
        "funnel": _funnel(stage_counts(session), used),
        "stuck": stuck,
        "behind": behind,
        "coverage": teams_shown,
        "coverage_gaps": _gaps_per_role(session, key, summary["key_accounts"]),
        "kpis": kpis_shown,
        "kpi_counts": kpi_counts,
        "more": {
            name: {"count": total - len(rows), "command": FULL_LISTS[name]}
            for name, (rows, total) in shown.items()
        },
        "export_command": FULL_LISTS["export"],
        "list_limit": limit,
        "workflows": used,
    }


def _summary(places: Places, found: list[Census]) -> dict[str, Any]:
    """How many accounts are on the board, by status and by stage (stages of the same name
    added up across the workflows, in process order)."""
    statuses = (Status.ON_TRACK.value, Status.BEHIND.value, Status.STUCK.value, SNOOZED, CANDIDATE)
    totals = dict.fromkeys(statuses, 0)
    stages: dict[str, dict[str, Any]] = {}
    for place in sorted(places.select(INTAKE, STAGE), key=lambda p: p.order):
        stages.setdefault(
            place.name,
            {"stage": place.name, "title": place.title, **dict.fromkeys(statuses, 0), "total": 0},
        )
    for group in found:
        totals[group.status] += group.count
        row = stages[group.place.name]
        row[group.status] += group.count
        row["total"] += group.count
    return {
        "accounts": sum(totals.values()),
        "key_accounts": sum(totals.values()) - totals[CANDIDATE],
        "candidates": totals[CANDIDATE],
        **{status: totals[status] for status in statuses if status != CANDIDATE},
        "stages": list(stages.values()),
    }


def _most_overdue(
    session: Session, places: Places, now: datetime, status: Status, limit: int, pausing: Any
) -> list[dict[str, Any]]:
    """The ``limit`` accounts of ``status`` longest past their stage's limit, longest first;
    a snoozed account (``pausing``, None when no snooze runs) is neither behind nor stuck.

    One indexed query per stage (its oldest stays first), the stages' heads merged here: the
    accounts most days over their limit overall are among the first ``limit`` of some stage.
    """
    found: list[tuple[datetime, str, dict[str, Any]]] = []
    for place in places.select(STAGE):
        behind_line, stuck_line = place.lines(now)
        entered = col(Account.stage_entered_at)
        if status == Status.STUCK:
            when = entered <= stuck_line
        else:
            when = sa.and_(entered > stuck_line, entered <= behind_line)
        if pausing is not None:
            when = sa.and_(when, sa.not_(pausing))
        statement = (
            board_select(
                places,
                sa.and_(col(Account.workflow) == place.workflow, col(Account.stage) == place.name),
            )
            .where(when)
            .order_by(entered, col(Account.id))
            .limit(limit)
        )
        assert place.limit is not None
        for row in session.execute(statement):
            due = place.days.deadline(row.stage_entered_at, place.limit)
            found.append((due, row.name.lower(), board_row(places, row, now)))
    found.sort(key=lambda item: item[:2])
    return [row for _, _, row in found[:limit]]


def _least_covered(session: Session, key: Any, limit: int) -> list[dict[str, Any]]:
    """Every key account's team by name while they fit in ``limit``; otherwise the ``limit``
    teams with the most roles nobody holds."""
    held = (
        sa.select(sa.func.count(sa.distinct(col(RoleAssignment.role))))
        # Every stored role is one of the six (plan.assign_role checks): no IN list, so that
        # counting is one range of the unique index per account, not six probes.
        .where(col(RoleAssignment.account_id) == col(Account.id))
        .scalar_subquery()
        .label("held")
    )
    ordered = sa.select(col(Account.id), col(Account.name), col(Account.stage), held).where(key)
    by_name = name_order(session, Account.name)
    worst = ordered.order_by(held, by_name).limit(limit).subquery()
    total = session.execute(sa.select(sa.func.count()).select_from(Account).where(key))
    if total.scalar_one() <= limit:
        return list(teams(session.execute(team_rows(worst, name_order(session, worst.c.name)))))
    statement = team_rows(worst, worst.c.held, name_order(session, worst.c.name))
    return list(teams(session.execute(statement)))


def _gaps_per_role(session: Session, key: Any, key_accounts: int) -> dict[str, int]:
    """How many key accounts have nobody in each role (one pass over the assignments)."""
    holding = dict(
        session.execute(
            sa.select(col(RoleAssignment.role), sa.func.count(sa.distinct(col(Account.id))))
            .join(Account, col(Account.id) == col(RoleAssignment.account_id))
            .where(key)
            .group_by(col(RoleAssignment.role))
        ).all()
    )
    return {role: key_accounts - holding.get(role, 0) for role in defaults.ROLES}


def _off_target(columns: Any) -> Any:
    """SQL: a row of kpi_rows() whose latest value misses its target."""
    lower = columns.lower_is_better
    return sa.or_(
        sa.and_(lower, columns.value > columns.target),
        sa.and_(sa.not_(lower), columns.value < columns.target),
    )


def _kpi_counts(session: Session, key: Any) -> dict[str, int]:
    """How many KPIs the key accounts have, how many are off target, how many have no value."""
    rows = kpi_rows(key).subquery()
    kpis, off, missing = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((_off_target(rows.c), 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((rows.c.value.is_(None), 1), else_=0)), 0),
        )
    ).one()
    return {"kpis": kpis, "off_target": off, "no_value": missing}


def _kpis_furthest_off(
    session: Session, key: Any, limit: int, *, everything: bool
) -> list[dict[str, Any]]:
    """Every KPI by account name when ``everything``; otherwise the ``limit`` off target by the
    largest share of their target."""
    statement = kpi_rows(key)
    columns = statement.selected_columns
    by_name = (name_order(session, columns.account_name), columns.account_id, columns.kpi_id)
    if everything:
        statement = statement.order_by(*by_name)
    else:
        missed = sa.case(
            (columns.lower_is_better, columns.value - columns.target),
            else_=columns.target - columns.value,
        )
        scale = sa.case((columns.target == 0, 1.0), else_=sa.func.abs(columns.target))
        statement = (
            statement.where(_off_target(columns))
            .order_by((missed / scale).desc(), *by_name)
            .limit(limit)
        )
    found = []
    for row in session.execute(statement):
        view = kpi_view(row)
        found.append(
            {"account": row.account_name, **view, "off_target": view["on_target"] is False}
        )
    return found


def _funnel(counts: list[dict[str, Any]], used: list[str]) -> list[dict[str, Any]]:
    """Accounts per place of the cycle, summed over the workflows in use, in process order."""
    totals: dict[str, dict[str, Any]] = {}
    for row in counts:
        if row["workflow"] not in used:
            continue
        definition = get_workflow(row["workflow"])
        if definition.is_exit(row["stage"]):
            continue
        entry = totals.setdefault(
            row["stage"], {"stage": row["stage"], "title": row["title"], "count": 0}
        )
        entry["count"] += row["count"]
    return list(totals.values())


#: About how wide a character of the charts' 12px labels is, to size the label column.
CHAR_PX = 7
#: The widest label column a chart gives its names; a longer name is cut short (in full on hover).
LABEL_PX_MAX = 240


def _label_column(labels: list[str]) -> tuple[int, int]:
    """The width in pixels of a chart's label column and the most characters a label keeps."""
    longest = max([len(label) for label in labels] + [8])
    width = min(LABEL_PX_MAX, longest * CHAR_PX + 16)
    return width, (width - 16) // CHAR_PX


def _cut(label: str, most: int) -> str:
    return label if len(label) <= most else label[: most - 1].rstrip() + "\u2026"


def _chart_open(kind: str, title: str, height: int, left: int, right: int) -> str:
    """The opening tag of a chart that takes the whole width of its box, whatever the window.

    Horizontal positions inside are percentages of the bar area, so bars grow with the window
    while the text keeps its size; the labels sit in the margin to the left of that area and the
    numbers in the margin to its right (drawn there because the chart does not clip).
    """
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" role="img" '
        f'aria-label="{escape(title)}" width="100%" height="{height}" '
        f'style="display: block; overflow: visible; margin: 0 {right}px 0 {left}px; '
        f'width: calc(100% - {left + right}px)">'
    )


def _percent(share: float) -> str:
    return f"{100 * share:.2f}%"


def funnel_svg(funnel: list[dict[str, Any]]) -> str:
    """A funnel: one centred bar per stage, as wide as its share of accounts, on an empty track
    as wide as the chart, so that a stage without accounts shows as an empty track."""
    bar, gap, right = 26, 8, 56
    left, _ = _label_column([row["title"] for row in funnel])
    peak = max([row["count"] for row in funnel] + [1])
    height = len(funnel) * (bar + gap) + gap
    parts = [_chart_open("funnel", "Accounts per stage", height, left, right)]
    for index, row in enumerate(funnel):
        y = gap + index * (bar + gap)
        baseline = f"{y + bar * 0.68:.0f}"
        parts.append(
            f'<text x="-8" y="{baseline}" text-anchor="end">{escape(row["title"])}</text>'
            f'<rect class="track" x="0" y="{y}" width="100%" height="{bar}" rx="4" '
            'fill="#f3f6f9" stroke="#dde3ea"/>'
        )
        if row["count"]:
            share = max(0.01, row["count"] / peak)  # a stage with few accounts stays visible
            parts.append(
                f'<rect class="bar" x="{_percent((1 - share) / 2)}" y="{y}" '
                f'width="{_percent(share)}" height="{bar}" rx="4" fill="#2e6da4"/>'
            )
        shade = "" if row["count"] else ' class="zero"'
        parts.append(f'<text x="100%" dx="8" y="{baseline}"{shade}>{row["count"]:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _limit(row: dict[str, Any]) -> int:
    """A row's stage limit in the stage's own days (0 outside the stages)."""
    return int(row.get("limit_business_days") or row.get("limit_days") or 0)


def days_svg(rows: list[dict[str, Any]], empty: str = "No key accounts yet.") -> str:
    """Days in stage per key account, coloured by status, with the stage's limit marked;
    ``empty`` says why there is no bar."""
    accounts = [r for r in rows if _limit(r)]
    bar, gap, right = 18, 6, 56
    left, most = _label_column([r["name"] for r in accounts])
    height = max(1, len(accounts)) * (bar + gap) + gap
    peak = max([max(r["days_in_stage"], _limit(r)) for r in accounts] + [1])
    parts = [_chart_open("days", "Days in stage", height, left, right)]
    for index, row in enumerate(accounts):
        y = gap + index * (bar + gap)
        baseline = f"{y + bar * 0.75:.0f}"
        limit_x = _percent(_limit(row) / peak)
        colour = COLOURS.get(row["status"], "#7f8c8d")
        unit = "business day" if row.get("limit_business_days") else "day"
        about = (
            f"{escape(row['name'])}: {plural(row['days_in_stage'], unit)} in "
            f"{escape(row['stage_title'])} (limit {plural(_limit(row), unit)}), "
            f"{row['status'].replace('_', ' ')}"
        )
        parts.append(
            f'<text x="-8" y="{baseline}" text-anchor="end">'
            f"{escape(_cut(row['name'], most))}<title>{about}</title></text>"
        )
        if row["days_in_stage"]:  # no bar at all for a day not yet over
            parts.append(
                f'<rect x="0" y="{y}" width="{_percent(row["days_in_stage"] / peak)}" '
                f'height="{bar}" rx="3" fill="{colour}"><title>{about}</title></rect>'
            )
        parts.append(
            f'<line x1="{limit_x}" x2="{limit_x}" y1="{y - 2}" y2="{y + bar + 2}" '
            'stroke="#222" stroke-width="2"/>'
            f'<text x="100%" dx="8" y="{baseline}">{row["days_in_stage"]}d</text>'
        )
    if not accounts:
        parts.append(f'<text x="0" y="20">{escape(empty)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _charted(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The accounts the days-in-stage chart draws (the whole board while it is on the page,
    otherwise the stuck and behind accounts the page lists), and what it says without any."""
    if not data["more"]["board"]["count"]:
        return list(data["board"]), "No key accounts yet."
    return [*data["stuck"], *data["behind"]], "No account is past its stage's limit."


def render_report(data: dict[str, Any]) -> str:
    """The page for the data of build_report()."""
    from kamflow.notify.templates import environment

    diagrams = [
        {
            "name": name,
            "title": get_workflow(name).spec.title,
            "svg": Markup(svg(get_workflow(name))),
            "mermaid": mermaid(get_workflow(name)),
        }
        for name in data["workflows"]
    ]
    template = environment().get_template("report.html")
    return template.render(
        **data,
        roles=defaults.ROLES,
        colours=COLOURS,
        funnel_svg=Markup(funnel_svg(data["funnel"])),
        days_svg=Markup(days_svg(*_charted(data))),
        diagrams=diagrams,
    )


def write_report(data: dict[str, Any], file: str) -> Path:
    """Write the page atomically (a half-written report is never left behind), readable by its
    owner only: it names people and their email addresses."""
    return write_private(file, [render_report(data)])
