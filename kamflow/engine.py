"""Stage changes: the workflow's transitions Machine decides each move, in one transaction.

The engine reads the account and hands the workflow's one shared Machine a `Move`: a small object
that carries this account and this call for a moment (no table row is ever a Machine model, and
there is no Machine per account). The Machine knows which moves exist from a stage and refuses
any other; its callbacks on the move do the work:

- ``judge`` (prepare) gives every verdict: who may act, then each guard of the transition, all of
  them, so that a refusal lists everything still missing;
- ``allowed`` (the condition) lets the move happen only if every verdict is met;
- ``write`` (after the Machine moved the stage) makes the compare-and-set update of the account
  and appends the history row, in the caller's transaction.

Who may act, a leader's authority to override the key-account cap, the lock that keeps two
promotions from taking the last place and the row lock that makes two moves of one account take
turns are the engine's; guards only judge what they are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session
from transitions import MachineError

from kamflow import defaults
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar, counting
from kamflow.definitions.discovery import get_workflow
from kamflow.definitions.guardspecs import WITHIN_CAP, NoParams
from kamflow.definitions.spec import Right, TransitionSpec
from kamflow.definitions.workflow import Workflow
from kamflow.errors import Conflict, GuardRefused, InvalidInput, NotAllowed
from kamflow.guards import REGISTRY, AccountLike, CapFacts, GuardContext
from kamflow.models import Account, AccountKind, HistoryKind, Person
from kamflow.records import history, permissions
from kamflow.records.accounts import (
    ACCOUNT,
    AccountState,
    account_state,
    days_between,
    find_by_name,
    lock_account,
    new_account,
)
from kamflow.records.cap import count_key_accounts, ranked
from kamflow.records.cap import lock as lock_cap
from kamflow.records.facts import Facts
from kamflow.records.people import active_person, override_refused
from kamflow.text import MAX_NAME, clean_text, one_line, shell_quote
from kamflow.verdict import Verdict, overridden

#: The compare-and-set update of a move, built once: it changes the row only if the account is
#: still in the stage, at the version, that the guards judged.
_MOVE = (
    ACCOUNT.update()
    .where(
        ACCOUNT.c.id == sa.bindparam("account"),
        ACCOUNT.c.stage == sa.bindparam("old_stage"),
        ACCOUNT.c.version == sa.bindparam("old_version"),
    )
    .values(
        stage=sa.bindparam("stage"),
        stage_entered_at=sa.bindparam("stage_entered_at"),
        version=sa.bindparam("version"),
    )
)


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
        """Whether every verdict is met: the move happened (on a dry run, it would have)."""
        return all(verdict.ok for verdict in self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as plain data, as ``--json`` prints it."""
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
    session: Session,
    account: AccountLike,
    definition: Workflow,
    transition: TransitionSpec,
    actor: str,
    right: Right,
) -> Verdict | None:
    """The verdict on the actor: the transition's own ``allowed:``, else who holds ``right``
    (advance: the workflow's rule, else portfolio.yaml's, else the owner, the account team
    and leaders). A rule that is not the transition's own is listed only when it refuses."""
    subjects = transition.allowed or permissions.rule(right, definition.name)
    verdict = permissions.judge(
        session,
        subjects,
        actor,
        doing=f"{transition.name} {account.name}",
        owner_id=account.owner_id,
        account_id=account.id,
    )
    return verdict if transition.allowed or not verdict.ok else None


