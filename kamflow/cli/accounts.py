"""account ...: add, score, promote, swap, rank, set-workflow, rename, reassign, import, export,
list, show."""

from __future__ import annotations

import sys
from typing import Any

import click

from kamflow import defaults
from kamflow.cli.base import (
    act,
    app,
    days_cell,
    emit_json,
    json_option,
    now,
    override_options,
    print_warnings,
    reading,
    settings,
    show_outcome,
    show_rows,
    viewing,
)


@app.group()
def account() -> None:
    """Key accounts and candidates: add, score, promote, swap, list, show, rename, reassign,
    import, export."""


@account.command("add")
@click.argument("name")
@click.option("--owner", required=True, metavar="EMAIL", help="The key account manager.")
@click.option(
    "--workflow", default=defaults.WORKFLOW, show_default=True, help="Workflow to follow."
)
@click.option(
    "--kind",
    type=click.Choice(defaults.ACCOUNT_KINDS),
    default="existing",
    show_default=True,
    help="An existing key account or a new one with potential.",
)
@click.option("--candidate", is_flag=True, help="A candidate to score before promoting it.")
@override_options
def account_add(
    name: str, owner: str, workflow: str, kind: str, candidate: bool, override: str | None
) -> None:
    """Add a key account at its workflow's first stage (within the cap), or a candidate."""
    from kamflow.engine import create_account

    added, verdicts = act(
        create_account,
        name,
        owner=owner,
        workflow=workflow,
        kind=kind,
        candidate=candidate,
        override=override,
    )
    what = "candidate" if candidate else "key account"
    click.echo(
        f"Added {added.name} ({added.kind} {what}, workflow {added.workflow}) at {added.stage}."
    )
    print_warnings(verdicts)


@account.command("score")
@click.argument("name")
@click.option("--revenue", required=True, metavar="1-5", help="Current revenue.")
@click.option("--growth", required=True, metavar="1-5", help="Growth potential.")
@click.option("--renewal", required=True, metavar="1-5", help="Renewal likelihood.")
@click.option("--win-now", "win_now", required=True, metavar="1-5", help="Win now, grow later.")
@click.option(
    "--effort", required=True, metavar="1-5", help="Effort to move forward (more is worse)."
)
@click.option("--relationship", required=True, metavar="1-5", help="Relationship strength.")
@click.option("--fit", required=True, metavar="1-5", help="Fit of offer, culture and industry.")
@click.option("--logo", required=True, metavar="1-5", help="Logo appeal.")
def account_score(name: str, **factors: str) -> None:
    """Score an account on the eight selection factors (0-100; earlier scores are kept)."""
    from kamflow.records.scores import score_against_threshold

    scored = act(score_against_threshold, name, factors)
    verdict = "reaches" if scored.reaches_threshold else "is below"
    click.echo(
        f"{scored.account} scored {scored.total:g}: {verdict} the promotion threshold "
        f"of {scored.threshold:g}."
    )


@account.command("promote")
@click.argument("name")
@override_options
@click.option("--dry-run", is_flag=True, help="Only check the guards; change nothing.")
@json_option
def account_promote(name: str, override: str | None, dry_run: bool, as_json: bool) -> None:
    """Make a candidate a key account: its score must reach the threshold, within the cap."""
    from kamflow.engine import promote

    outcome = act(promote, name, override=override, dry_run=dry_run)
    show_outcome(outcome, as_json)
    print_warnings(outcome.verdicts)


@account.command("swap")
@click.argument("out_name", metavar="OUT")
@click.argument("in_name", metavar="IN")
def account_swap(out_name: str, in_name: str) -> None:
    """Retire key account OUT and promote candidate IN, in one transaction (one in, one out)."""
    from kamflow.engine import swap

    retired, promoted = act(swap, out_name, in_name)
    click.echo(f"{retired.account} retired; {promoted.account} promoted to {promoted.to_stage}.")
    print_warnings(promoted.verdicts)


@account.command("rank")
@json_option
def account_rank(as_json: bool) -> None:
    """Candidates and key accounts by their latest score."""
    from kamflow.reports.portfolio import rank
    from kamflow.text import score_text

    with reading() as session:
        listing = rank(session, now=now(), calendar=settings().calendar)
        width = listing.widths
        show_rows(
            listing.rows,
            as_json,
            [
                ("#", width["rank"]),
                ("account", width["name"]),
                ("kind", len("key account")),
                ("stage", width["stage_title"]),
                ("score", width["score"]),
                ("above threshold", len("yes")),
                ("owner", width["owner"]),
            ],
            lambda r: (
                r["rank"],
                r["name"],
                "key account" if r["key_account"] else "candidate",
                r["stage_title"],
                score_text(r["score"]),
                "yes" if r["above_threshold"] else "",
                r["owner"],
            ),
        )


