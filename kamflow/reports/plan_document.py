"""`kamflow plan export`: the account plan a key account manager brings to a review, as one
self-contained HTML page (a printed page per section) or as Markdown.

The plan is gathered as `account show` gathers it (`views.plan_parts`), plus every recorded KPI
value (one query for all the account's KPIs) and the stage changes of its history: a handful of
queries for one account, whatever its size.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlmodel import Session

from kamflow import defaults
from kamflow.definitions.discovery import get_workflow
from kamflow.models import HistoryKind
from kamflow.records import history
from kamflow.records.plan import kpi_values
from kamflow.reports.views import UTC_ZONE, account_summary, plan_parts
from kamflow.text import format_number

#: The formats `plan export` writes.
FORMATS = ("html", "md")


def build_plan_document(
    session: Session, ref: str, *, now: datetime, timezone: ZoneInfo = UTC_ZONE
) -> dict[str, Any]:
    """Everything the plan document shows, as plain data: the account and its owner, the
    strategy, the team and its gaps, the answers by category (and the open questions), the
    actions (overdue judged by today in ``timezone``), the KPIs with every recorded value, the
    latest review and the stage history. NotFound for an unknown account."""
    account, owner, details = account_summary(session, ref, now=now)
    parts = plan_parts(session, account, now=now, timezone=timezone)
    values = kpi_values(session, account)
    # Each question once: the answered and not-applicable ones by category, the open ones in a
    # list of their own, the required first.
    categories: dict[str, dict[str, Any]] = {}
    for question in parts["questions"]:
        if question["status"] == "open":
            continue
        category = categories.setdefault(
            question["category"],
            {"id": question["category"], "title": question["category_title"], "questions": []},
        )
        category["questions"].append(question)
    moves = history.entries(session, account, kinds=(HistoryKind.CREATED, HistoryKind.TRANSITION))
    title = get_workflow(account.workflow).title_of
    return {
        "generated_at": now.isoformat(),
        "account": {**details, "owner_name": owner.name},
        "strategy": parts["strategy"],
        "team": {
            "roles": [{"role": role, "holders": held} for role, held in parts["roles"].items()],
            "gaps": [role for role in defaults.ROLES if not parts["roles"].get(role)],
        },
        "categories": list(categories.values()),
        "open_questions": sorted(
            (q for q in parts["questions"] if q["status"] == "open"),
            key=lambda q: not q["required"],
        ),
        "actions": parts["actions"],
        "kpis": [{**kpi, "values": values.get(kpi["name"], [])} for kpi in parts["kpis"]],
        "latest_review": parts["latest_review"],
        "stage_history": [
            {
                "at": move["at"],
                "actor": move["actor"],
                "transition": move["transition"] or move["kind"],
                "from": title(move["from"]) if move["from"] else "",
                "to": title(move["to"]) if move["to"] else "",
                "note": move["note"],
            }
            for move in moves
        ],
    }


# --- the trend of a KPI --------------------------------------------------------------------------

TREND_WIDTH, TREND_HEIGHT, TREND_PAD = 160, 44, 5


def trend_svg(kpi: dict[str, Any]) -> str:
    """A small inline SVG of a KPI's recorded values in their order, with its target as a dashed
    line; the last value marked green on target, red off it. Empty for a KPI without values."""
    points: list[float] = [value["value"] for value in kpi["values"]]
    if not points:
        return ""
    target: float = kpi["target"]
    low, high = min(*points, target), max(*points, target)
    span = (high - low) or 1.0
    inner_w, inner_h = TREND_WIDTH - 2 * TREND_PAD, TREND_HEIGHT - 2 * TREND_PAD

    def x(index: int) -> float:
        if len(points) == 1:
            return TREND_WIDTH / 2
        return TREND_PAD + inner_w * index / (len(points) - 1)

    def y(value: float) -> float:
        return TREND_PAD + inner_h * (high - value) / span

    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points))
    state = "on" if kpi["on_target"] else "off"
    unit = f" {kpi['unit']}" if kpi["unit"] else ""
    label = (
        f"{kpi['name']}: "
        + ", ".join(f"{format_number(v)}" for v in points)
        + f"{unit} (target {format_number(target)}{unit})"
    )
    last = len(points) - 1
    return (
        f'<svg class="trend" role="img" width="{TREND_WIDTH}" height="{TREND_HEIGHT}" '
        f'viewBox="0 0 {TREND_WIDTH} {TREND_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>"
        f'<line class="target" x1="{TREND_PAD}" x2="{TREND_WIDTH - TREND_PAD}" '
        f'y1="{y(target):.1f}" y2="{y(target):.1f}"/>'
        f'<polyline class="values" points="{line}"/>'
        f'<circle class="last {state}" cx="{x(last):.1f}" cy="{y(points[last]):.1f}" r="3"/>'
        "</svg>"
    )


# --- HTML ----------------------------------------------------------------------------------------


def render_html(data: dict[str, Any]) -> str:
    """The plan document as one self-contained page: inline CSS and SVG, no script, nothing to
    fetch; every text from the database escaped by the template."""
    from kamflow.notify.templates import environment

    kpis = [{**kpi, "trend": Markup(trend_svg(kpi))} for kpi in data["kpis"]]
    template = environment().get_template("plan.html")
    return template.render(**{**data, "kpis": kpis})


# --- Markdown ------------------------------------------------------------------------------------

#: Characters that mean something to Markdown (CommonMark and GitHub's tables) anywhere in a line.
_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&])")
#: What means something only at the start of a line: a list item, a heading's underline, a rule.
_LINE_START = re.compile(r"^(\s*)([-+=]|\d+[.)])", re.MULTILINE)


def md(text: str) -> str:
    """User text as Markdown that shows it as written: every character Markdown would read as
    markup is escaped with a backslash."""
    return _LINE_START.sub(
        lambda m: m.group(1) + _escape_last(m.group(2)), _SPECIAL.sub(r"\\\1", text)
    )


def _escape_last(marker: str) -> str:
    return marker[:-1] + "\\" + marker[-1]


def md_cell(text: str | None) -> str:
    """User text in a table cell: escaped, its line breaks kept as ``<br>`` (a table row is one
    line)."""
    return "<br>".join(md(line) for line in (text or "").splitlines()) or " "


def md_block(text: str, indent: str = "") -> str:
    """User text over several lines, each after ``indent``, its line breaks kept."""
    lines = [md(line) for line in text.splitlines()] or [""]
    return (" \\\n" + indent).join(lines)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _when(moment: str) -> str:
    return moment[:16].replace("T", " ")


def _target(kpi: dict[str, Any]) -> str:
    unit = f" {kpi['unit']}" if kpi["unit"] else ""
    return ("≤ " if kpi["lower_is_better"] else "≥ ") + format_number(kpi["target"]) + unit


def kpi_state(kpi: dict[str, Any]) -> str:
    """A KPI's state in words: on target, off target, or no value yet."""
    if kpi["on_target"] is None:
        return "no value yet"
    return "on target" if kpi["on_target"] else "OFF TARGET"


