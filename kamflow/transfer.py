"""Accounts in and out as CSV, the way spreadsheets write it (UTF-8, with or without a BOM).

An import is all or nothing: every row is checked first (owners, names, kinds, scores, stages,
the cap), every problem is reported with its line number (the header is line 1), and only a clean
file is imported, in one transaction. What an export writes, an import takes back: an account
comes back in the place it was exported from (a candidate, a stage of the cycle, an exit).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow import defaults
from kamflow.definitions.discovery import get_workflow
from kamflow.definitions.selection import FACTORS, parse_factor
from kamflow.definitions.workflow import Workflow
from kamflow.engine import create_account
from kamflow.errors import GuardRefused, InvalidFile, InvalidInput, KamflowError
from kamflow.files import private_file
from kamflow.models import Account, AccountKind, Person, Score
from kamflow.records.people import find_person
from kamflow.records.scores import record_score
from kamflow.reports.listing import rows_of
from kamflow.text import MAX_NAME, clean_text, plural
from kamflow.verdict import Verdict, overridden

REQUIRED = ("name", "owner", "kind")
#: The place of the account in its workflow (optional: empty means the usual first place).
STAGE = "stage"
#: The latest score an export writes, for reading: the import computes it from the factors.
IGNORED = ("score",)
COLUMNS = (*REQUIRED, *FACTORS, STAGE)

Row = tuple[int, dict[str, str]]
#: Where read_rows notes a row it could not split into the columns.
PROBLEM = "\0problem"


@dataclass
class ImportResult:
    """What an import added: how many accounts, of which kinds, and what to warn about."""

    imported: int = 0
    #: Of those imported: the candidates, the key accounts, the closed ones (in an exit, such as
    #: disqualified or retired), and those that came with a score.
    candidates: int = 0
    key_accounts: int = 0
    closed: int = 0
    scored: int = 0
    #: Key accounts added over the cap by a leader's override.
    overridden: int = 0
    #: The latest cap warning for each owner, then a note of the override, if any.
    warnings: list[str] = field(default_factory=list)


#: An import reports this many problems at most (a file over the cap would repeat one per row).
MAX_PROBLEMS = 20


def read_rows(file: str) -> list[Row]:
    """The file's rows with their line numbers; the header must name the columns."""
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"no file {file}") from None
    except UnicodeDecodeError:
        raise InvalidFile(file, ["the file is not UTF-8 text (save it as CSV UTF-8)"]) from None
    except OSError as error:
        raise InvalidInput(f"cannot read {file}: {error.strerror}") from None
    separator = _separator(text)
    records = _records(text, separator, file)
    if not records:
        raise InvalidFile(file, ["line 1: the file is empty (it needs a header: name,owner,kind)"])
    header = _names(records[0][1])
    problems = []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        problems.append(
            f"line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        problems.append(f"line 1: column {twice[0]!r} appears twice")
    unknown = [name for name in header if name not in (*COLUMNS, *IGNORED)]
    if unknown:
        problems.append(f"line 1: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
        if len(header) == 1:
            problems.append(
                "line 1: the header has one column: kamflow reads columns separated by "
                "commas, semicolons, tabs or bars"
            )
    factors = [name for name in FACTORS if name in header]
    if factors and len(factors) != len(FACTORS):
        absent = [name for name in FACTORS if name not in header]
        problems.append(
            f"line 1: give all eight factor columns or none; missing {', '.join(absent)}"
        )
    if problems:
        raise InvalidFile(file, problems)
    rows: list[Row] = []
    for line, values in records[1:]:
        row = {name: value.strip() for name, value in zip(header, values, strict=False)}
        if "name" in row:
            row["name"] = from_spreadsheet(row["name"])
        if len(values) > len(header):
            row[PROBLEM] = f"more values than columns (a {separator!r} inside a name needs quotes)"
        rows.append((line, row))
    return rows


#: What may separate the columns besides commas: spreadsheets set to some languages save "CSV"
#: with semicolons, and tab- or bar-separated text is common too.
OTHER_SEPARATORS = (";", "\t", "|")


def _separator(text: str) -> str:
    """What separates the file's columns: a comma, unless the header read with commas lacks the
    required columns and read with one of OTHER_SEPARATORS has them all (the header decides,
    never a guess over the rows)."""
    first_line = text.lstrip("\r\n").partition("\n")[0]
    if set(REQUIRED) <= set(_names(_split(first_line, ","))):
        return ","
    for separator in OTHER_SEPARATORS:
        if set(REQUIRED) <= set(_names(_split(first_line, separator))):
            return separator
    return ","


def _split(line: str, separator: str) -> list[str]:
    """One line's values, separated by ``separator`` (quotes as in CSV)."""
    return next(csv.reader([line], delimiter=separator), [])


def _names(values: list[str]) -> list[str]:
    """Column names as written in a header, the way kamflow knows them (``Win-Now`` is
    ``win_now``)."""
    return [name.strip().lower().replace("-", "_") for name in values]


def _records(text: str, separator: str, file: str) -> list[tuple[int, list[str]]]:
    """The file's non-blank records with the line each starts on."""
    # A plain reader, strict about quotes, so that blank lines count and every row has its line.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            reason = "a quote is never closed" if "end of data" in str(error) else str(error)
            raise InvalidFile(file, [f"line {start}: {reason}"]) from None
        if any(value.strip() for value in values):
            records.append((start, values))
    return records


def import_accounts(
    session: Session,
    rows: list[Row],
    *,
    candidate: bool = False,
    override: str | None = None,
    source: str = "the file",
    actor: str,
    now: datetime,
    progress: Callable[[int], Any] | None = None,
) -> ImportResult:
    """Check every row, then import them all (in the caller's transaction) or none.

    The rows are checked field by field first; then each is added for real, the cap included
    (the same guard as a promotion), and any refusal is collected with its line. One problem
    anywhere and the caller's transaction is rolled back: nothing is imported.
    """
    if candidate and override is not None:
        raise InvalidInput("candidates are not key accounts yet: there is no cap to override")
    if override is not None:
        leader = find_person(session, actor)
        if leader is None or not leader.is_leader or not leader.active:
            raise GuardRefused(
                f"{source} was not imported:",
                [
                    Verdict(
                        "within_cap",
                        False,
                        f"only a leader may override the key-account cap; you are {actor}",
                    )
                ],
            )
    definition = get_workflow(defaults.WORKFLOW)
    problems = _check(session, rows, definition, candidate=candidate)
    if problems:
        raise InvalidFile(source, problems)
    result = ImportResult()
    warnings: dict[str, str] = {}  # the latest warning per owner, not one per row
    for line, row in rows:
        try:
            with session.begin_nested():
                account, verdicts = create_account(
                    session,
                    row["name"],
                    owner=row["owner"],
                    workflow=definition.name,
                    kind=row.get("kind") or "existing",
                    candidate=candidate,
                    override=override,
                    stage=row.get(STAGE) or None,
                    actor=actor,
                    now=now,
                )
                if row.get(FACTORS[0]):
                    values = {f: row[f] for f in FACTORS}
                    record_score(session, account, values, actor=actor, now=now)
        except KamflowError as error:
            problems.append(f"line {line}: " + " ".join(part.strip() for part in error.lines()))
            if len(problems) >= MAX_PROBLEMS:
                problems.append(f"(stopped after {MAX_PROBLEMS} problems)")
                break
            continue
        result.imported += 1
        result.candidates += definition.is_intake(account.stage)
        result.key_accounts += account.stage in definition.stage_names
        result.closed += definition.is_exit(account.stage)
        result.scored += bool(row.get(FACTORS[0]))
        result.overridden += overridden(verdicts)
        for verdict in verdicts:
            if verdict.warning and not overridden([verdict]):
                warnings[row["owner"].lower()] = verdict.message
        if progress is not None:
            progress(1)
    if problems:
        raise InvalidFile(source, problems)
    result.warnings = list(warnings.values())
    if result.overridden:
        result.warnings.append(
            f"{plural(result.overridden, 'account')} went over the key-account cap by "
            f"leader override: {override}"
        )
    return result


def _check(
    session: Session, rows: list[Row], definition: Workflow, *, candidate: bool
) -> list[str]:
    """Every row's fields: names, owners, kinds, scores and stages (the cap comes when adding);
    a stage is written back as the name of the place it names."""
    problems: list[str] = []
    existing = {name.lower() for name in session.exec(select(Account.name)).all()}
    people: dict[str, Person | None] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        if PROBLEM in row:
            problems.append(f"line {line}: {row[PROBLEM]}")
            continue
        try:
            name = clean_text(row.get("name", ""), "name", max_length=MAX_NAME)
            if name.isdigit():
                raise InvalidInput(f"name {name!r} would be taken for an account id")
        except InvalidInput as error:
            problems.append(f"line {line}: {error}")
            name = ""
        if name and name.lower() in existing:
            problems.append(f"line {line}: there is already an account named {name!r}")
        elif name and name.lower() in seen:
            problems.append(f"line {line}: {name!r} is also on line {seen[name.lower()]}")
        if name:
            seen.setdefault(name.lower(), line)
        email = row.get("owner", "").lower()
        if email not in people:
            people[email] = find_person(session, email) if email else None
        if people[email] is None:
            problems.append(
                f"line {line}: unknown owner {row.get('owner', '')!r} "
                "(add them: kamflow person add EMAIL)"
            )
        kind = row.get("kind") or "existing"
        if kind not in {known.value for known in AccountKind}:
            problems.append(f"line {line}: kind must be existing or new, not {kind!r}")
        if any(row.get(f) for f in FACTORS):
            for factor in FACTORS:
                try:
                    parse_factor(factor, row.get(factor, ""))
                except InvalidInput as error:
                    problems.append(f"line {line}: {error}")
        if row.get(STAGE):
            try:
                row[STAGE] = _place(definition, row[STAGE], candidate=candidate)
            except KamflowError as error:
                problems.append(f"line {line}, column {STAGE}: {error}")
    return problems


def _place(definition: Workflow, stage: str, *, candidate: bool) -> str:
    """The place of ``definition`` that the stage column names (by name or title, any case)."""
    place = definition.resolve_stage(stage)
    if candidate and not definition.is_intake(place):
        raise InvalidInput(
            f"{stage!r} is not a candidate's place, and --candidate imports only candidates "
            "(empty the column, or import without --candidate)"
        )
    return place


def export_accounts(session: Session) -> Iterator[str]:
    """Every account as CSV by name, a batch of lines at a time: the import's columns, then the
    stage and the latest score (joined by the id a correlated subquery finds per account)."""
    latest = (
        select(Score.id)
        .where(col(Score.account_id) == col(Account.id))
        .order_by(col(Score.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    accounts = (
        sa.select(
            col(Account.name),
            col(Person.email),
            col(Account.kind),
            col(Account.stage),
            latest.label("score_id"),
        )
        .join(Person, col(Account.owner_id) == col(Person.id))
        .subquery()
    )
    factors = [getattr(Score.__table__.c, factor) for factor in FACTORS]  # type: ignore[attr-defined]
    statement = (
        sa.select(accounts, *factors, col(Score.total))
        .select_from(accounts)
        .outerjoin(Score, col(Score.id) == accounts.c.score_id)
        .order_by(accounts.c.name)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, *IGNORED])
    for row in rows_of(session, statement):
        scored = row.total is not None
        writer.writerow(
            [
                spreadsheet_safe(row.name),
                row.email,
                row.kind,
                *(getattr(row, factor) if scored else "" for factor in FACTORS),
                row.stage,
                f"{row.total:g}" if scored else "",
            ]
        )
        if out.tell() > EXPORT_CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


#: An export hands its CSV on in pieces of about this many characters.
EXPORT_CHUNK = 64 * 1024


def write_export(chunks: Iterable[str], file: str) -> int:
    """Write an export to ``file`` (with a byte-order mark, so that spreadsheets read accented
    names right), whole or not at all, readable by its owner only; returns how many accounts it
    holds."""
    lines = 0
    try:
        with private_file(Path(file), encoding="utf-8-sig", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
                lines += chunk.count("\n")
    except OSError as error:
        raise InvalidInput(f"cannot write {file}: {error.strerror}") from None
    return lines - 1


#: A cell starting with one of these is a formula to a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@")


def spreadsheet_safe(text: str) -> str:
    """A name a spreadsheet shows as text, never as a formula (``'=`` reads back as ``=``)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def from_spreadsheet(text: str) -> str:
    """The reverse of spreadsheet_safe()."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text
