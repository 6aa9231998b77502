"""The account plan: strategy set, role assign/unassign/list, plan questions/answer/na/export,
action add/done/list/reschedule/assign/cancel, kpi add/record/review/edit/remove."""

from __future__ import annotations

from typing import Any

import click

from kamflow.cli.base import (
    NegativeNumbers,
    act_on,
    app,
    emit_json,
    fail,
    json_option,
    now,
    output_option,
    read,
    reading,
    settings,
    table,
)


@app.group()
def strategy() -> None:
    """Record what the account plan wants, with whom, and why."""


@strategy.command("set")
@click.argument("name")
@click.option("--objective", help="What we are trying to do.")
@click.option("--who", help="With whom: stakeholders and buying centres.")
@click.option("--why", help="Why it matters to both sides.")
def strategy_set(name: str, objective: str | None, who: str | None, why: str | None) -> None:
    """Set the account's strategy, or the parts of it given (the others stay as they are)."""
    from kamflow.records.plan import set_strategy

    account, _ = act_on(set_strategy, name, objective=objective, who=who, why=why)
    click.echo(f"Strategy of {account} recorded.")


@app.group()
def role() -> None:
    """Assign the six account-team roles."""


@role.command("assign")
@click.argument("name")
@click.argument("role_name", metavar="ROLE")
@click.argument("email")
def role_assign(name: str, role_name: str, email: str) -> None:
    """Give ROLE on the account to a person (one person may hold several roles)."""
    from kamflow.records.plan import assign_role

    account, _ = act_on(assign_role, name, role_name, email)
    click.echo(f"{email} holds {role_name} on {account}.")


@role.command("unassign")
@click.argument("name")
@click.argument("role_name", metavar="ROLE")
@click.argument("email")
def role_unassign(name: str, role_name: str, email: str) -> None:
    """Take ROLE on the account away from a person."""
    from kamflow.records.plan import unassign_role

    account, _ = act_on(unassign_role, name, role_name, email)
    click.echo(f"{email} no longer holds {role_name} on {account}.")


@role.command("list")
@click.argument("name")
@json_option
def role_list(name: str, as_json: bool) -> None:
    """The six roles of the account team, who holds each, and the gaps."""
    from kamflow.records.plan import team_view

    team = read(team_view, name)
    if as_json:
        emit_json(team)
        return
    table(
        [(r["role"], ", ".join(r["holders"]) or "-- nobody --") for r in team["roles"]],
        ["role", "held by"],
    )
    gaps = team["gaps"]
    if gaps:
        click.echo(
            f"\n{len(gaps)} of {len(team['roles'])} roles held by nobody: {', '.join(gaps)} "
            "(kamflow role assign ACCOUNT ROLE EMAIL)"
        )
    else:
        click.echo("\nEvery role is held.")


@app.group()
def plan() -> None:
    """The planning questions and their answers."""


@plan.command("questions")
@click.argument("name")
@click.option("--open", "only_open", is_flag=True, help="Only questions without an answer.")
@json_option
def plan_questions(name: str, only_open: bool, as_json: bool) -> None:
    """The questions with ids, categories, required marks and answers."""
    from kamflow.reports.views import account_questions

    rows = read(account_questions, name, only_open=only_open)
    if as_json:
        emit_json(rows)
        return
    table(
        [(r["id"], "*" if r["required"] else "", r["status"], r["text"]) for r in rows],
        ["id", "req", "status", "question"],
    )
    click.echo(
        "\n* required. Answer: kamflow plan answer ACCOUNT ID TEXT; "
        "not applicable: kamflow plan na ACCOUNT ID --reason TEXT"
    )


@plan.command("export")
@click.argument("name")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["html", "md"]),
    default="html",
    show_default=True,
    help="A self-contained, printable HTML page, or Markdown.",
)
@output_option
def plan_export(name: str, format_: str, file: str | None) -> None:
    """The account plan as one document: account and owner, strategy, team and gaps, answers,
    actions, KPIs with their trends, the latest review and the stage history."""
    from kamflow.files import write_private
    from kamflow.reports.plan_document import build_plan_document, render

    config = settings()
    with reading() as session:
        data = build_plan_document(session, name, now=config.clock.now(), timezone=config.timezone)
    document = render(data, format_)
    if file is None:
        click.echo(document, nl=False)
        return
    path = write_private(file, [document])
    click.echo(f"Wrote the plan of {data['account']['name']} to {path}.")