@account.command("set-workflow")
@click.argument("name")
@click.argument("workflow_name", metavar="WORKFLOW")
def account_set_workflow(name: str, workflow_name: str) -> None:
    """Move an account to another workflow (e.g. kam-lite), keeping its stage, data and history."""
    from kamflow.records.accounts import set_workflow

    moved = act(set_workflow, name, workflow_name)
    click.echo(f"{moved.name} now follows workflow {moved.workflow} (still in {moved.stage}).")


@account.command("rename")
@click.argument("name")
@click.argument("new_name", metavar="NEW_NAME")
def account_rename(name: str, new_name: str) -> None:
    """Correct an account's name (the owner or a leader; names are unique in any case)."""
    from kamflow.records.accounts import rename

    old, new = act(rename, name, new_name)
    click.echo(f"{old} is now called {new}.")


@account.command("reassign")
@click.argument("name")
@click.argument("email")
@override_options
def account_reassign(name: str, email: str, override: str | None) -> None:
    """Pass an account to another owner (the owner or a leader), within the new owner's
    key-account cap."""
    from kamflow.records.accounts import reassign

    moved = act(reassign, name, email, override=override)
    click.echo(f"{moved.account} passed from {moved.previous} to {moved.owner}.")
    print_warnings(moved.verdicts)


@account.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--candidate",
    is_flag=True,
    help="Import every row as a candidate (a stage given must be the candidate place).",
)
@override_options
def account_import(file: str, candidate: bool, override: str | None) -> None:
    """Import accounts from CSV (name,owner,kind; optionally the eight factor scores and stage).

    Every row is checked first, the cap included; one bad row imports nothing. An account with a
    stage goes to that place of its workflow (a candidate, a stage, or an exit such as retired).
    """
    from kamflow.transfer import import_accounts, read_rows

    rows = read_rows(file)
    options: dict[str, Any] = {"candidate": candidate, "override": override, "source": file}
    # click's progress bar on a pipe prints only its label: show it on a terminal only.
    if sys.stdout.isatty() and len(rows) > 50:
        with click.progressbar(length=len(rows), label="Importing") as bar:
            result = act(import_accounts, rows, progress=bar.update, **options)
    else:
        result = act(import_accounts, rows, **options)
    from kamflow.text import plural

    kinds = [
        plural(result.candidates, "candidate") if result.candidates else "",
        plural(result.key_accounts, "key account") if result.key_accounts else "",
        f"{result.closed} closed" if result.closed else "",
        f"{result.scored} scored" if result.scored else "",
    ]
    details = ", ".join(kind for kind in kinds if kind)
    click.echo(
        f"Imported {plural(result.imported, 'account')} from {file}"
        + (f" ({details})." if details else ".")
    )
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)


@account.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def account_export(file: str | None) -> None:
    """Write every account as CSV (the import's columns, plus stage and latest score)."""
    from kamflow.transfer import export_accounts, write_export

    with reading() as session:
        chunks = export_accounts(session)
        if file is None:
            for chunk in chunks:
                click.echo(chunk, nl=False)
            return
        written = write_export(chunks, file)
    from kamflow.text import plural

    click.echo(f"Wrote {plural(written, 'account')} to {file}.")


@account.command("list")
@click.option("--stage", help="Only accounts in this stage.")
@click.option("--owner", metavar="EMAIL", help="Only the accounts this person owns.")
@click.option("--mine", is_flag=True, help="Only the accounts you own (see --as).")
@json_option
def account_list(stage: str | None, owner: str | None, mine: bool, as_json: bool) -> None:
    """List key accounts with their stage and days in it."""
    from kamflow.reports.portfolio import list_accounts

    if mine and owner is not None:
        raise click.UsageError("--mine and --owner cannot go together")
    with reading() as session:
        if mine:
            from kamflow.records.identity import viewer

            owner = viewer(session, settings().actor)
        listing = list_accounts(
            session, stage=stage, owner=owner, now=now(), calendar=settings().calendar
        )
        width = listing.widths
        show_rows(
            listing.rows,
            as_json,
            [
                ("id", width["id"]),
                ("account", width["name"]),
                ("stage", width["stage_title"]),
                ("days", width["days"]),
                ("status", width["status"]),
                ("owner", width["owner"]),
                ("workflow", width["workflow"]),
            ],
            lambda r: (
                r["id"],
                r["name"],
                r["stage_title"],
                days_cell(r),
                r["status"],
                r["owner"],
                r["workflow"],
            ),
        )


@account.command("show")
@click.argument("name")
@json_option
def account_show(name: str, as_json: bool) -> None:
    """Show everything about one account."""
    from kamflow.reports.views import account_details

    details = viewing(
        account_details, name, timezone=settings().timezone, calendar=settings().calendar
    )
    if as_json:
        emit_json(details)
        return
    from kamflow.reports.render import render_account

    click.echo(render_account(details))