def cap_facts(
    session: Session,
    account: AccountLike,
    definition: Workflow,
    *,
    override: str | None,
    lock: bool,
) -> CapFacts:
    """Where the cap stands for ``account``; with ``lock``, counted under a lock held until the
    transaction ends, so two promotions at once cannot both take the last place (SQLite lets one
    writer in at a time anyway)."""
    if lock:
        lock_cap(session)
    is_key = account.id is not None and account.stage in definition.stage_names
    owner = session.get(Person, account.owner_id)
    return CapFacts(
        everyone=count_key_accounts(session) - is_key,
        owned=count_key_accounts(session, owner_id=account.owner_id) - is_key,
        owner=owner.email if owner else "the owner",
        ranked=lambda owner_id: ranked(session, owner_id, account.id),
        override=override,
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
    lock: bool = False,
    right: Right = Right.ADVANCE,
    who: bool = True,
) -> list[Verdict]:
    """Every verdict on ``transition``: who may fire it (the transition's ``allowed:``, else who
    holds ``right``), then each guard, all of them evaluated.

    ``facts``: what the guards read, when it is already loaded for a batch of accounts; ``lock``:
    count the key-account cap under its lock (only a move about to be written takes it);
    ``who``: False to judge only what the move needs, not who may make it (a reminder, for a
    batch of accounts, without a query per account).
    """
    bound = definition.bound_guards(transition)
    verdicts = [
        found
        for found in (
            _who_may(session, account, definition, transition, actor, right) if who else None,
            override_refused(session, actor, override)
            if any(b.name == WITHIN_CAP for b in bound)
            else None,
        )
        if found is not None
    ]
    cap = None
    if any(b.name == WITHIN_CAP for b in bound):
        authorised = override if not verdicts or verdicts[-1].ok else None
        cap = cap_facts(session, account, definition, override=authorised, lock=lock)
    known = facts or Facts(session, [account.id] if account.id is not None else [])
    context = GuardContext(account, definition, now, known, actor=actor, cap=cap)
    verdicts += [REGISTRY[b.name].evaluate(context, b.params) for b in bound]
    return verdicts


class Move:
    """One move of one account, as the workflow's Machine carries it out.

    ``stage`` is what the Machine reads and sets; the rest is what its callbacks need.
    """

    def __init__(
        self,
        session: Session,
        account: AccountState,
        definition: Workflow,
        *,
        note: str,
        actor: str,
        now: datetime,
        dry_run: bool,
        override: str | None = None,
        before_write: Callable[[], None] | None = None,
        right: Right = Right.ADVANCE,
    ) -> None:
        self.session = session
        self.right = right
        self.account = account
        self.definition = definition
        self.note = one_line(note)
        self.actor = actor
        self.now = now
        self.dry_run = dry_run
        self.override = override
        self.before_write = before_write
        self.stage = account.stage
        #: What the guards judge is the account as read now; the write succeeds only if it
        #: still is.
        self.from_stage, self.version = account.stage, account.version
        self.transition: TransitionSpec | None = None
        self.verdicts: list[Verdict] = []
        self.written = False

    # --- the Machine's callbacks (named in kamflow.definitions.workflow) -------------------

    def judge(self, event: Any) -> None:
        """prepare: find the transition the Machine chose and give every verdict on it."""
        transition = self.definition.transition_spec(
            event.event.name, event.transition.source, event.transition.dest
        )
        self.transition = transition
        if transition.reason_required and not self.note:
            raise InvalidInput(f"{transition.name} needs a reason (--reason TEXT)")
        self.verdicts = evaluate(
            self.session,
            self.account,
            self.definition,
            transition,
            actor=self.actor,
            now=self.now,
            override=self.override,
            lock=not self.dry_run,
            right=self.right,
        )
        # Who may is a permission, not a missing item: refused on its own, before any guard.
        for verdict in self.verdicts:
            if verdict.guard == permissions.ALLOWED and not verdict.ok:
                raise NotAllowed(verdict.message)

    def allowed(self, _event: Any) -> bool:
        """condition: the move happens only when it is for real and every verdict is met."""
        return not self.dry_run and all(verdict.ok for verdict in self.verdicts)

    def write(self, _event: Any) -> None:
        """after: the Machine set ``stage``; write it (compare-and-set) and the history row."""
        assert self.transition is not None
        if self.before_write is not None:
            self.before_write()
        account = self.account
        changed = (
            self.session.connection()
            .execute(
                _MOVE,
                {
                    "account": account.id,
                    "old_stage": self.from_stage,
                    "old_version": self.version,
                    "stage": self.stage,
                    "stage_entered_at": self.now,
                    "version": self.version + 1,
                },
            )
            .rowcount
        )
        if changed != 1:
            raise Conflict(f"{account.name} was changed meanwhile; nothing was written: try again")
        note = self.note
        if overridden(self.verdicts):
            # A reason that is also the override's (reinstate --override) is written once.
            extra = "cap overridden" if self.override == note else f"cap override: {self.override}"
            note = "; ".join(filter(None, [note, extra]))
        history.record(
            self.session,
            account,
            actor=self.actor,
            at=self.now,
            kind=HistoryKind.TRANSITION,
            transition=self.transition.name,
            from_stage=self.from_stage,
            to_stage=self.stage,
            note=note,
            verdicts=self.verdicts,
        )
        self.written = True

    # --- firing -------------------------------------------------------------------------------

    def fire(self, trigger: str) -> Outcome:
        """Ask the Machine to fire ``trigger`` from the account's stage; what came of it."""
        definition = self.definition
        try:
            definition.machine.events[trigger].trigger(self)
        except (MachineError, KeyError):
            raise InvalidInput(
                f"workflow {definition.name} has no {trigger} from "
                f"{definition.title_of(self.from_stage)}"
            ) from None
        if self.transition is None:
            raise RuntimeError(f"the Machine of workflow {definition.name} judged no move")
        outcome = Outcome(
            account=self.account.name,
            transition=self.transition.name,
            from_stage=self.from_stage,
            to_stage=self.transition.dest,
            verdicts=self.verdicts,
            dry_run=self.dry_run,
        )
        unmet = [verdict for verdict in self.verdicts if not verdict.ok]
        if unmet and not self.dry_run:
            raise GuardRefused(
                f"{self.account.name} cannot {self.transition.name} from "
                f"{definition.title_of(self.from_stage)} to "
                f"{definition.title_of(self.transition.dest)}; still missing:",
                unmet,
            )
        if not self.dry_run and not self.written:
            raise RuntimeError(f"the Machine of workflow {definition.name} made no move")
        return outcome