@plan.command("answer")
@click.argument("name")
@click.argument("question_id")
@click.argument("text", required=False)
@click.option(
    "--file",
    "path",
    metavar="PATH",
    help="Read the answer from a UTF-8 text file (- for standard input), for a long one.",
)
def plan_answer(name: str, question_id: str, text: str | None, path: str | None) -> None:
    """Answer a planning question, with TEXT or with the text of --file (exactly one)."""
    from kamflow.records.plan import answer_question

    if (text is None) == (path is None):
        fail(["give the answer either as TEXT or with --file PATH, not both or neither"], 2)
    if path is not None:
        text = _read_text(path)
    assert text is not None
    account, answer = act_on(answer_question, name, question_id, text)
    click.echo(f"Answered {answer.question_id} for {account}.")


def _read_text(path: str) -> str:
    """The text of the file at ``path`` (standard input for ``-``): UTF-8, a byte-order mark
    dropped, line ends made ``\\n``; InvalidInput when it cannot be read."""
    from kamflow.errors import InvalidInput

    try:
        with click.open_file(path, "rb") as handle:
            data: bytes = handle.read()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from None
    where = "standard input" if path == "-" else path
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


@plan.command("na")
@click.argument("name")
@click.argument("question_id")
@click.option("--reason", required=True, help="Why the question does not apply.")
def plan_na(name: str, question_id: str, reason: str) -> None:
    """Mark a question not applicable to this account."""
    from kamflow.records.plan import mark_not_applicable

    account, answer = act_on(mark_not_applicable, name, question_id, reason=reason)
    click.echo(f"Marked {answer.question_id} not applicable for {account}.")


@app.group()
def action() -> None:
    """The actions of the account plan."""


def past_option(function: Any) -> Any:
    return click.option(
        "--past", is_flag=True, help="Take a due date that has gone by (it is overdue at once)."
    )(function)


@action.command("add")
@click.argument("name")
@click.argument("title")
@click.option("--owner", required=True, metavar="EMAIL", help="Who does it.")
@click.option(
    "--due",
    required=True,
    metavar="DATE",
    help="When it is due: YYYY-MM-DD, or +14d / +2w from today.",
)
@click.option("--resources", default="", help="Resources it needs.")
@past_option
def action_add(name: str, title: str, owner: str, due: str, resources: str, past: bool) -> None:
    """Add an action to the plan."""
    from kamflow.records.plan import add_action, is_past

    zone = settings().timezone
    account, added = act_on(
        add_action, name, title, owner=owner, due=due, resources=resources, past=past, timezone=zone
    )
    assert added.due is not None
    over = ", a date in the past" if is_past(added.due, now=now(), timezone=zone) else ""
    click.echo(f"Added action #{added.id} to {account}: {added.title} (due {added.due}{over}).")


@action.command("done")
@click.argument("name")
@click.argument("action_id")
def action_done(name: str, action_id: str) -> None:
    """Mark an action done."""
    from kamflow.records.plan import complete_action

    account, done = act_on(complete_action, name, action_id)
    click.echo(f"Action #{done.id} of {account} is done.")


@action.command("reschedule")
@click.argument("name")
@click.argument("action_id", metavar="ID")
@click.option(
    "--due", required=True, metavar="DATE", help="The new due date: YYYY-MM-DD, or +14d / +2w."
)
@past_option
def action_reschedule(name: str, action_id: str, due: str, past: bool) -> None:
    """Give an action a new due date; its reminders start again from it."""
    from kamflow.records.corrections import reschedule_action

    account, change = act_on(
        reschedule_action, name, action_id, due=due, past=past, timezone=settings().timezone
    )
    click.echo(f"{account}: {change.note}.")


@action.command("assign")
@click.argument("name")
@click.argument("action_id", metavar="ID")
@click.argument("email")
def action_assign(name: str, action_id: str, email: str) -> None:
    """Give an action to another person."""
    from kamflow.records.corrections import assign_action

    account, change = act_on(assign_action, name, action_id, email)
    click.echo(f"{account}: {change.note}.")


@action.command("cancel")
@click.argument("name")
@click.argument("action_id", metavar="ID")
@click.option("--reason", required=True, help="Why the action is dropped from the plan.")
def action_cancel(name: str, action_id: str, reason: str) -> None:
    """Cancel an open action: no more reminders, no longer counted for the plan."""
    from kamflow.records.corrections import cancel_action

    account, change = act_on(cancel_action, name, action_id, reason=reason)
    click.echo(f"{account}: {change.note}.")


