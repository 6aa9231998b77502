"""Key accounts as rows: writing a new one, finding one by name or id, the plan's version, and
the corrections: another workflow, another name, another owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow import defaults
from kamflow.definitions.discovery import get_workflow
from kamflow.definitions.spec import Right
from kamflow.definitions.workflow import Workflow
from kamflow.errors import Conflict, GuardRefused, InvalidInput, NotAllowed, NotFound
from kamflow.models import Account, HistoryKind, Person
from kamflow.records import history, permissions
from kamflow.records.cap import owner_cap
from kamflow.records.people import active_person, override_refused, require_account_right
from kamflow.text import MAX_NAME, clean_text, did_you_mean
from kamflow.verdict import Verdict, overridden


def new_account(
    session: Session,
    account: Account,
    *,
    actor: str,
    now: datetime,
    note: str,
    verdicts: list[Verdict],
) -> Account:
    """Write a new account and the history row of its creation (in the caller's transaction)."""
    session.add(account)
    session.flush()
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.CREATED,
        to_stage=account.stage,
        note=note,
        verdicts=verdicts,
    )
    return account


def find_by_name(session: Session, name: str) -> Account | None:
    """The account named ``name``, in any case (one probe of the name index)."""
    return session.exec(
        select(Account).where(func.lower(Account.name) == name.strip().lower())
    ).first()


def find_account(session: Session, ref: str) -> Account:
    """The account named ``ref`` (any case) or with id ``ref``."""
    account = find_by_name(session, ref)
    if account is None and ref.strip().isdigit():
        account = session.get(Account, int(ref))
    if account is None:
        raise no_account(session, ref)
    return account


def no_account(session: Session, ref: str) -> NotFound:
    """The error for an account that does not exist, naming the closest existing names."""
    suggestion = did_you_mean(ref, near_names(session, ref))
    if suggestion is None:
        return NotFound(f"no account {ref!r} (see: kamflow account list)")
    return NotFound(f"no account {ref!r}; {suggestion}")


def near_names(session: Session, ref: str) -> list[str]:
    """Names of accounts that ``ref`` may be a misspelling of, read through the index on
    ``lower(name)``, never more than NEAR_NAMES from each place of the index however many
    accounts there are: the names just before and just after ``ref`` in alphabetical order (a
    slip after the first letters keeps a name among its neighbours), the same around ``ref``
    without its first word (a word too many in front), and the first names that share its first
    two letters. A slip in the first letters of a name among very many alike can escape."""
    key = " ".join(ref.split()).lower()
    lowered = sa.func.lower(ACCOUNT.c.name)
    names = sa.select(ACCOUNT.c.name)
    parts = [names.where(lowered >= key[:2]).order_by(lowered)]
    for centre in {key, key.partition(" ")[2] or key}:
        parts.append(names.where(lowered < centre).order_by(lowered.desc()))
        parts.append(names.where(lowered >= centre).order_by(lowered))
    # Each part in a subquery of its own, so that its ORDER BY and LIMIT stay its own.
    union = sa.union_all(*(sa.select(part.limit(defaults.NEAR_NAMES).subquery()) for part in parts))
    return list(session.connection().execute(union).scalars())


@dataclass(frozen=True)
class AccountState:
    """An account's row as one indexed lookup read it, for a transition: what the guards judge
    and what the compare-and-set update checks (stage and version)."""

    id: int
    name: str
    owner_id: int
    workflow: str
    stage: str
    stage_entered_at: datetime
    version: int


ACCOUNT = Account.__table__  # type: ignore[attr-defined]
_STATE = (
    ACCOUNT.c.id,
    ACCOUNT.c.name,
    ACCOUNT.c.owner_id,
    ACCOUNT.c.workflow,
    ACCOUNT.c.stage,
    ACCOUNT.c.stage_entered_at,
    ACCOUNT.c.version,
)


#: Built once (only the values bound to them change): the lookups a transition starts with.
_BY_NAME = sa.select(*_STATE).where(sa.func.lower(ACCOUNT.c.name) == sa.bindparam("name"))
_BY_ID = sa.select(*_STATE).where(ACCOUNT.c.id == sa.bindparam("id"))


#: The row again, locked until the transaction ends (PostgreSQL; SQLite drops FOR UPDATE, its
#: BEGIN IMMEDIATE holds every other writer off anyway).
_LOCK = _BY_ID.with_for_update()


def lock_account(session: Session, account: AccountState) -> AccountState:
    """``account`` as it is now, its row locked until the transaction ends: another transaction
    that locks or changes the row waits for this one to commit or roll back."""
    row = session.connection().execute(_LOCK, {"id": account.id}).first()
    if row is None:
        raise NotFound(f"no account {account.name!r} (see: kamflow account list)")
    return AccountState(*row)


def account_state(session: Session, ref: str) -> AccountState:
    """The account named ``ref`` (any case) or with id ``ref``, as plain columns: one probe of
    the name index (or of the key), no table object built."""
    connection = session.connection()
    row = connection.execute(_BY_NAME, {"name": ref.strip().lower()}).first()
    if row is None and ref.strip().isdigit():
        row = connection.execute(_BY_ID, {"id": int(ref)}).first()
    if row is None:
        raise no_account(session, ref)
    return AccountState(*row)