def hold(
    session: Session, account: AccountState, definition: Workflow, dest: str | None = None
) -> AccountState:
    """The account as it is now, its row locked until the transaction ends, before any guard
    reads: two moves of one account take turns, and a plan edited meanwhile waits instead of
    failing them both. ``account`` is what the caller read and chose its move from; if another
    move committed while this one waited for the lock, the move asked for (from the stage the
    account was in) is refused, even where a move from the new stage would be allowed.

    Only PostgreSQL needs the lock: SQLite begins every write transaction IMMEDIATE, so no other
    writer has committed since the caller's first read.
    """
    if session.get_bind().dialect.name != "postgresql":
        return account
    held = lock_account(session, account)
    if (held.stage, held.workflow) == (account.stage, account.workflow):
        return held
    name, title = account.name, definition.title_of
    if held.workflow != account.workflow:
        raise Conflict(
            f"{name} was moved to workflow {held.workflow} meanwhile; nothing was written: "
            "try again"
        )
    if held.stage == dest:
        raise Conflict(
            f"{name} is already in {title(dest)}: it was moved there meanwhile; nothing was written"
        )
    raise Conflict(
        f"{name} moved from {title(account.stage)} to {title(held.stage)} meanwhile; nothing "
        f"was written (see: kamflow why {shell_quote(name)})"
    )


def choose_move(account: AccountState, definition: Workflow, to: str | None) -> TransitionSpec:
    """The move `advance` means: the first the Machine knows from the stage (in the file's
    order), or the one reaching ``to``."""
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
    account = account_state(session, ref)
    definition = get_workflow(account.workflow)
    transition = choose_move(account, definition, to)
    if not dry_run:
        account = hold(session, account, definition, transition.dest)
    move = Move(
        session,
        account,
        definition,
        note=note,
        actor=actor,
        now=now,
        dry_run=dry_run,
        before_write=before_write,
    )
    return move.fire(transition.name)


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
    account = account_state(session, ref)
    definition = get_workflow(account.workflow)
    if definition.is_exit(account.stage):
        raise InvalidInput(
            f"{account.name} is already {definition.title_of(account.stage).lower()}"
        )
    if not dry_run:
        account = hold(session, account, definition)
    move = Move(session, account, definition, note=reason, actor=actor, now=now, dry_run=dry_run)
    return move.fire(transition_name)


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
    account = account_state(session, ref)
    definition = get_workflow(account.workflow)
    if not definition.is_intake(account.stage):
        raise InvalidInput(
            f"{account.name} is in {definition.title_of(account.stage)}, not a candidate"
        )
    if not dry_run:
        account = hold(session, account, definition)
    move = Move(
        session,
        account,
        definition,
        note="",
        actor=actor,
        now=now,
        dry_run=dry_run,
        override=override,
        before_write=before_write,
        right=Right.SCORE,
    )
    return move.fire("promote")