@action.command("list")
@click.argument("name")
@json_option
def action_list(name: str, as_json: bool) -> None:
    """List the plan's actions."""
    from kamflow.reports.views import account_actions

    rows = read(account_actions, name, now=now(), timezone=settings().timezone)
    if as_json:
        emit_json(rows)
        return
    table(
        [
            (
                r["id"],
                r["title"],
                r["owner"],
                r["due"],
                r["status"] + (" (overdue)" if r["overdue"] else ""),
                r["resources"],
            )
            for r in rows
        ],
        ["id", "action", "owner", "due", "status", "resources"],
    )


@app.group()
def kpi() -> None:
    """KPIs: targets, recorded values, and the review's conclusion."""


@kpi.command("add")
@click.argument("name")
@click.argument("kpi_name", metavar="KPI")
@click.option("--target", required=True, metavar="NUMBER", help="The value to reach.")
@click.option("--unit", default="", help="Unit, e.g. %, EUR, points.")
@click.option("--lower-is-better", is_flag=True, help="Below the target is good (e.g. churn).")
def kpi_add(name: str, kpi_name: str, target: str, unit: str, lower_is_better: bool) -> None:
    """Define a KPI with its target."""
    from kamflow.records.plan import add_kpi
    from kamflow.text import format_number

    account, added = act_on(
        add_kpi, name, kpi_name, target=target, unit=unit, lower_is_better=lower_is_better
    )
    kpi = added.kpi
    unit = f" {kpi.unit}" if kpi.unit else ""
    target_text = f"target {format_number(kpi.target)}{unit}"
    if added.restored:
        click.echo(
            f"KPI {kpi.name} is back in the plan of {account} ({target_text}; "
            "its earlier values are kept)."
        )
    else:
        click.echo(f"KPI {kpi.name} added to {account} ({target_text}).")


@kpi.command("record", cls=NegativeNumbers)
@click.argument("name")
@click.argument("kpi_name", metavar="KPI")
@click.argument("value")
@click.option(
    "--period",
    help="YYYY, YYYY-H1, YYYY-Q2, YYYY-MM or YYYY-MM-DD (default: the current quarter).",
)
def kpi_record(name: str, kpi_name: str, value: str, period: str | None) -> None:
    """Record a KPI's value."""
    from kamflow.records.plan import record_kpi
    from kamflow.text import format_number

    account, recorded = act_on(record_kpi, name, kpi_name, value, period=period)
    click.echo(
        f"Recorded {kpi_name} = {format_number(recorded.value)} for {recorded.period} on {account}."
    )


@kpi.command("review")
@click.argument("name")
@click.option("--conclusion", required=True, help="What the review concluded.")
def kpi_review(name: str, conclusion: str) -> None:
    """Write the conclusion of this pass through Review."""
    from kamflow.records.plan import write_review

    account, _ = act_on(write_review, name, conclusion=conclusion)
    click.echo(f"Review of {account} written.")


@kpi.command("edit")
@click.argument("name")
@click.argument("kpi_name", metavar="KPI")
@click.option("--target", metavar="NUMBER", help="A new target.")
@click.option("--unit", help="A new unit ('' clears it).")
@click.option("--rename", metavar="NEW", help="A new name.")
@click.option(
    "--lower-is-better/--higher-is-better",
    "lower_is_better",
    default=None,
    help="Which way is good.",
)
def kpi_edit(
    name: str,
    kpi_name: str,
    target: str | None,
    unit: str | None,
    rename: str | None,
    lower_is_better: bool | None,
) -> None:
    """Correct a KPI: its target, unit, name or direction; its values stay."""
    from kamflow.records.corrections import edit_kpi

    account, change = act_on(
        edit_kpi,
        name,
        kpi_name,
        target=target,
        unit=unit,
        rename=rename,
        lower_is_better=lower_is_better,
    )
    click.echo(f"{account}: {change.note}.")


@kpi.command("remove")
@click.argument("name")
@click.argument("kpi_name", metavar="KPI")
@click.option("--reason", required=True, help="Why the KPI leaves the plan.")
def kpi_remove(name: str, kpi_name: str, reason: str) -> None:
    """Remove a KPI from the plan; its recorded values stay (kpi add brings it back)."""
    from kamflow.records.corrections import remove_kpi

    account, change = act_on(remove_kpi, name, kpi_name, reason=reason)
    click.echo(f"{account}: {change.note}.")