def editable(
    session: Session,
    ref: str,
    actor: str,
    right: Right = Right.PLAN,
    *,
    doer_id: int | None = None,
) -> tuple[Account, Workflow]:
    """An account whose plan may still change (not disqualified or retired), and its workflow;
    NotAllowed unless ``actor`` holds ``right`` on it (by default, the plan's: its owner, its
    account team and leaders) or is ``doer_id`` (an action's owner, reporting it done)."""
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    permissions.require(
        session,
        right,
        actor,
        doing=f"{permissions.DOING[right]} {account.name}",
        workflow=definition.name,
        owner_id=account.owner_id,
        account_id=account.id,
        doer_id=doer_id,
    )
    if definition.is_exit(account.stage):
        raise InvalidInput(
            f"{account.name} is {definition.title_of(account.stage).lower()}: its plan is closed"
        )
    return account, definition


def touch(session: Session, account: Account) -> None:
    """Count a change to the account's plan, so a transition that read the old plan conflicts."""
    session.execute(
        sa.update(Account).where(col(Account.id) == account.id).values(version=Account.version + 1)
    )


def days_between(start: datetime, end: datetime) -> int:
    """Whole days from ``start`` to ``end``, never fewer than zero."""
    return max(0, (end - start).days)


def set_workflow(
    session: Session, ref: str, workflow: str, *, actor: str, now: datetime
) -> Account:
    """Move an account to another workflow, keeping its stage, data and history."""
    account = find_account(session, ref)
    current, target = get_workflow(account.workflow), get_workflow(workflow)
    if target.name == current.name:
        raise InvalidInput(f"{account.name} already follows workflow {target.name}")
    if account.stage not in target.places:
        raise InvalidInput(
            f"workflow {target.name} has no stage {account.stage!r}: "
            f"{account.name} cannot keep its place there"
        )
    require_account_right(session, account, actor, "change the workflow of")
    session.execute(
        sa.update(Account)
        .where(col(Account.id) == account.id)
        .values(workflow=target.name, version=Account.version + 1)
    )
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.WORKFLOW,
        note=f"workflow {current.name} -> {target.name}",
    )
    account.workflow = target.name
    return account


def rename(
    session: Session, ref: str, new_name: str, *, actor: str, now: datetime
) -> tuple[str, str]:
    """Give an account another name (the owner or a leader); names are unique in any case, so a
    name another account has is refused. The name it had, and the one it has."""
    account = find_account(session, ref)
    name = clean_text(new_name, "an account's name", max_length=MAX_NAME)
    if name.isdigit():
        raise InvalidInput(f"{name!r} would be taken for an account id: give it a name")
    if name == account.name:
        raise InvalidInput(f"{account.name} is already called that")
    taken = find_by_name(session, name)
    if taken is not None and taken.id != account.id:
        raise InvalidInput(f"there is already an account named {taken.name!r}")
    require_account_right(session, account, actor, "rename")
    old = account.name
    try:
        with session.begin_nested():
            session.execute(
                sa.update(Account).where(col(Account.id) == account.id).values(name=name)
            )
    except sa.exc.IntegrityError:
        # Another transaction took the name since it was looked up.
        raise Conflict(f"there is already an account named {name!r}") from None
    history.record(
        session, account, actor=actor, at=now, kind=HistoryKind.NAME, note=f"{old} -> {name}"
    )
    account.name = name
    return old, name


@dataclass(frozen=True)
class Reassignment:
    """An account passed to another owner: its name, who owned it, who owns it now, and the
    cap's verdicts on the change (none for an account that is not a key account)."""

    account: str
    previous: str
    owner: str
    verdicts: list[Verdict]


def reassign(
    session: Session,
    ref: str,
    email: str,
    *,
    override: str | None = None,
    actor: str,
    now: datetime,
) -> Reassignment:
    """Pass an account to another (active) owner (the owner or a leader). A key account counts
    against the new owner's cap as a promotion does, counted under the cap's lock; a leader may
    go over it with ``override``, a reason."""
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    person = active_person(session, email, "own accounts")
    if person.id == account.owner_id:
        raise InvalidInput(f"{person.email} already owns {account.name}")
    require_account_right(session, account, actor, "reassign")
    previous = session.get(Person, account.owner_id)
    verdicts: list[Verdict] = []
    if account.stage in definition.stage_names:
        refusal = override_refused(session, actor, override)
        if refusal is not None:
            raise NotAllowed(refusal.message)
        verdict = owner_cap(session, person, joining=1, override=override, actor=actor)
        if not verdict.ok:
            raise GuardRefused(
                f"{account.name} cannot pass to {person.email}: {verdict.message}", []
            )
        verdicts.append(verdict)
    elif override is not None:
        raise InvalidInput(
            f"{account.name} is not a key account ({definition.title_of(account.stage).lower()}):"
            " there is no cap to override"
        )
    # Compare-and-set: a transition judged the old owner's rights on the version it read.
    changed = (
        session.connection()
        .execute(
            sa.update(Account)
            .where(col(Account.id) == account.id, col(Account.version) == account.version)
            .values(owner_id=person.id, version=Account.version + 1)
        )
        .rowcount
    )
    if changed != 1:
        raise Conflict(f"{account.name} was changed meanwhile; nothing was written: try again")
    was = previous.email if previous else f"person #{account.owner_id}"
    note = f"owner {was} -> {person.email}"
    if overridden(verdicts):
        note += f"; cap override: {override}"
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.OWNER,
        note=note,
        verdicts=verdicts,
    )
    return Reassignment(account.name, was, person.email, verdicts)
