"""Stage changes: guards, a compare-and-set update and the history row, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow.definitions.workflow import (
    LEADER,
    OWNER,
    ROLE_PREFIX,
    TransitionSpec,
    Workflow,
    get_workflow,
)
from kamflow.errors import Conflict, GuardRefused, InvalidInput
from kamflow.guards import REGISTRY, AccountLike, GuardContext, Verdict, overridden
from kamflow.models import Account, HistoryKind, Person, RoleAssignment
from kamflow.records import history
from kamflow.records.accounts import days_between, find_account
from kamflow.records.facts import Facts
from kamflow.records.people import find_person
from kamflow.text import clean_text, one_line, shell_quote


@dataclass
class Outcome:
    """What a transition did (or, on a dry run, would do)."""

    account: str
    transition: str
    from_stage: str
    to_stage: str
    verdicts: list[Verdict]
    dry_run: bool = False

    @property
    def allowed(self) -> bool:
        return all(verdict.ok for verdict in self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "transition": self.transition,
            "from": self.from_stage,
            "to": self.to_stage,
            "allowed": self.allowed,
            "dry_run": self.dry_run,
            "verdicts": [verdict.as_dict() for verdict in self.verdicts],
        }


def _who_may(
    session: Session, account: AccountLike, transition: TransitionSpec, actor: str
) -> Verdict | None:
    """The verdict on the actor for a restricted transition; None when anyone may fire it."""
    if not transition.allowed:
        return None
    person = find_person(session, actor)
    if person is not None:
        if OWNER in transition.allowed and person.id == account.owner_id:
            return Verdict("allowed", True, f"{person.email} owns the account")
        if LEADER in transition.allowed and person.is_leader:
            return Verdict("allowed", True, f"{person.email} is a leader")
        roles = [
            a.removeprefix(ROLE_PREFIX) for a in transition.allowed if a.startswith(ROLE_PREFIX)
        ]
        if roles:
            held = session.exec(
                select(RoleAssignment.role).where(
                    RoleAssignment.account_id == account.id,
                    RoleAssignment.person_id == person.id,
                    col(RoleAssignment.role).in_(roles),
                )
            ).first()
            if held:
                return Verdict("allowed", True, f"{person.email} holds {held}")
    who = " or ".join(
        "the owner"
        if a == OWNER
        else "a leader"
        if a == LEADER
        else f"the {a.removeprefix(ROLE_PREFIX)}"
        for a in transition.allowed
    )
    known = "" if person is not None else " (not a known person)"
    return Verdict(
        "allowed", False, f"only {who} may {transition.name} {account.name}; you are {actor}{known}"
    )


def evaluate(
    session: Session,
    account: AccountLike,
    definition: Workflow,
    transition: TransitionSpec,
    *,
    actor: str,
    now: datetime,
    override: str | None = None,
    facts: Facts | None = None,
) -> list[Verdict]:
    """Every verdict on ``transition``: who may fire it, then each guard, all of them evaluated.

    ``facts``: what the guards read, when it is already loaded for a batch of accounts.
    """
    verdicts = []
    restriction = _who_may(session, account, transition, actor)
    if restriction is not None:
        verdicts.append(restriction)
    context = GuardContext(
        session, account, definition, now, actor=actor, override=override, facts=facts
    )
    for bound in definition.bound_guards(transition):
        verdicts.append(REGISTRY[bound.name].evaluate(context, bound.params))
    return verdicts


def choose_move(account: Account, definition: Workflow, to: str | None) -> TransitionSpec:
    """The move `advance` means: the first listed from the stage, or the one reaching ``to``."""
    current = account.stage
    title = definition.title_of
    if definition.is_exit(current):
        raise InvalidInput(f"{account.name} is {title(current).lower()}: it no longer moves")
    if definition.is_intake(current):
        raise InvalidInput(
            f"{account.name} is a {title(current).lower()}, not yet a key account: "
            f"promote it with kamflow account promote {shell_quote(account.name)}"
        )
    moves = definition.moves_from(current)
    if to is None:
        if not moves:
            raise InvalidInput(
                f"{account.name} is in {title(current)}, from which nothing advances"
            )
        return moves[0]
    target = definition.resolve_stage(to)
    if target == current:
        raise InvalidInput(f"{account.name} is already in {title(current)}")
    for move in moves:
        if move.dest == target:
            return move
    possible = ", ".join(title(m.dest) for m in moves) or "nowhere"
    raise InvalidInput(
        f"{account.name} is in {title(current)}: it cannot move to {title(target)} from there "
        f"(it can move to {possible})"
    )


def _named_transition(account: Account, definition: Workflow, name: str) -> TransitionSpec:
    if definition.is_exit(account.stage):
        raise InvalidInput(
            f"{account.name} is already {definition.title_of(account.stage).lower()}"
        )
    for transition in definition.transitions_from(account.stage):
        if transition.name == name:
            return transition
    raise InvalidInput(
        f"workflow {definition.name} has no {name} from {definition.title_of(account.stage)}"
    )


def advance(
    session: Session,
    ref: str,
    *,
    to: str | None = None,
    note: str = "",
    actor: str,
    now: datetime,
    dry_run: bool = False,
    before_write: Callable[[], None] | None = None,
) -> Outcome:
    """Move an account to its next stage (or to ``to``) if every guard allows it.

    ``before_write`` runs after the guards and before the compare-and-set update; tests use it to
    hold two racing transitions at the same point.
    """
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    transition = choose_move(account, definition, to)
    return _perform(
        session,
        account,
        definition,
        transition,
        note=note,
        actor=actor,
        now=now,
        dry_run=dry_run,
        before_write=before_write,
    )


def close(
    session: Session,
    ref: str,
    transition_name: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> Outcome:
    """Disqualify or retire an account (any exit transition that needs a reason)."""
    reason = clean_text(reason, "--reason")
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    transition = _named_transition(account, definition, transition_name)
    return _perform(
        session, account, definition, transition, note=reason, actor=actor, now=now, dry_run=dry_run
    )


def promote(
    session: Session,
    ref: str,
    *,
    override: str | None = None,
    actor: str,
    now: datetime,
    dry_run: bool = False,
    before_write: Callable[[], None] | None = None,
) -> Outcome:
    """Make a scored candidate a key account, within the cap (or over it by a leader's override).

    ``before_write`` runs after the guards, before the write (for tests that race two promotions).
    """
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    if not definition.is_intake(account.stage):
        raise InvalidInput(
            f"{account.name} is in {definition.title_of(account.stage)}, not a candidate"
        )
    transition = _named_transition(account, definition, "promote")
    return _perform(
        session,
        account,
        definition,
        transition,
        note="",
        actor=actor,
        now=now,
        dry_run=dry_run,
        override=override,
        before_write=before_write,
    )


def swap(
    session: Session,
    out_ref: str,
    in_ref: str,
    *,
    actor: str,
    now: datetime,
) -> tuple[Outcome, Outcome]:
    """Retire one key account and promote a candidate in its place, in one transaction."""
    leaving = find_account(session, out_ref)
    coming = find_account(session, in_ref)
    if leaving.id == coming.id:
        raise InvalidInput("a swap needs two different accounts")
    out_workflow = get_workflow(leaving.workflow)
    if leaving.stage not in out_workflow.stage_names:
        where = out_workflow.title_of(leaving.stage).lower()
        raise InvalidInput(f"{leaving.name} is not a key account ({where}): nothing to swap out")
    retired = close(
        session, out_ref, "retire", reason=f"swapped out for {coming.name}", actor=actor, now=now
    )
    promoted = promote(session, in_ref, actor=actor, now=now)
    return retired, promoted


def _perform(
    session: Session,
    account: Account,
    definition: Workflow,
    transition: TransitionSpec,
    *,
    note: str,
    actor: str,
    now: datetime,
    dry_run: bool,
    before_write: Callable[[], None] | None = None,
    override: str | None = None,
) -> Outcome:
    note = one_line(note)
    # What the guards judge is the account as read now; the write succeeds only if it still is.
    stage, version = account.stage, account.version
    if transition.reason_required and not note:
        raise InvalidInput(f"{transition.name} needs a reason (--reason TEXT)")
    verdicts = evaluate(
        session, account, definition, transition, actor=actor, now=now, override=override
    )
    outcome = Outcome(
        account=account.name,
        transition=transition.name,
        from_stage=stage,
        to_stage=transition.dest,
        verdicts=verdicts,
        dry_run=dry_run,
    )
    if overridden(verdicts):
        note = "; ".join(filter(None, [note, f"cap override: {override}"]))
    unmet = [verdict for verdict in verdicts if not verdict.ok]
    if unmet and not dry_run:
        raise GuardRefused(
            f"{account.name} cannot {transition.name} from {definition.title_of(stage)} "
            f"to {definition.title_of(transition.dest)}; still missing:",
            unmet,
        )
    if dry_run:
        return outcome
    if before_write is not None:
        before_write()
    new_stage = definition.fire(transition, stage)
    changed: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(Account)
        .where(
            col(Account.id) == account.id,
            col(Account.stage) == stage,
            col(Account.version) == version,
        )
        .values(stage=new_stage, stage_entered_at=now, version=version + 1)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise Conflict(f"{account.name} was changed meanwhile; nothing was written: try again")
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.TRANSITION,
        transition=transition.name,
        from_stage=stage,
        to_stage=new_stage,
        note=note,
        verdicts=verdicts,
    )
    return outcome


def why(session: Session, ref: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """Where the account stands and what each move from its stage still needs."""
    account = find_account(session, ref)
    definition = get_workflow(account.workflow)
    owner = session.get(Person, account.owner_id)
    moves = [] if definition.is_exit(account.stage) else definition.moves_from(account.stage)
    stage = definition.stage(account.stage)
    return {
        "account": account.name,
        "owner": owner.email if owner else None,
        "stage": account.stage,
        "stage_title": definition.title_of(account.stage),
        "days_in_stage": days_between(account.stage_entered_at, now),
        "limit_days": stage.limit_days if stage else None,
        "moves": [
            {
                "transition": move.name,
                "to": move.dest,
                "to_title": definition.title_of(move.dest),
                "default": index == 0,
                "verdicts": [
                    v.as_dict()
                    for v in evaluate(session, account, definition, move, actor=actor, now=now)
                ],
            }
            for index, move in enumerate(moves)
        ],
    }
