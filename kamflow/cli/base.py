"""What every command shares: the root group and its error handling, the settings, sessions on
the database, and the output helpers (JSON, tables, outcomes and warnings).

Heavy imports (SQLModel, Alembic, tabulate) wait inside the functions, as they do in the commands.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from kamflow import __version__, defaults
from kamflow.errors import KamflowError

if TYPE_CHECKING:
    from datetime import datetime

    from sqlmodel import Session

    from kamflow.config import Settings

T = TypeVar("T")

EXIT_INTERNAL = 70


#: How a run ends when the reader of its output went away (`kamflow account list | head`): as a
#: shell reports a writer stopped by SIGPIPE (128 + 13), so that `set -o pipefail` still sees it.
EXIT_PIPE_CLOSED = 141


class KamflowGroup(click.Group):
    """Turns every kamflow error into an `Error:` line on stderr and its exit code, and ends a
    command whose output nobody reads any more (`| head`) quietly."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            if _output_closed(error):
                end_quietly()
            if isinstance(error, KamflowError):
                fail(error.lines(), error.exit_code)
            if _debugging(ctx):
                raise
            # A bug: still one line, never a traceback.
            first = (str(error).strip().splitlines() or [""])[0]
            fail(
                [
                    f"internal error: {type(error).__name__}: {first} "
                    f"({defaults.ENV_DEBUG}=1 shows more)"
                ],
                EXIT_INTERNAL,
            )


def _output_closed(error: BaseException) -> bool:
    """Whether ``error`` comes from printing into a pipe whose reader has gone (`| head -1`),
    itself or as the error another one was raised while handling."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, BrokenPipeError):
        seen = seen.__cause__ or seen.__context__
    return seen is not None and _stdout_reader_gone()


def _stdout_reader_gone() -> bool:
    """Whether nobody reads stdout any more: not some other broken pipe (a mail server's
    socket), which is a real error."""
    import select

    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's captured output)
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    # The write end of a pipe without a reader polls as an error.
    return any(events & select.POLLERR for _, events in poller.poll(0))


def end_quietly() -> NoReturn:
    """Stop at once, saying nothing: what is left to print has nowhere to go."""
    # What is still buffered can never be written; pointing stdout at /dev/null keeps Python's
    # flush at exit from reporting the closed pipe on stderr.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.exit(EXIT_PIPE_CLOSED)


def _debugging(ctx: click.Context) -> bool:
    loaded: Settings | None = ctx.find_root().obj
    if loaded is None:  # the error came while the settings were built: ask the environment
        return bool(os.environ.get(defaults.ENV_DEBUG))
    return loaded.debug


def fail(lines: Sequence[str], code: int) -> NoReturn:
    first, *rest = lines
    click.echo(f"Error: {first}", err=True)
    for line in rest:
        click.echo(line, err=True)
    sys.exit(code)


# --- the root group ------------------------------------------------------------------------------


@click.group(cls=KamflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "database",
    metavar="URL",
    help=f"Database URL (default: ${defaults.ENV_DATABASE} or {defaults.DATABASE_URL}).",
)
@click.option(
    "--as", "actor", metavar="EMAIL", help=f"Who acts (default: ${defaults.ENV_USER} or login)."
)
@click.version_option(__version__, prog_name="kamflow")
@click.pass_context
def app(ctx: click.Context, database: str | None, actor: str | None) -> None:
    """kamflow: run key accounts through Strategy, Research, Action plan, Execution and Review.

    Set KAMFLOW_NOW (ISO 8601) to act at another time, e.g. for a demo.
    """
    # The one settings object of this run; every command reads it through settings().
    from kamflow.config import Settings

    try:
        ctx.obj = Settings.load(database=database, actor=actor)
    except KamflowError as error:
        fail(error.lines(), error.exit_code)
    from kamflow.cli.notices import WarnOnce  # here: logging is not for `kamflow --help` to pay

    WarnOnce.install()


def main() -> None:
    """The console script's entry point."""
    try:
        app(prog_name="kamflow")
    finally:
        # Flushed here rather than by Python at exit, where a closed pipe could only be noise.
        try:
            if sys.stdout is not None:  # None when kamflow was started without one (>&-)
                sys.stdout.flush()
        except BrokenPipeError:
            end_quietly()


# --- the settings and the database ---------------------------------------------------------------


def settings() -> Settings:
    """The settings the root group built at start-up."""
    ctx = click.get_current_context()
    found: Settings = ctx.find_root().obj
    return found


def now() -> datetime:
    """The current time, as the settings' clock tells it."""
    return settings().clock.now()


@contextmanager
def transaction() -> Iterator[Session]:
    """A session on the database; everything in the block commits together or not at all."""
    from kamflow.db import existing_engine, session_scope

    with session_scope(existing_engine(settings().database_url)) as session:
        yield session


