"""The portfolio views: portfolio (the board), coverage, kpis, report (the HTML page), calendar
(the deadlines as an iCalendar file)."""

from __future__ import annotations

from typing import Any

import click

from kamflow import defaults
from kamflow.cli.base import (
    app,
    days_cell,
    emit_json,
    json_option,
    now,
    output_option,
    reading,
    settings,
    show_rows,
)

#: What coverage prints where no one holds a role.
GAP = "-- GAP --"


@app.command()
@json_option
def portfolio(as_json: bool) -> None:
    """The board: candidates and key accounts by stage, with owner, days, status and score."""
    from kamflow.reports.portfolio import board
    from kamflow.text import score_text

    with reading() as session:
        listing = board(session, now=now(), calendar=settings().calendar)
        width = listing.widths
        show_rows(
            listing.rows,
            as_json,
            [
                ("stage", width["stage_title"]),
                ("account", width["name"]),
                ("owner", width["owner"]),
                ("days", width["days"]),
                ("status", width["status"]),
                ("score", width["score"]),
                ("workflow", width["workflow"]),
            ],
            lambda r: (
                r["stage_title"],
                r["name"],
                r["owner"],
                days_cell(r),
                r["status"],
                score_text(r["score"]),
                r["workflow"],
            ),
        )


@app.command()
@json_option
def coverage(as_json: bool) -> None:
    """Key accounts x the six account-team roles: who holds each, and the gaps."""
    from kamflow.reports.portfolio import coverage as role_coverage
    from kamflow.text import plural

    seen = {"accounts": 0, "gaps": 0}

    def cells(row: dict[str, Any]) -> tuple[str, ...]:
        seen["accounts"] += 1
        seen["gaps"] += len(row["gaps"])
        return (row["account"], *(", ".join(row["roles"][r]) or GAP for r in defaults.ROLES))

    with reading() as session:
        listing = role_coverage(session)
        width = listing.widths
        show_rows(
            listing.rows,
            as_json,
            [
                ("account", width["account"]),
                *((role, max(width.get(role, 0), len(GAP))) for role in defaults.ROLES),
            ],
            cells,
        )
    if not as_json:
        gaps, accounts = seen["gaps"], seen["accounts"]
        click.echo(f"\n{plural(gaps, 'gap')} in {plural(accounts, 'key account')}.")


@app.command()
@json_option
def kpis(as_json: bool) -> None:
    """Every key account's KPIs: target against the latest value, off target marked."""
    from kamflow.reports.portfolio import kpi_report
    from kamflow.text import format_number

    with reading() as session:
        listing = kpi_report(session)
        width = listing.widths
        show_rows(
            listing.rows,
            as_json,
            [
                ("account", width["account"]),
                ("kpi", width["name"]),
                ("target", len("<= ") + width["target"]),
                ("latest", max(width["latest"], len("-"))),
                ("unit", width["unit"]),
                ("period", width["period"]),
                ("state", len("OFF TARGET")),
            ],
            lambda r: (
                r["account"],
                r["name"],
                ("<= " if r["lower_is_better"] else ">= ") + format_number(r["target"]),
                "-" if r["latest"] is None else format_number(r["latest"]),
                r["unit"],
                r["period"] or "",
                "OFF TARGET"
                if r["off_target"]
                else ("on target" if r["on_target"] else "no value"),
            ),
        )


@app.command()
@click.option(
    "--html",
    "html_file",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Where to write the report.",
)
@json_option
def report(html_file: str, as_json: bool) -> None:
    """Write the portfolio as one self-contained HTML page (board, charts, workflow, coverage)."""
    from kamflow.reports.report import build_report, write_report

    with reading() as session:
        data = build_report(session, now=now(), calendar=settings().calendar)
    path = write_report(data, html_file)
    if as_json:
        emit_json({"file": str(path), **data})
    else:
        from kamflow.text import plural

        accounts = plural(data["summary"]["accounts"], "account", grouped=True)
        click.echo(f"Wrote {path} ({accounts}). Open it in a browser.")


@app.command()
@click.option("--owner", metavar="EMAIL", help="Only this person's accounts and actions.")
@click.option("--account", metavar="ACCOUNT", help="Only this account.")
@output_option
def calendar(owner: str | None, account: str | None, file: str | None) -> None:
    """The key accounts' stage deadlines, next reviews and open actions' due dates as an
    iCalendar file (all-day events) to import into a calendar."""
    from kamflow.files import write_private
    from kamflow.reports.calendar import CalendarFile

    if owner is not None and account is not None:
        raise click.UsageError("--owner and --account cannot go together")
    config = settings()
    with reading() as session:
        found = CalendarFile(
            session,
            now=config.clock.now(),
            timezone=config.timezone,
            calendar=config.calendar,
            owner=owner,
            account=account,
        )
        if file is None:
            for chunk in found.chunks():
                click.echo(chunk, nl=False)
            return
        path = write_private(file, found.chunks(), binary=True)
    from kamflow.text import plural

    click.echo(f"Wrote {plural(found.events, 'event')} to {path}.")
