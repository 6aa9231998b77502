"""Plain-text renderings of kamflow's reports (the CLI prints them; JSON needs none of this)."""

from __future__ import annotations

from typing import Any

from kamflow.definitions.workflow import Workflow
from kamflow.text import format_number, plural


def _mark(ok: bool) -> str:
    return "[ok]     " if ok else "[missing]"


def render_moves(moves: list[dict[str, Any]]) -> list[str]:
    """The moves of a ``why`` report as lines: each move's target, then each verdict marked ``[ok]``
    or ``[missing]`` with its sentence; the default move is named when there are several."""
    lines = []
    for move in moves:
        default = " (default)" if move["default"] and len(moves) > 1 else ""
        lines.append(f"To {move['transition']} to {move['to_title']}{default}:")
        if not move["verdicts"]:
            lines.append("  nothing to check")
        for verdict in move["verdicts"]:
            lines.append(f"  {_mark(verdict['ok'])} {verdict['message']}")
    return lines


def _of_limit(row: dict[str, Any]) -> str:
    """`` of 14`` or `` of 5 business days`` after a stage's day count (nothing outside the
    stages)."""
    if row.get("limit_business_days"):
        return f" of {plural(row['limit_business_days'], 'business day')}"
    return f" of {row['limit_days']}" if row.get("limit_days") else ""


def render_why(report: dict[str, Any]) -> str:
    """A report of `engine.why` as text: where the account stands and for how long, then what each
    move from its stage still needs."""
    limit = _of_limit(report)
    lines = [
        f"{report['account']} is in {report['stage_title']} "
        f"(day {report['days_in_stage']}{limit}), owned by {report['owner']}."
    ]
    if not report["moves"]:
        lines.append("It no longer moves.")
    lines += render_moves(report["moves"])
    return "\n".join(lines)


def render_account(d: dict[str, Any]) -> str:
    """The details of one account (as `account_details` gathers them) as the text ``account show``
    prints: its kind, owner, stage, snooze and latest score, strategy, team, plan, actions, KPIs,
    latest review, what each move from its stage still needs, and its warnings."""
    limit = _of_limit(d)
    what = "candidate" if d["status"] == "candidate" else "key account"
    lines = [
        f"{d['name']}  (#{d['id']}, {d['kind']} {what}, workflow {d['workflow']})",
        f"  owner:    {d['owner']}{' (deactivated)' if d.get('owner_active') is False else ''}",
        f"  stage:    {d['stage_title']}, day {d['days_in_stage']}{limit} ({d['status']})",
    ]
    snooze = d.get("snooze")
    if snooze:
        lines.append(
            f"  snoozed:  until {snooze['until'][:10]} by {snooze['by']}: {snooze['reason']}"
        )
    if d.get("scores"):
        latest, more = d["scores"][0], len(d["scores"]) - 1
        earlier = f"; {more} earlier" if more else ""
        lines.append(
            f"  score:    {latest['total']:g} (scored {latest['scored_at'][:10]}{earlier})"
        )
    lines += ["", "Strategy:"]
    strategy = d["strategy"]
    if strategy:
        lines += [
            f"  what: {strategy['objective']}",
            f"  who:  {strategy['who']}",
            f"  why:  {strategy['why']}",
        ]
    else:
        lines.append("  (not set)")
    lines.append("Account team:")
    for role, holders in d["roles"].items():
        lines.append(f"  {role:<18} {', '.join(holders) if holders else '-- nobody --'}")
    p = d["plan"]
    lines += [
        "Plan:",
        f"  {p['answered']} of {p['questions']} questions answered, {p['not_applicable']} not "
        f"applicable; {p['required_answered']} of {p['required']} required answered",
        "Actions:",
    ]
    if not d["actions"]:
        lines.append("  (none)")
    for a in d["actions"]:
        overdue = " OVERDUE" if a["overdue"] else ""
        lines.append(
            f"  #{a['id']} [{a['status']}{overdue}] {a['title']} -- {a['owner']}, due {a['due']}"
        )
    lines.append("KPIs:")
    if not d["kpis"]:
        lines.append("  (none)")
    for k in d["kpis"]:
        unit = f" {k['unit']}" if k["unit"] else ""
        latest = (
            "no value yet"
            if k["latest"] is None
            else f"latest {format_number(k['latest'])}{unit} ({k['period']})"
        )
        state = (
            "" if k["on_target"] is None else (" on target" if k["on_target"] else " OFF TARGET")
        )
        lines.append(f"  {k['name']}: target {format_number(k['target'])}{unit}, {latest}{state}")
    if d["latest_review"]:
        lines.append(f"Latest review: {d['latest_review']['conclusion']}")
    lines.append("")
    lines += render_moves(d["next"]) or ["It no longer moves."]
    if d.get("warnings"):
        lines.append("")
        lines += [f"Warning: {warning}" for warning in d["warnings"]]
    return "\n".join(lines)