def swap(
    session: Session,
    out_ref: str,
    in_ref: str,
    *,
    actor: str,
    now: datetime,
) -> tuple[Outcome, Outcome]:
    """Retire one key account and promote a candidate in its place, in one transaction."""
    leaving = account_state(session, out_ref)
    coming = account_state(session, in_ref)
    if leaving.id == coming.id:
        raise InvalidInput("a swap needs two different accounts")
    out_workflow = get_workflow(leaving.workflow)
    if leaving.stage not in out_workflow.stage_names:
        where = out_workflow.title_of(leaving.stage).lower()
        raise InvalidInput(f"{leaving.name} is not a key account ({where}): nothing to swap out")
    # Both rows locked first, always in the same order: two swaps of one pair cannot deadlock.
    for state in sorted((leaving, coming), key=lambda held: held.id):
        hold(session, state, get_workflow(state.workflow))
    # The cap's lock before the retirement writes history: the history's chain lock is always
    # the last one a transaction takes, or a swap and an account added at once could deadlock.
    lock_cap(session)
    retired = close(
        session, out_ref, "retire", reason=f"swapped out for {coming.name}", actor=actor, now=now
    )
    promoted = promote(session, in_ref, actor=actor, now=now)
    return retired, promoted


#: The transition that brings an account back from an exit (in the shipped workflows: from
#: disqualified or retired to Strategy, by a leader, with a reason, within the owner's cap).
REINSTATE = "reinstate"


def reinstate(
    session: Session,
    ref: str,
    *,
    reason: str,
    override: bool = False,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> Outcome:
    """Bring a disqualified or retired account back into the cycle by its workflow's
    ``reinstate`` transition, which decides where to, who may, and what must hold (the cap, in
    the shipped workflows); ``override``: a leader goes over the cap, for ``reason``.

    Every refusal is one line: the unmet verdicts are joined into it.
    """
    reason = clean_text(reason, "--reason")
    account = account_state(session, ref)
    definition = get_workflow(account.workflow)
    title = definition.title_of(account.stage)
    if not definition.is_exit(account.stage):
        exits = " or ".join(definition.title_of(name).lower() for name in definition.exit_names)
        raise InvalidInput(
            f"{account.name} is in {title}: only an account that left the programme "
            f"({exits or 'in an exit'}) can be reinstated"
        )
    if not any(t.name == REINSTATE for t in definition.transitions_from(account.stage)):
        raise InvalidInput(
            f"workflow {definition.name} has no {REINSTATE} transition from {title}: "
            "add one to the workflow file to bring accounts back"
        )
    owner = session.get(Person, account.owner_id)
    if owner is not None and not owner.active:
        raise InvalidInput(
            f"{account.name}'s owner {owner.email} is deactivated: pass the account to someone "
            f"active first (kamflow account reassign {shell_quote(account.name)} EMAIL)"
        )
    move = Move(
        session,
        account,
        definition,
        note=reason,
        actor=actor,
        now=now,
        dry_run=dry_run,
        override=reason if override else None,
    )
    try:
        return move.fire(REINSTATE)
    except GuardRefused as refusal:
        unmet = "; ".join(verdict.message for verdict in refusal.unmet)
        raise GuardRefused(f"{account.name} cannot be reinstated: {unmet}", []) from None


# --- a new key account counts against the cap -----------------------------------------------------


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
    stage: str | None = None,
    actor: str,
    now: datetime,
) -> tuple[Account, list[Verdict]]:
    """add_account(), also returning the cap's verdicts (a warning near the cap, say).

    ``stage`` puts the new account in a place of its workflow other than the usual one, as an
    import that keeps an exported account's place does: an intake place makes a candidate, a
    stage of the cycle a key account there (within the cap), an exit a closed account (not
    counted against the cap); the history says it was imported into that place.
    """
    name = clean_text(name, "an account's name", max_length=MAX_NAME)
    if name.isdigit():
        raise InvalidInput(f"{name!r} would be taken for an account id: give it a name")
    kinds = [known.value for known in AccountKind]
    if kind not in kinds:
        raise InvalidInput(f"kind must be one of {', '.join(kinds)}, not {kind!r}")
    definition = get_workflow(workflow)
    person = active_person(session, owner, "own accounts")
    permissions.require(
        session,
        Right.ACCOUNT,
        actor,
        doing=f"add an account owned by {person.email}",
        workflow=definition.name,
        owner_id=person.id,
    )
    if find_by_name(session, name) is not None:
        raise InvalidInput(f"there is already an account named {name!r}")
    if candidate and override is not None:
        raise InvalidInput("a candidate is not a key account yet: there is no cap to override")
    place = _first_place(definition, candidate, stage)
    account = Account(
        name=name,
        owner_id=person.id,  # type: ignore[arg-type]
        workflow=definition.name,
        kind=AccountKind(kind),
        stage=place,
        stage_entered_at=now,
        created_at=now,
    )
    # Only a key account counts against the cap: a candidate or a closed account never does.
    key = place in definition.stage_names
    verdicts = _within_cap(session, account, definition, actor, now, override) if key else []
    note = f"owner {person.email}, workflow {definition.name}, {kind} account"
    if definition.is_intake(place):
        note += ", a candidate"
    if stage is not None:
        note += f", imported into {definition.title_of(place)}"
    if overridden(verdicts):
        note += f"; cap override: {override}"
    new_account(session, account, actor=actor, now=now, note=note, verdicts=verdicts)
    return account, verdicts


