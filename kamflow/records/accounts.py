"""Key accounts: creating them, finding them by name or id, and showing where they stand."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow import defaults
from kamflow.definitions.workflow import Workflow, available, get_workflow, workflow_names_in_use
from kamflow.errors import GuardRefused, InvalidInput, KamflowError, NotFound
from kamflow.guards import REGISTRY, GuardContext, NoParams, Verdict, overridden
from kamflow.models import Account, HistoryKind, Person
from kamflow.records import history
from kamflow.records.people import get_person
from kamflow.reports.listing import Listing, Places, census, place_in, rows_of, text_widths
from kamflow.text import MAX_NAME, clean_text


def add_account(
    session: Session,
    name: str,
    *,
    owner: str,
    workflow: str = defaults.WORKFLOW,
    kind: str = "existing",
    candidate: bool = False,
    override: str | None = None,
    actor: str,
    now: datetime,
) -> Account:
    """Create a candidate, or a key account at its workflow's first stage (within the cap)."""
    account, _ = create_account(
        session,
        name,
        owner=owner,
        workflow=workflow,
        kind=kind,
        candidate=candidate,
        override=override,
        actor=actor,
        now=now,
    )
    return account


def create_account(
    session: Session,
    name: str,
    *,
    owner: str,
    workflow: str = defaults.WORKFLOW,
    kind: str = "existing",
    candidate: bool = False,
    override: str | None = None,
    actor: str,
    now: datetime,
) -> tuple[Account, list[Verdict]]:
    """add_account(), also returning the cap's verdict (a warning near the cap, say)."""
    name = clean_text(name, "an account's name", max_length=MAX_NAME)
    if name.isdigit():
        raise InvalidInput(f"{name!r} would be taken for an account id: give it a name")
    if kind not in defaults.ACCOUNT_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(defaults.ACCOUNT_KINDS)}, not {kind!r}")
    definition = get_workflow(workflow)
    person = get_person(session, owner)
    if _by_name(session, name) is not None:
        raise InvalidInput(f"there is already an account named {name!r}")
    if candidate and not definition.intake_names:
        raise InvalidInput(f"workflow {definition.name} has no place for candidates")
    if candidate and override is not None:
        raise InvalidInput("a candidate is not a key account yet: there is no cap to override")
    account = Account(
        name=name,
        owner_id=person.id,  # type: ignore[arg-type]
        workflow=definition.name,
        kind=kind,
        stage=definition.intake_names[0] if candidate else definition.initial,
        stage_entered_at=now,
        created_at=now,
    )
    verdicts = (
        [] if candidate else [_cap_verdict(session, account, definition, actor, now, override)]
    )
    note = f"owner {person.email}, workflow {definition.name}, {kind} account"
    if candidate:
        note += ", a candidate"
    if overridden(verdicts):
        note += f"; cap override: {override}"
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
    return account, verdicts


def _cap_verdict(
    session: Session,
    account: Account,
    definition: Workflow,
    actor: str,
    now: datetime,
    override: str | None,
) -> Verdict:
    """A new key account counts against the cap like a promotion; refused when over it."""
    context = GuardContext(session, account, definition, now, actor=actor, override=override)
    verdict = REGISTRY["within_cap"].evaluate(context, NoParams())
    if not verdict.ok:
        raise GuardRefused(f"{account.name} cannot be added as a key account:", [verdict])
    return verdict


def _by_name(session: Session, name: str) -> Account | None:
    return session.exec(
        select(Account).where(func.lower(Account.name) == name.strip().lower())
    ).first()


def find_account(session: Session, ref: str) -> Account:
    """The account named ``ref`` (any case) or with id ``ref``."""
    account = _by_name(session, ref)
    if account is None and ref.strip().isdigit():
        account = session.get(Account, int(ref))
    if account is None:
        raise NotFound(f"no account {ref!r} (see: kamflow account list)")
    return account


def editable(session: Session, ref: str) -> tuple[Account, Workflow]:
    """An account whose plan may still change (not disqualified or retired), and its workflow."""
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
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
    return max(0, (end - start).days)


def normalise_stage(text: str) -> str:
    """A stage named in any common spelling (``Action plan``, ``action-plan``) as a stage name."""
    wanted = text.strip().lower().replace("-", "_").replace(" ", "_")
    for name in sorted(available()):
        try:
            return get_workflow(name).resolve_stage(wanted)
        except KamflowError:  # not in this workflow, or its file does not load
            continue
    raise NotFound(f"no stage {text!r} in any workflow")


def summary(account: Account, owner: Person, definition: Workflow, now: datetime) -> dict[str, Any]:
    """The one-line facts about an account, as shown by `account list`."""
    return place_in(definition, account.stage).summary(account, owner.email, now)


def list_accounts(session: Session, *, stage: str | None, now: datetime) -> Listing:
    """Every account (of ``stage`` if given) by name, streamed, with its one-line facts."""
    places = Places(get_workflow(name) for name in workflow_names_in_use(session))
    which: Any = sa.true() if stage is None else col(Account.stage) == normalise_stage(stage)
    statement = (
        sa.select(
            col(Account.id),
            col(Account.name),
            col(Account.workflow),
            col(Account.kind),
            col(Account.stage),
            col(Account.stage_entered_at),
            col(Person.email),
        )
        .join(Person, col(Account.owner_id) == col(Person.id))
        .where(which)
        .order_by(col(Account.name))
    )
    widths = text_widths(session, census(session, places, now, which), now, which)
    widths["id"] = len(str(session.execute(sa.select(sa.func.max(col(Account.id)))).scalar() or 0))
    rows = (places.summary(row, row.email, now) for row in rows_of(session, statement))
    return Listing(rows, widths)