def act(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a core function in one transaction, as the person acting (kamflow.records.identity:
    the authenticated login's person, or the one an admin names with --as) at the current
    time."""
    from kamflow.records.identity import resolve

    config = settings()
    with transaction() as session:
        actor = resolve(session, config.actor)
        return function(session, *args, actor=actor, now=config.clock.now(), **kwargs)


def act_on(function: Callable[..., T], ref: str, *args: Any, **kwargs: Any) -> tuple[str, T]:
    """Like act() for a change to account ``ref``; also returns the account's name as stored."""
    from kamflow.records.accounts import find_account
    from kamflow.records.identity import resolve

    config = settings()
    with transaction() as session:
        actor = resolve(session, config.actor)
        result = function(session, ref, *args, actor=actor, now=config.clock.now(), **kwargs)
        return find_account(session, ref).name, result


def act_with(right: str, function: Callable[[Session, str], T]) -> T:
    """Run a change that is not about one account (people, their logins, the outbox) in one
    transaction, if the person acting holds ``right`` (a kamflow.definitions.spec.Right) for
    the organisation (people: by default an admin); ``function`` is called with the session and
    the actor."""
    from kamflow.definitions.spec import Right
    from kamflow.records import permissions
    from kamflow.records.identity import really, resolve

    config = settings()
    with transaction() as session:
        actor = resolve(session, config.actor)
        # Judged for whoever really acts: an admin acting for someone still manages people.
        permissions.require(session, Right(right), really(actor))
        return function(session, actor)


def viewing(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a core function that only reads, told who "you" are (kamflow.records.identity.viewer),
    at the current time."""
    from kamflow.records.identity import viewer

    config = settings()
    with transaction() as session:
        you = viewer(session, config.actor)
        return function(session, *args, actor=you, now=config.clock.now(), **kwargs)


def read(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a core function in one transaction, without an actor."""
    with transaction() as session:
        return function(session, *args, **kwargs)


@contextmanager
def reading() -> Iterator[Session]:
    """A session that only reads, for a listing printed while its rows are read: it takes no
    write lock on SQLite, and every query sees one snapshot of the database."""
    from sqlmodel import Session

    from kamflow.db import existing_engine, read_scope

    engine = existing_engine(settings().database_url)
    with read_scope(engine, snapshot=True) as connection, Session(bind=connection) as session:
        yield session


# --- output --------------------------------------------------------------------------------------


def emit_json(data: Any) -> None:
    import json  # only the commands that print JSON pay for it, not --help

    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    *,
    widest: Mapping[str, int | None] | None = None,
) -> None:
    """A text table of a few rows, as stream_table() prints it: a cell wider than
    defaults.TABLE_CELL_WIDTH terminal columns (or its column's ``widest``; None: never) is cut
    with an ellipsis, but for the last column's (tabulate measures wide characters with wcwidth)."""
    from tabulate import tabulate

    from kamflow.text import shorten

    if not rows:
        click.echo("(none)")
        return
    limits: dict[str, int | None] = {header: defaults.TABLE_CELL_WIDTH for header in headers}
    limits.update(widest or {})
    limits[headers[-1]] = None
    cut = [limits[header] for header in headers]
    cells = [
        [
            cell if cell is None or limit is None else shorten(str(cell), limit)
            for cell, limit in zip(row, cut, strict=True)
        ]
        for row in rows
    ]
    # Numbers are already formatted (1,800,000): tabulate must not re-parse them.
    click.echo(
        tabulate(
            cells, headers=[h.upper() for h in headers], tablefmt="simple", disable_numparse=True
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


def show_rows(
    rows: Iterable[dict[str, Any]],
    as_json: bool,
    columns: Sequence[tuple[str, int]],
    cells: Callable[[dict[str, Any]], Sequence[Any]],
) -> None:
    """Rows read a batch at a time, printed as a JSON array (``--json``) or as a table of
    ``columns`` (header, widest cell) whose cells ``cells`` makes of each row."""
    if as_json:
        emit_json_rows(rows)
        return
    stream_table(columns, map(cells, rows))


def days_cell(row: dict[str, Any]) -> str:
    """An account row's days in its stage, with the stage's limit when it has one."""
    from kamflow.text import days_text

    business = row.get("limit_business_days")
    return days_text(row["days_in_stage"], business or row.get("limit_days"), bool(business))


def show_outcome(outcome: Any, as_json: bool) -> None:
    """A stage change, done or (in a dry run) checked; a refused dry run exits 3."""
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


def print_warnings(verdicts: Any) -> None:
    """The guards that allowed a move but warn (e.g. an owner near the cap), on stderr."""
    for verdict in verdicts:
        if verdict.ok and verdict.warning:
            click.echo(f"Warning: {verdict.message}", err=True)


# --- options shared by several commands ----------------------------------------------------------


class NegativeNumbers(click.Command):
    """A command whose arguments may be negative numbers: ``kamflow kpi record ACME Margin -3``.

    click takes every word that starts with a dash for an option, and ``-3`` for an unknown one.
    Here a word that starts with a dash and a digit (no option does) is an argument: the words are
    handed to click as the options with their values, ``--``, then the arguments in their order.
    So click still parses every option, and still names one it does not know.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        valued = {
            name
            for param in self.get_params(ctx)
            if isinstance(param, click.Option) and not (param.is_flag or param.count)
            for name in param.opts
        }
        options: list[str] = []
        arguments: list[str] = []
        words = iter(args)
        for word in words:
            if word == "--":
                arguments.extend(words)
            elif _is_number(word) or not word.startswith("-") or word == "-":
                arguments.append(word)
            else:
                options.append(word)
                if word in valued:  # its value is the next word, whatever it looks like
                    value = next(words, None)
                    if value is None:  # as click says it
                        raise click.BadOptionUsage(
                            word, f"Option {word!r} requires an argument.", ctx=ctx
                        )
                    options.append(value)
        return super().parse_args(ctx, [*options, "--", *arguments])


def _is_number(word: str) -> bool:
    """Whether ``word`` is a negative number, or meant as one (``-3``, ``-.5``, ``-2e3``,
    ``-3x``): a dash, perhaps a point, then a digit."""
    rest = word[1:].removeprefix(".")
    return word.startswith("-") and rest[:1].isdigit()


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(function)


def output_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """--output FILE: write what the command makes to a private file instead of stdout."""
    return click.option(
        "--output",
        "file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Write it to FILE (readable by you only) instead of printing it.",
    )(function)


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