def _first_place(definition: Workflow, candidate: bool, stage: str | None) -> str:
    """Where a new account starts: ``stage`` when given (a candidate's only in an intake place),
    else the first intake place for a candidate, else the workflow's initial stage."""
    if stage is not None:
        place = definition.resolve_stage(stage)
        if candidate and not definition.is_intake(place):
            raise InvalidInput(
                f"a candidate cannot start in {definition.title_of(place)}: candidates wait in "
                f"{', '.join(map(definition.title_of, definition.intake_names)) or 'no place'}"
            )
        return place
    if candidate and not definition.intake_names:
        raise InvalidInput(f"workflow {definition.name} has no place for candidates")
    return definition.intake_names[0] if candidate else definition.initial


def _within_cap(
    session: Session,
    account: Account,
    definition: Workflow,
    actor: str,
    now: datetime,
    override: str | None,
) -> list[Verdict]:
    """A new key account counts against the cap like a promotion; refused when over it."""
    refusal = override_refused(session, actor, override)
    if refusal is not None and not refusal.ok:
        raise NotAllowed(refusal.message)
    authorised = override
    cap = cap_facts(session, account, definition, override=authorised, lock=True)
    context = GuardContext(account, definition, now, Facts(session, []), actor=actor, cap=cap)
    verdicts = [v for v in (refusal, REGISTRY[WITHIN_CAP].evaluate(context, NoParams())) if v]
    unmet = [verdict for verdict in verdicts if not verdict.ok]
    if unmet:
        raise GuardRefused(f"{account.name} cannot be added as a key account:", unmet)
    return verdicts


def why(
    session: Session,
    ref: str,
    *,
    actor: str,
    now: datetime,
    calendar: WorkCalendar = UTC_CALENDAR,
) -> dict[str, Any]:
    """Where the account stands (days in a stage that counts business days are those of
    ``calendar``) and what each move from its stage still needs."""
    account = account_state(session, ref)
    definition = get_workflow(account.workflow)
    owner = session.get(Person, account.owner_id)
    closed = definition.is_exit(account.stage)
    # From an exit, only a way back (reinstate) leads anywhere, and never by a bare advance.
    moves = (
        definition.transitions_from(account.stage)
        if closed
        else definition.moves_from(account.stage)
    )
    stage = definition.stage(account.stage)
    return {
        "account": account.name,
        "owner": owner.email if owner else None,
        "stage": account.stage,
        "stage_title": definition.title_of(account.stage),
        "days_in_stage": (
            counting(stage, calendar).elapsed(account.stage_entered_at, now)
            if stage
            else days_between(account.stage_entered_at, now)
        ),
        "limit_days": stage.limit_days if stage else None,
        "limit_business_days": stage.limit_business_days if stage else None,
        "moves": [
            {
                "transition": move.name,
                "to": move.dest,
                "to_title": definition.title_of(move.dest),
                "default": index == 0 and not closed,
                "verdicts": [
                    v.as_dict()
                    for v in evaluate(session, account, definition, move, actor=actor, now=now)
                ],
            }
            for index, move in enumerate(moves)
        ],
    }
