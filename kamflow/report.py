"""`kamflow report --html FILE`: the portfolio on one self-contained page.

Everything is inline (CSS and SVG drawn here): no script, no font, no image to fetch, so the page
works offline and can be mailed around as one file.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from markupsafe import Markup
from sqlmodel import Session

from kamflow import defaults
from kamflow.diagram import mermaid, svg
from kamflow.errors import InvalidInput
from kamflow.portfolio import board, coverage, kpi_report, stage_counts
from kamflow.workflow import get_workflow, workflows_in_use

COLOURS = {"on_track": "#3a8f5c", "behind": "#d89a1c", "stuck": "#c0392b", "candidate": "#7f8c8d"}


def build_report(session: Session, *, now: datetime) -> dict[str, Any]:
    """Everything the page shows, as plain data (also what `report --json` prints)."""
    used = [definition.name for definition in workflows_in_use(session)] or [defaults.WORKFLOW]
    rows = list(board(session, now=now).rows)
    return {
        "generated_at": now.isoformat(),
        "board": rows,
        "funnel": _funnel(stage_counts(session), used),
        "coverage": list(coverage(session).rows),
        "kpis": list(kpi_report(session).rows),
        "stuck": [r for r in rows if r["status"] == "stuck"],
        "behind": [r for r in rows if r["status"] == "behind"],
        "workflows": used,
    }


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


def funnel_svg(funnel: list[dict[str, Any]]) -> str:
    """A funnel: one centred bar per stage, as wide as its share of accounts."""
    width, bar, gap, label_w = 640, 26, 8, 130
    peak = max([row["count"] for row in funnel] + [1])
    height = len(funnel) * (bar + gap) + gap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart funnel" role="img" '
        f'aria-label="Accounts per stage" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}">'
    ]
    room = width - label_w - 40
    for index, row in enumerate(funnel):
        y = gap + index * (bar + gap)
        w = max(2, round(room * row["count"] / peak)) if row["count"] else 2
        x = label_w + (room - w) // 2
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar * 0.68:.0f}" text-anchor="end">'
            f"{escape(row['title'])}</text>"
            f'<rect x="{x}" y="{y}" width="{w}" height="{bar}" rx="4" fill="#2e6da4"/>'
            f'<text x="{label_w + room + 8}" y="{y + bar * 0.68:.0f}">{row["count"]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def days_svg(rows: list[dict[str, Any]]) -> str:
    """Days in stage per key account, coloured by status, with the stage's limit marked."""
    accounts = [r for r in rows if r["limit_days"]]
    width, bar, gap, label_w = 640, 18, 6, 170
    height = max(1, len(accounts)) * (bar + gap) + gap + 16
    peak = max([max(r["days_in_stage"], r["limit_days"]) for r in accounts] + [1])
    room = width - label_w - 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart days" role="img" '
        f'aria-label="Days in stage" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}">'
    ]
    for index, row in enumerate(accounts):
        y = gap + index * (bar + gap)
        w = max(2, round(room * row["days_in_stage"] / peak))
        limit_x = label_w + round(room * row["limit_days"] / peak)
        colour = COLOURS.get(row["status"], "#7f8c8d")
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar * 0.75:.0f}" text-anchor="end">'
            f"{escape(row['name'])}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar}" rx="3" fill="{colour}">'
            f"<title>{escape(row['name'])}: {row['days_in_stage']} days in "
            f"{escape(row['stage_title'])} (limit {row['limit_days']})</title></rect>"
            f'<line x1="{limit_x}" x2="{limit_x}" y1="{y - 2}" y2="{y + bar + 2}" stroke="#222" '
            'stroke-width="2"/>'
            f'<text x="{label_w + room + 8}" y="{y + bar * 0.75:.0f}">'
            f"{row['days_in_stage']}d</text>"
        )
    if not accounts:
        parts.append(f'<text x="{label_w}" y="20">No key accounts yet.</text>')
    parts.append(
        f'<text x="{label_w}" y="{height - 4}" class="note">bar: days in the stage; '
        "black line: the stage's limit</text></svg>"
    )
    return "".join(parts)


def render_report(data: dict[str, Any]) -> str:
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
        days_svg=Markup(days_svg(data["board"])),
        diagrams=diagrams,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_report(data: dict[str, Any], file: str) -> Path:
    """Write the page atomically (a half-written report is never left behind)."""
    target = Path(file)
    page = render_report(data)
    try:
        folder = target.resolve().parent
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".report-", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(page)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; a report is not
        os.replace(temporary, target)
    except OSError as error:
        raise InvalidInput(f"cannot write {file}: {error.strerror}") from None
    return target