def history_rows(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """History entries (as `history.entries` gives them) as table rows: when (to the minute), who
    (and who really acted, on their behalf), what happened, and the note."""
    out = []
    for row in rows:
        when = row["at"][:16].replace("T", " ")
        if row["kind"] == "transition":
            what = f"{row['transition']}: {row['from']} -> {row['to']}"
        elif row["kind"] == "created":
            what = f"created at {row['to']}"
        else:
            what = row["kind"]
        who = row["actor"]
        if row.get("acted_by"):
            who += f" (by {row['acted_by']})"
        out.append((when, who, what, row["note"]))
    return out


def render_workflow(definition: Workflow) -> str:
    """A workflow as text: its stages and their limits, the places before the cycle, the exits, each
    transition with its guards and who may make it, and how many questions it has and requires."""
    spec = definition.spec
    lines = [
        f"{spec.name}: {spec.title}",
        f"  file: {definition.path}",
        "",
        "Stages (limit in days, bd: business days):",
    ]
    for stage in spec.stages:
        initial = "  (start)" if stage.name == definition.initial else ""
        limit = f"{stage.limit} bd" if stage.business_days else f"{stage.limit}   "
        lines.append(f"  {stage.name:<14} {limit:>7}  {stage.title}{initial}")
    if spec.intake:
        lines.append("Before the cycle: " + ", ".join(p.name for p in spec.intake))
    if spec.exits:
        lines.append("Exits: " + ", ".join(e.name for e in spec.exits))
    lines.append("Transitions:")
    for t in spec.transitions:
        guards = ", ".join(
            g.name + (f"({', '.join(f'{k}={v}' for k, v in g.params.items())})" if g.params else "")
            for g in t.guards
        )
        extra = []
        if t.allowed:
            extra.append("only " + "/".join(t.allowed))
        if t.reason_required:
            extra.append("needs a reason")
        lines.append(
            f"  {t.name:<11} {','.join(t.source):<12} -> {t.dest:<13}"
            + (f" guards: {guards}" if guards else "")
            + (f"  [{'; '.join(extra)}]" if extra else "")
        )
    lines.append(
        f"Questions: {len(definition.questions.questions)} in "
        f"{plural(len(definition.questions.categories), 'category', 'categories')} "
        f"({len(definition.required_questions)} required in this workflow)"
    )
    return "\n".join(lines)


def render_status(report: dict[str, Any]) -> str:
    """The report of `kamflow.steps.views.status` as text: the last run of the queuing steps and of
    delivery, the outbox, and the accounts behind and stuck."""

    def beat(name: str, label: str) -> str:
        """One step's last run: when (UTC), ok or PROBLEM with what stopped it; or never."""
        found = report.get(name)
        if not found:
            return f"{label}: never"
        state = "ok" if found["ok"] else "PROBLEM"
        detail = found["detail"]
        extra = (
            f" ({detail['stopped']})" if isinstance(detail, dict) and detail.get("stopped") else ""
        )
        return f"{label}: {found['at'][:19].replace('T', ' ')} UTC, {state}{extra}"

    box = report["outbox"]
    accounts = report["accounts"]
    lines = [
        beat("last_tick", "Last tick"),
        beat("last_delivery", "Last delivery"),
        f"Outbox: {box['pending']} pending ({report['due_now']} due now), {box['sent']} sent, "
        f"{box['dead']} dead, {box.get('obsolete', 0)} obsolete",
        f"Accounts: {accounts['behind']} behind, {accounts['stuck']} stuck"
        + (f" ({accounts['snoozed']} of them snoozed)" if accounts["snoozed"] else ""),
    ]
    lines += [deactivated_warning(left) for left in report.get("deactivated_owners", [])]
    return "\n".join(lines)


def deactivated_warning(left: dict[str, Any]) -> str:
    """A warning that a deactivated person (as `people.unattended` lists them) still owns
    accounts or open actions, and the command that passes them on."""
    owned = []
    if left["accounts"]:
        owned.append(plural(left["accounts"], "account"))
    if left["open_actions"]:
        owned.append(plural(left["open_actions"], "open action"))
    return (
        f"Warning: {left['email']} is deactivated but still owns {' and '.join(owned)}: "
        f"kamflow person deactivate {left['email']} --reassign-to EMAIL"
    )
