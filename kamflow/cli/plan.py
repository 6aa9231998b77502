"""The account plan: strategy set, role assign/unassign, plan questions/answer/na,
action add/done/list, kpi add/record/review."""

from __future__ import annotations

import click

from kamflow.cli.base import (
    NegativeNumbers,
    act_on,
    app,
    emit_json,
    json_option,
    now,
    read,
    settings,
    table,
)


@app.group()
def strategy() -> None:
    """Record what the account plan wants, with whom, and why."""


@strategy.command("set")
@click.argument("name")
@click.option("--objective", required=True, help="What we are trying to do.")
@click.option("--who", required=True, help="With whom: stakeholders and buying centres.")
@click.option("--why", required=True, help="Why it matters to both sides.")
def strategy_set(name: str, objective: str, who: str, why: str) -> None:
    """Set the account's strategy."""
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


@plan.command("answer")
@click.argument("name")
@click.argument("question_id")
@click.argument("text")
def plan_answer(name: str, question_id: str, text: str) -> None:
    """Answer a planning question."""
    from kamflow.records.plan import answer_question

    account, answer = act_on(answer_question, name, question_id, text)
    click.echo(f"Answered {answer.question_id} for {account}.")


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


@action.command("add")
@click.argument("name")
@click.argument("title")
@click.option("--owner", required=True, metavar="EMAIL", help="Who does it.")
@click.option("--due", required=True, metavar="YYYY-MM-DD", help="When it is due.")
@click.option("--resources", default="", help="Resources it needs.")
def action_add(name: str, title: str, owner: str, due: str, resources: str) -> None:
    """Add an action to the plan."""
    from kamflow.records.plan import add_action

    account, added = act_on(add_action, name, title, owner=owner, due=due, resources=resources)
    click.echo(f"Added action #{added.id} to {account}: {added.title} (due {added.due}).")


@action.command("done")
@click.argument("name")
@click.argument("action_id")
def action_done(name: str, action_id: str) -> None:
    """Mark an action done."""
    from kamflow.records.plan import complete_action

    account, done = act_on(complete_action, name, action_id)
    click.echo(f"Action #{done.id} of {account} is done.")


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
    unit = f" {added.unit}" if added.unit else ""
    click.echo(f"KPI {added.name} added to {account} (target {format_number(added.target)}{unit}).")


@kpi.command("record", cls=NegativeNumbers)
@click.argument("name")
@click.argument("kpi_name", metavar="KPI")
@click.argument("value")
@click.option("--period", help="Period label (default: the current quarter, e.g. 2027-Q2).")
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