def render_markdown(data: dict[str, Any]) -> str:
    """The plan document as Markdown, one heading per section."""
    a = data["account"]
    owner = md(a["owner"]) + (f" ({md(a['owner_name'])})" if a["owner_name"] else "")
    if a.get("limit_business_days"):
        limit = f" of {a['limit_business_days']} business days"
    else:
        limit = f" of {a['limit_days']}" if a["limit_days"] else ""
    out = [
        f"# Account plan: {md(a['name'])}",
        "",
        f"- **Owner:** {owner}",
        f"- **Stage:** {md(a['stage_title'])}, day {a['days_in_stage']}{limit} "
        f"({a['status'].replace('_', ' ')})",
        f"- **Workflow:** {md(a['workflow'])}; {a['kind']} "
        + ("candidate" if a["status"] == "candidate" else "key account"),
        f"- **Generated:** {_when(data['generated_at'])} UTC by kamflow",
        "",
        "## Strategy",
        "",
    ]
    strategy = data["strategy"]
    if strategy:
        for label, key in (("What", "objective"), ("With whom", "who"), ("Why", "why")):
            out.append(f"- **{label}:** {md_block(strategy[key], '  ') or '(not set)'}")
    else:
        out.append("No strategy yet.")
    out += ["", "## Account team", ""]
    out += _table(
        ["Role", "Held by"],
        [
            [r["role"], ", ".join(map(md, r["holders"])) or "**gap: nobody**"]
            for r in data["team"]["roles"]
        ],
    )
    gaps = data["team"]["gaps"]
    out += [f"Held by nobody: {', '.join(gaps)}." if gaps else "Every role is held.", ""]
    out += ["## Answers", ""]
    if not data["categories"]:
        out += ["No question answered yet.", ""]
    for category in data["categories"]:
        out += [f"### {md(category['title'])}", ""]
        for q in category["questions"]:
            mark = " **(required)**" if q["required"] else ""
            said = md_block(q["answer"], "  ")
            if q["status"] == "n/a":
                said = "*Not applicable:* " + said
            out.append(f"- **{md(q['text'])}**{mark} \\\n  {said}")
        out.append("")
    out += ["### Open questions", ""]
    open_questions = data["open_questions"]
    if open_questions:
        required = sum(q["required"] for q in open_questions)
        out += [
            f"{len(open_questions)} without an answer, {required} of them required "
            "(answer with `kamflow plan answer ACCOUNT ID TEXT`):",
            "",
        ]
        out += [
            f"- {md(q['text'])} `{q['id']}`" + (" **(required)**" if q["required"] else "")
            for q in open_questions
        ]
        out.append("")
    else:
        out += ["Every question is answered or marked not applicable.", ""]
    out += ["## Actions", ""]
    if data["actions"]:
        out += _table(
            ["#", "Action", "Owner", "Due", "Status", "Resources"],
            [
                [
                    str(x["id"]),
                    md_cell(x["title"]),
                    md_cell(x["owner"]),
                    x["due"] or "",
                    x["status"] + (" **OVERDUE**" if x["overdue"] else ""),
                    md_cell(x["resources"]),
                ]
                for x in data["actions"]
            ],
        )
    else:
        out += ["No actions yet.", ""]
    out += ["## KPIs", ""]
    if data["kpis"]:
        out += _table(
            ["KPI", "Target", "Latest", "State", "Recorded values"],
            [
                [
                    md_cell(k["name"]),
                    md_cell(_target(k)),
                    "-"
                    if k["latest"] is None
                    else f"{format_number(k['latest'])} ({md(k['period'])})",
                    kpi_state(k),
                    "; ".join(
                        f"{md(v['period'])}: {format_number(v['value'])}" for v in k["values"]
                    )
                    or "-",
                ]
                for k in data["kpis"]
            ],
        )
    else:
        out += ["No KPIs yet.", ""]
    out += ["## Latest review", ""]
    review = data["latest_review"]
    if review:
        out += [
            "> " + md_block(review["conclusion"], "> "),
            "",
            f"Written {_when(review['written_at'])} UTC by {md(review['written_by'])}.",
            "",
        ]
    else:
        out += ["No review written yet.", ""]
    out += ["## Stage history", ""]
    out += _table(
        ["When (UTC)", "Move", "From", "To", "By", "Note"],
        [
            [
                _when(m["at"]),
                md_cell(m["transition"]),
                md_cell(m["from"]),
                md_cell(m["to"]),
                md_cell(m["actor"]),
                md_cell(m["note"]),
            ]
            for m in data["stage_history"]
        ],
    )
    return "\n".join(out).rstrip("\n") + "\n"


def render(data: dict[str, Any], format_: str) -> str:
    """The plan document in ``format_`` (one of FORMATS)."""
    return render_html(data) if format_ == "html" else render_markdown(data)
