"""Moves between stages and their record: advance, disqualify, retire, reinstate, why, history."""

from __future__ import annotations

import click

from kamflow.cli.base import (
    act,
    app,
    emit_json,
    json_option,
    print_warnings,
    read,
    reading,
    settings,
    show_outcome,
    table,
    viewing,
)


@app.command()
@click.argument("name")
@click.option("--to", "to", metavar="STAGE", help="The stage to move to (default: the next one).")
@click.option("--note", default="", help="A note for the history.")
@click.option("--dry-run", is_flag=True, help="Only check the guards; change nothing.")
@json_option
def advance(name: str, to: str | None, note: str, dry_run: bool, as_json: bool) -> None:
    """Move an account to its next stage if every guard allows it.

    From Review the next stage is Action plan (adjust); --to strategy starts over (replan).
    """
    from kamflow.engine import advance as advance_account

    show_outcome(act(advance_account, name, to=to, note=note, dry_run=dry_run), as_json)


@app.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why the account is not a key account.")
@click.option("--dry-run", is_flag=True, help="Only check; change nothing.")
def disqualify(name: str, reason: str, dry_run: bool) -> None:
    """Take an account out of the programme: it is not a key account."""
    from kamflow.engine import close

    show_outcome(act(close, name, "disqualify", reason=reason, dry_run=dry_run), False)


@app.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why the account is retired.")
@click.option("--dry-run", is_flag=True, help="Only check; change nothing.")
def retire(name: str, reason: str, dry_run: bool) -> None:
    """Retire a key account."""
    from kamflow.engine import close

    show_outcome(act(close, name, "retire", reason=reason, dry_run=dry_run), False)


@app.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why the account comes back.")
@click.option(
    "--override", is_flag=True, help="Go over the key-account cap (leaders only), for the reason."
)
@click.option("--dry-run", is_flag=True, help="Only check; change nothing.")
@json_option
def reinstate(name: str, reason: str, override: bool, dry_run: bool, as_json: bool) -> None:
    """Bring a disqualified or retired account back to Strategy (a leader, within the owner's
    key-account cap), as the workflow's reinstate transition says."""
    from kamflow.engine import reinstate as reinstate_account

    outcome = act(reinstate_account, name, reason=reason, override=override, dry_run=dry_run)
    show_outcome(outcome, as_json)
    print_warnings(outcome.verdicts)


@app.command()
@click.argument("name")
@json_option
def why(name: str, as_json: bool) -> None:
    """What the next transition(s) still need."""
    from kamflow.engine import why as why_account
    from kamflow.reports.render import render_why

    report = viewing(why_account, name, calendar=settings().calendar)
    if as_json:
        emit_json(report)
    else:
        click.echo(render_why(report))


@app.command()
@click.argument("name")
@json_option
def history(name: str, as_json: bool) -> None:
    """Every change to an account, oldest first; `history verify` checks the whole history.

    `kamflow history verify` walks the history's hash chain and fails (exit code 4) at the first
    row that was changed or follows a removed one. An account named "verify" is shown by its id.
    """
    if name == "verify":
        _verify_history(as_json)
        return
    from kamflow.reports.views import account_history

    rows = read(account_history, name)
    if as_json:
        emit_json(rows)
        return
    from kamflow.reports.render import history_rows

    table(history_rows(rows), ["when", "who", "what", "note"])


def _verify_history(as_json: bool) -> None:
    from kamflow.records.chain import broken
    from kamflow.records.history import verify
    from kamflow.text import plural

    with reading() as session:
        report = verify(session.connection())
    if as_json:
        emit_json(report.as_dict())
    if not report.intact:
        raise broken(report)
    if not as_json:
        click.echo(f"history intact: {plural(report.rows, 'row')}")
