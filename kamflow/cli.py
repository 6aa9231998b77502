"""The kamflow command line: each command parses, calls one core function and renders the result.

Heavy imports (SQLModel, Alembic, transitions) stay inside the commands so `kamflow --help` is fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from kamflow import __version__, defaults
from kamflow.errors import KamflowError

if TYPE_CHECKING:
    from sqlmodel import Session

    from kamflow.config import Settings

T = TypeVar("T")

EXIT_INTERNAL = 70


class KamflowGroup(click.Group):
    """Turns every kamflow error into an `Error:` line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KamflowError as error:
            fail(error.lines(), error.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # Output piped into `head`, which has read enough: main() ends quietly.
            raise
        except Exception as error:  # a bug: still one line, never a traceback
            if os.environ.get("KAMFLOW_DEBUG"):
                raise
            first = (str(error).strip().splitlines() or [""])[0]
            fail(
                [f"internal error: {type(error).__name__}: {first} (KAMFLOW_DEBUG=1 shows more)"],
                EXIT_INTERNAL,
            )


def fail(lines: Sequence[str], code: int) -> NoReturn:
    first, *rest = lines
    click.echo(f"Error: {first}", err=True)
    for line in rest:
        click.echo(line, err=True)
    sys.exit(code)


# --- plumbing shared by the commands -------------------------------------------------------------


def settings() -> Settings:
    ctx = click.get_current_context()
    found: Settings = ctx.find_root().obj
    return found


@contextmanager
def transaction() -> Iterator[Session]:
    """A session on the ready database; everything in the block commits together or not at all."""
    from kamflow.db import ready_engine, session_scope

    with session_scope(ready_engine(settings().database_url)) as session:
        yield session


def act(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a core function in one transaction, as the current actor at the current time."""
    config = settings()
    with transaction() as session:
        return function(session, *args, actor=config.actor, now=config.clock.now(), **kwargs)


def act_on(function: Callable[..., T], ref: str, *args: Any, **kwargs: Any) -> tuple[str, T]:
    """Like act() for a change to account ``ref``; also returns the account's name as stored."""
    from kamflow.records.accounts import find_account

    config = settings()
    with transaction() as session:
        result = function(session, ref, *args, actor=config.actor, now=config.clock.now(), **kwargs)
        return find_account(session, ref).name, result


def read(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with transaction() as session:
        return function(session, *args, **kwargs)


@contextmanager
def reading() -> Iterator[Session]:
    """A session that only reads, for a listing printed while its rows are read: it takes no
    write lock on SQLite, and every query sees one snapshot of the database."""
    from sqlmodel import Session

    from kamflow.db import read_scope, ready_engine

    engine = ready_engine(settings().database_url)
    with read_scope(engine, snapshot=True) as connection, Session(bind=connection) as session:
        yield session


def now_() -> Any:
    return settings().clock.now()


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    from tabulate import tabulate

    if not rows:
        click.echo("(none)")
        return
    # Numbers are already formatted (1,800,000): tabulate must not re-parse them.
    click.echo(
        tabulate(
            rows, headers=[h.upper() for h in headers], tablefmt="simple", disable_numparse=True
        )
    )


def emit_json_rows(rows: Iterable[Any]) -> None:
    """A JSON array printed element by element, as emit_json() would print the whole list."""
    from kamflow.reports.streaming import json_array

    for piece in json_array(rows):
        click.echo(piece, nl=False)
    click.echo()


def stream_table(columns: Sequence[tuple[str, int]], cells: Iterable[Sequence[Any]]) -> None:
    """A table printed a batch of rows at a time; each column as (header, widest cell)."""
    from kamflow.reports.streaming import Column, table_lines

    heads = [Column(header.upper(), width) for header, width in columns]
    for lines in table_lines(heads, cells):
        click.echo("\n".join(lines))


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(function)


def override_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--override --reason TEXT: a leader goes over the key-account cap, on record."""

    def check(ctx: click.Context, _param: click.Parameter, reason: str | None) -> str | None:
        wanted = ctx.params.pop("override_flag", False)
        if wanted and not (reason and reason.strip()):
            raise click.UsageError("--override needs --reason TEXT")
        if reason is not None and not wanted:
            raise click.UsageError("--reason goes with --override")
        return reason if wanted else None

    function = click.option(
        "--reason", "override", callback=check, metavar="TEXT", help="Why the cap is overridden."
    )(function)
    return click.option(
        "--override",
        "override_flag",
        is_flag=True,
        is_eager=True,
        help="Go over the key-account cap (leaders only; needs --reason).",
    )(function)


# --- the root group ------------------------------------------------------------------------------


@click.group(cls=KamflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "database",
    metavar="URL",
    help="Database URL (default: $KAMFLOW_DB or sqlite:///kamflow.db).",
)
@click.option("--as", "actor", metavar="EMAIL", help="Who acts (default: $KAMFLOW_USER or login).")
@click.version_option(__version__, prog_name="kamflow")
@click.pass_context
def app(ctx: click.Context, database: str | None, actor: str | None) -> None:
    """kamflow: run key accounts through Strategy, Research, Action plan, Execution and Review.

    Set KAMFLOW_NOW (ISO 8601) to act at another time, e.g. for a demo.
    """
    from kamflow.config import Settings

    try:
        ctx.obj = Settings.load(database=database, actor=actor)
    except KamflowError as error:
        fail(error.lines(), error.exit_code)


@app.command()
def init() -> None:
    """Create the database, or upgrade it to this version's schema."""
    from kamflow.db import engine_for, upgrade

    engine = engine_for(settings().database_url)
    url = engine.url.render_as_string(hide_password=True)
    before, after = upgrade(engine)
    if before == after:
        click.echo(f"Database {url} is up to date (schema {after}).")
    elif before is None:
        click.echo(f"Created database {url} (schema {after}).")
    else:
        click.echo(f"Upgraded database {url} from schema {before} to {after}.")


# --- people --------------------------------------------------------------------------------------


@app.group()
def person() -> None:
    """Add and list people (owners, team members, leaders)."""


@person.command("add")
@click.argument("email")
@click.option("--name", default="", help="Full name.")
@click.option("--leader", is_flag=True, help="Part of leadership: receives escalations.")
def person_add(email: str, name: str, leader: bool) -> None:
    """Add a person by email."""
    from kamflow.records.people import add_person

    added = read(add_person, email, name=name, leader=leader, now=now_())
    click.echo(f"Added {added.email}{' (leader)' if added.is_leader else ''}.")


@person.command("list")
@json_option
def person_list(as_json: bool) -> None:
    """List people."""
    from kamflow.records.people import list_people

    people = read(list_people)
    if as_json:
        emit_json(people)
    else:
        table(
            [(p["email"], p["name"], "yes" if p["leader"] else "") for p in people],
            ["email", "name", "leader"],
        )


# --- accounts ------------------------------------------------------------------------------------


@app.group()
def account() -> None:
    """Key accounts and candidates: add, score, promote, swap, list, show, import, export."""


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
    _print_warnings(verdicts)


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
    from kamflow.definitions.selection import portfolio_config
    from kamflow.records.scores import score_account

    account, scored = act_on(score_account, name, factors)
    threshold = portfolio_config().selection.threshold
    verdict = "reaches" if scored.total >= threshold else "is below"
    click.echo(
        f"{account} scored {scored.total:g}: {verdict} the promotion threshold of {threshold:g}."
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
    _show_outcome(outcome, as_json)
    _print_warnings(outcome.verdicts)


def _print_warnings(verdicts: Any) -> None:
    for verdict in verdicts:
        if verdict.ok and verdict.warning:
            click.echo(f"Warning: {verdict.message}", err=True)


@account.command("swap")
@click.argument("out_name", metavar="OUT")
@click.argument("in_name", metavar="IN")
def account_swap(out_name: str, in_name: str) -> None:
    """Retire key account OUT and promote candidate IN, in one transaction (one in, one out)."""
    from kamflow.engine import swap

    retired, promoted = act(swap, out_name, in_name)
    click.echo(f"{retired.account} retired; {promoted.account} promoted to {promoted.to_stage}.")
    _print_warnings(promoted.verdicts)


@account.command("rank")
@json_option
def account_rank(as_json: bool) -> None:
    """Candidates and key accounts by their latest score."""
    from kamflow.reports.portfolio import rank
    from kamflow.text import score_text

    with reading() as session:
        listing = rank(session, now=now_())
        if as_json:
            emit_json_rows(listing.rows)
            return
        width = listing.widths
        stream_table(
            [
                ("#", width["rank"]),
                ("account", width["name"]),
                ("kind", len("key account")),
                ("stage", width["stage_title"]),
                ("score", width["score"]),
                ("above threshold", len("yes")),
                ("owner", width["owner"]),
            ],
            (
                (
                    r["rank"],
                    r["name"],
                    "key account" if r["key_account"] else "candidate",
                    r["stage_title"],
                    score_text(r["score"]),
                    "yes" if r["above_threshold"] else "",
                    r["owner"],
                )
                for r in listing.rows
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


@account.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--candidate", is_flag=True, help="Import every row as a candidate.")
@override_options
def account_import(file: str, candidate: bool, override: str | None) -> None:
    """Import accounts from CSV (name,owner,kind and optionally the eight factor scores).

    Every row is checked first, the cap included; one bad row imports nothing.
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
    click.echo(
        f"Imported {result.imported} account{'s' if result.imported != 1 else ''} from {file} "
        f"({result.candidates} candidates, {result.key_accounts} key accounts, "
        f"{result.scored} scored)."
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
    click.echo(f"Wrote {written} accounts to {file}.")


@account.command("list")
@click.option("--stage", help="Only accounts in this stage.")
@json_option
def account_list(stage: str | None, as_json: bool) -> None:
    """List key accounts with their stage and days in it."""
    from kamflow.reports.portfolio import list_accounts

    with reading() as session:
        listing = list_accounts(session, stage=stage, now=now_())
        if as_json:
            emit_json_rows(listing.rows)
            return
        width = listing.widths
        stream_table(
            [
                ("id", width["id"]),
                ("account", width["name"]),
                ("stage", width["stage_title"]),
                ("days", width["days"]),
                ("status", width["status"]),
                ("owner", width["owner"]),
                ("workflow", width["workflow"]),
            ],
            (
                (
                    r["id"],
                    r["name"],
                    r["stage_title"],
                    _days(r),
                    r["status"],
                    r["owner"],
                    r["workflow"],
                )
                for r in listing.rows
            ),
        )


def _days(row: dict[str, Any]) -> str:
    from kamflow.text import days_text

    return days_text(row["days_in_stage"], row.get("limit_days"))


@account.command("show")
@click.argument("name")
@json_option
def account_show(name: str, as_json: bool) -> None:
    """Show everything about one account."""
    from kamflow.reports.views import account_details

    config = settings()
    details = read(
        account_details, name, actor=config.actor, now=config.clock.now(), timezone=config.timezone
    )
    if as_json:
        emit_json(details)
        return
    from kamflow.reports.render import render_account

    click.echo(render_account(details))


# --- the plan ------------------------------------------------------------------------------------


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
    from kamflow.records.plan import questions_view

    rows = read(questions_view, name)
    if only_open:
        rows = [r for r in rows if r["status"] == "open"]
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
    from kamflow.records.plan import actions_view

    rows = read(actions_view, name, today=now_().astimezone(settings().timezone).date())
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
    from kamflow.records.plan import add_kpi, format_number

    account, added = act_on(
        add_kpi, name, kpi_name, target=target, unit=unit, lower_is_better=lower_is_better
    )
    unit = f" {added.unit}" if added.unit else ""
    click.echo(f"KPI {added.name} added to {account} (target {format_number(added.target)}{unit}).")


@kpi.command("record")
@click.argument("name")
@click.argument("kpi_name", metavar="KPI")
@click.argument("value")
@click.option("--period", help="Period label (default: the current quarter, e.g. 2027-Q2).")
def kpi_record(name: str, kpi_name: str, value: str, period: str | None) -> None:
    """Record a KPI's value."""
    from kamflow.records.plan import format_number, record_kpi

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


# --- stage changes -------------------------------------------------------------------------------


def _show_outcome(outcome: Any, as_json: bool) -> None:
    if as_json:
        emit_json(outcome.as_dict())
        if outcome.dry_run and not outcome.allowed:
            sys.exit(3)
        return
    if outcome.dry_run:
        verb = "would" if outcome.allowed else "would not"
        click.echo(
            f"{outcome.account} {verb} {outcome.transition} from {outcome.from_stage} "
            f"to {outcome.to_stage} (dry run, nothing written):"
        )
        for verdict in outcome.verdicts:
            click.echo(f"  [{'ok' if verdict.ok else 'missing'}] {verdict.message}")
        if not outcome.allowed:
            sys.exit(3)
        return
    click.echo(
        f"{outcome.account}: {outcome.from_stage} -> {outcome.to_stage} ({outcome.transition})."
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

    _show_outcome(act(advance_account, name, to=to, note=note, dry_run=dry_run), as_json)


@app.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why the account is not a key account.")
@click.option("--dry-run", is_flag=True, help="Only check; change nothing.")
def disqualify(name: str, reason: str, dry_run: bool) -> None:
    """Take an account out of the programme: it is not a key account."""
    from kamflow.engine import close

    _show_outcome(act(close, name, "disqualify", reason=reason, dry_run=dry_run), False)


@app.command()
@click.argument("name")
@click.option("--reason", required=True, help="Why the account is retired.")
@click.option("--dry-run", is_flag=True, help="Only check; change nothing.")
def retire(name: str, reason: str, dry_run: bool) -> None:
    """Retire a key account."""
    from kamflow.engine import close

    _show_outcome(act(close, name, "retire", reason=reason, dry_run=dry_run), False)


@app.command()
@click.argument("name")
@json_option
def why(name: str, as_json: bool) -> None:
    """What the next transition(s) still need."""
    from kamflow.engine import why as why_account
    from kamflow.reports.render import render_why

    report = act(why_account, name)
    if as_json:
        emit_json(report)
    else:
        click.echo(render_why(report))


@app.command()
@click.argument("name")
@json_option
def history(name: str, as_json: bool) -> None:
    """Every change to an account, oldest first."""
    from kamflow.records.accounts import find_account
    from kamflow.records.history import entries

    rows = read(lambda session: entries(session, find_account(session, name)))
    if as_json:
        emit_json(rows)
        return
    from kamflow.reports.render import history_rows

    table(history_rows(rows), ["when", "who", "what", "note"])


# --- workflows -----------------------------------------------------------------------------------


@app.group()
def workflow() -> None:
    """The workflow definitions (the process as data)."""


@workflow.command("list")
@json_option
def workflow_list(as_json: bool) -> None:
    """List the available workflows."""
    from kamflow.definitions.discovery import available
    from kamflow.definitions.workflow import load_workflow

    rows = []
    for name, path in sorted(available().items()):
        definition = load_workflow(path)
        rows.append(
            {
                "name": name,
                "title": definition.spec.title,
                "path": str(path),
                "stages": definition.stage_names,
            }
        )
    if as_json:
        emit_json(rows)
    else:
        table(
            [(r["name"], r["title"], " -> ".join(r["stages"]), r["path"]) for r in rows],
            ["name", "title", "stages", "file"],
        )


@workflow.command("show")
@click.argument("name")
@click.option(
    "--format",
    "form",
    type=click.Choice(["text", "mermaid", "json"]),
    default="text",
    show_default=True,
    help="Plain text, a Mermaid state diagram, or JSON.",
)
@json_option
def workflow_show(name: str, form: str, as_json: bool) -> None:
    """Show a workflow's stages, limits and transitions with their guards."""
    from kamflow.definitions.discovery import get_workflow
    from kamflow.reports.render import render_workflow

    definition = get_workflow(name)
    if as_json or form == "json":
        emit_json(definition.spec.model_dump(by_alias=True))
    elif form == "mermaid":
        from kamflow.reports.diagram import mermaid

        click.echo(mermaid(definition))
    else:
        click.echo(render_workflow(definition))


@workflow.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def workflow_validate(file: str) -> None:
    """Check a workflow file (and its question bank); exit 1 naming every problem."""
    from pathlib import Path

    from kamflow.definitions.workflow import load_workflow

    definition = load_workflow(Path(file).resolve())
    click.echo(
        f"{file} is valid: workflow {definition.name}, {len(definition.stage_names)} stages, "
        f"{len(definition.spec.transitions)} transitions, "
        f"{len(definition.questions.questions)} questions."
    )


# --- the portfolio --------------------------------------------------------------------------


@app.command()
@json_option
def portfolio(as_json: bool) -> None:
    """The board: candidates and key accounts by stage, with owner, days, status and score."""
    from kamflow.reports.portfolio import board
    from kamflow.text import score_text

    with reading() as session:
        listing = board(session, now=now_())
        if as_json:
            emit_json_rows(listing.rows)
            return
        width = listing.widths
        stream_table(
            [
                ("stage", width["stage_title"]),
                ("account", width["name"]),
                ("owner", width["owner"]),
                ("days", width["days"]),
                ("status", width["status"]),
                ("score", width["score"]),
                ("workflow", width["workflow"]),
            ],
            (
                (
                    r["stage_title"],
                    r["name"],
                    r["owner"],
                    _days(r),
                    r["status"],
                    score_text(r["score"]),
                    r["workflow"],
                )
                for r in listing.rows
            ),
        )


#: What coverage prints where no one holds a role.
GAP = "-- GAP --"


@app.command()
@json_option
def coverage(as_json: bool) -> None:
    """Key accounts x the six account-team roles: who holds each, and the gaps."""
    from kamflow import defaults
    from kamflow.reports.portfolio import coverage as role_coverage

    with reading() as session:
        listing = role_coverage(session)
        if as_json:
            emit_json_rows(listing.rows)
            return
        seen = {"accounts": 0, "gaps": 0}

        def cells(row: dict[str, Any]) -> tuple[str, ...]:
            seen["accounts"] += 1
            seen["gaps"] += len(row["gaps"])
            return (row["account"], *(", ".join(row["roles"][r]) or GAP for r in defaults.ROLES))

        width = listing.widths
        stream_table(
            [
                ("account", width["account"]),
                *((role, max(width.get(role, 0), len(GAP))) for role in defaults.ROLES),
            ],
            map(cells, listing.rows),
        )
    gaps = seen["gaps"]
    click.echo(f"\n{gaps} gap{'s' if gaps != 1 else ''} in {seen['accounts']} key accounts.")


@app.command()
@json_option
def kpis(as_json: bool) -> None:
    """Every key account's KPIs: target against the latest value, off target marked."""
    from kamflow.records.plan import format_number
    from kamflow.reports.portfolio import kpi_report

    with reading() as session:
        listing = kpi_report(session)
        if as_json:
            emit_json_rows(listing.rows)
            return
        width = listing.widths
        stream_table(
            [
                ("account", width["account"]),
                ("kpi", width["name"]),
                ("target", len("<= ") + width["target"]),
                ("latest", max(width["latest"], len("-"))),
                ("unit", width["unit"]),
                ("period", width["period"]),
                ("state", len("OFF TARGET")),
            ],
            (
                (
                    r["account"],
                    r["name"],
                    ("<= " if r["lower_is_better"] else ">= ") + format_number(r["target"]),
                    "-" if r["latest"] is None else format_number(r["latest"]),
                    r["unit"],
                    r["period"] or "",
                    "OFF TARGET"
                    if r["off_target"]
                    else ("on target" if r["on_target"] else "no value"),
                )
                for r in listing.rows
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
        data = build_report(session, now=now_())
    path = write_report(data, html_file)
    if as_json:
        emit_json({"file": str(path), **data})
    else:
        accounts = data["summary"]["accounts"]
        click.echo(f"Wrote {path} ({accounts:,} accounts). Open it in a browser.")


# --- reminders, escalations and the daemon -------------------------------------------------


def _whole_number(text: str, what: str) -> int:
    from kamflow.errors import InvalidInput

    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a whole number") from None


@app.command()
@click.argument("name")
@click.option(
    "--days",
    required=True,
    metavar="N",
    help=f"How long to pause (at most {defaults.MAX_SNOOZE_DAYS} days).",
)
@click.option("--reason", required=True, help="Why the account may wait.")
def snooze(name: str, days: str, reason: str) -> None:
    """Pause the reminders and escalations of an account (the owner or a leader)."""
    from kamflow.records.snoozes import snooze as snooze_account

    account, paused = act_on(
        snooze_account, name, days=_whole_number(days, "--days"), reason=reason
    )
    click.echo(f"Reminders for {account} paused until {paused.until.date().isoformat()}.")


@app.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be queued; change nothing.")
@json_option
def tick(dry_run: bool, as_json: bool) -> None:
    """Run every step once: queue reminders, escalations and digests, then deliver the outbox."""
    from kamflow.config import MailSettings, Schedule
    from kamflow.db import ready_engine
    from kamflow.steps import tick as run_tick

    schedule, mail = Schedule.load(), MailSettings.load()
    report = run_tick(
        ready_engine(settings().database_url), now_(), schedule, mail, dry_run=dry_run
    )
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "queued": [item for step in report.steps for item in step.queued],
                "delivery": None if report.delivery is None else vars(report.delivery),
            }
        )
    else:
        for step in report.steps:
            click.echo(step.summary())
            for item in step.queued:
                click.echo(f"  {'would queue' if dry_run else 'queued'}: {item['subject']}")
        if report.delivery is not None:
            click.echo(report.delivery.summary())
            if report.delivery.sent and mail.transport == "file":
                click.echo(f"  the messages are in {mail.outbox_dir}/")
    if report.delivery is not None and report.delivery.stopped:
        fail([f"delivery stopped: {report.delivery.stopped}"], 1)


@app.command()
def daemon() -> None:
    """Run in the foreground: notice stalls, remind, escalate, deliver mail, send digests.

    Stops cleanly on SIGTERM or Ctrl-C (a second signal stops at once).
    """
    import logging

    from kamflow.config import MailSettings, Schedule
    from kamflow.daemon import Daemon
    from kamflow.db import ready_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not os.environ.get(defaults.ENV_DEBUG):
        # A database outage is one line per failed step (the daemon logs it); the connection
        # pool's own tracebacks about the same broken connections would bury it.
        logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    from kamflow.clock import FixedClock, RunningClock

    schedule, mail = Schedule.load(), MailSettings.load()
    config = settings()
    # KAMFLOW_NOW says when the daemon starts; from there its time runs (leases must expire).
    clock = config.clock
    if isinstance(clock, FixedClock):
        clock = RunningClock(clock.now())
    Daemon(ready_engine(config.database_url), clock, schedule, mail).run()


@app.command()
@json_option
def status(as_json: bool) -> None:
    """The daemon's last tick, the outbox, and how many accounts are behind or stuck."""
    from kamflow.steps.views import status as daemon_status

    report = read(daemon_status, now_())
    if as_json:
        emit_json(report)
        return
    from kamflow.reports.render import render_status

    click.echo(render_status(report))


@app.command()
@click.option(
    "--days",
    default=str(defaults.FORECAST_DAYS),
    show_default=True,
    metavar="N",
    help=f"How far ahead (1 to {defaults.MAX_FORECAST_DAYS} days).",
)
@json_option
def forecast(days: str, as_json: bool) -> None:
    """Which reminders and escalations would fire in the next N days if nothing changed."""
    from kamflow.config import Schedule
    from kamflow.steps.views import forecast as make_forecast

    schedule = Schedule.load()
    with read(make_forecast, now_(), _whole_number(days, "--days"), schedule) as rows:
        if as_json:
            emit_json_rows(rows)
            return
        stream_table(
            [
                ("date", 10),
                ("kind", rows.longest("kind")),
                ("account", rows.longest("account")),
                ("stage or action", max(rows.longest("stage"), rows.longest("action"))),
                ("number", len(str(rows.last_number()))),
            ],
            (
                (
                    r["at"][:10],
                    r["kind"],
                    r["account"],
                    r.get("action") or r["stage"],
                    r["repeat"] + 1,
                )
                for r in rows
            ),
        )


@app.group()
def outbox() -> None:
    """The queued, sent and dead messages."""


@outbox.command("list")
@click.option("--status", "only", help="pending, sent, dead or obsolete.")
@json_option
def outbox_list(only: str | None, as_json: bool) -> None:
    """List the newest messages (100 at most)."""
    from kamflow.outbox import list_messages

    rows = read(list_messages, status=only)
    if as_json:
        emit_json(rows)
        return
    table(
        [
            (r["id"], r["status"], r["kind"], r["to"], r["subject"], r["attempts"], r["last_error"])
            for r in rows
        ],
        ["id", "status", "kind", "to", "subject", "tries", "last error"],
    )


@outbox.command("retry")
@click.argument("message_id", metavar="ID")
def outbox_retry(message_id: str) -> None:
    """Queue a dead message again."""
    from kamflow.outbox import retry

    row = read(retry, message_id, now=now_())
    click.echo(f"Message {row.id} is queued again: {row.subject}")


# --- the demo ------------------------------------------------------------------------------------


@app.command()
def demo() -> None:
    """A scripted walk-through on a fresh database of its own (./kamflow-demo.db)."""
    from kamflow.demo import run

    styles: dict[str, dict[str, Any]] = {
        "title": {"bold": True},
        "command": {"fg": "cyan"},
        "note": {"fg": "yellow"},
        "text": {},
    }

    def invoke(args: list[str]) -> int:
        sys.stdout.flush()
        try:
            app.main(args=args, prog_name="kamflow", standalone_mode=False)
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return 0

    run(invoke, lambda text, style: click.secho(text, **styles[style]))


def main() -> None:
    """The console script's entry point."""
    try:
        app(prog_name="kamflow")
    except BrokenPipeError:
        # Output piped into `head`: stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
