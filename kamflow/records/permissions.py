"""Who may do what: a rule per right names who holds it, and a refusal says who does.

A rule is a list of subjects: ``owner`` (of the account), ``team`` (anyone holding a role on
the account), ``role:ROLE`` (the holder of that role), ``leader``, ``admin``. kamflow's defaults
follow the KAM process; portfolio.yaml's ``permissions:`` changes them for the organisation, and
a workflow's ``permissions:`` for the accounts that follow it (plan, advance, score, account).

Every subject is judged for the person a change is made as: an admin acting on someone's behalf
has that person's rights. The login that created the database counts as an admin until it is
linked to a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow.definitions.spec import ADMIN, LEADER, OWNER, ROLE_PREFIX, TEAM, Right
from kamflow.errors import BrokenWorkflow, NotAllowed
from kamflow.models import Person, RoleAssignment
from kamflow.verdict import Verdict

#: The name of the verdict on who may make a move.
ALLOWED = "allowed"

#: kamflow's rules, where neither portfolio.yaml nor the account's workflow gives one.
DEFAULT_RULES: dict[Right, tuple[str, ...]] = {
    Right.PLAN: (OWNER, TEAM, LEADER),
    Right.ADVANCE: (OWNER, TEAM, LEADER),
    Right.SCORE: (OWNER, LEADER),
    Right.ACCOUNT: (OWNER, LEADER, ADMIN),
    Right.OVERRIDE: (LEADER,),
    Right.PEOPLE: (ADMIN,),
    Right.OUTBOX: (ADMIN, LEADER),
}

#: What each right lets one do, as a refusal says it.
DOING: dict[Right, str] = {
    Right.PLAN: "change the plan of",
    Right.ADVANCE: "move",
    Right.SCORE: "score or promote",
    Right.ACCOUNT: "change",
    Right.OVERRIDE: "go over the key-account cap",
    Right.PEOPLE: "add or change people",
    Right.OUTBOX: "send messages again",
}


def rule(right: Right, workflow: str | None = None) -> tuple[str, ...]:
    """Who holds ``right``: the account's workflow's rule, else portfolio.yaml's, else the
    default."""
    from kamflow.definitions.discovery import get_workflow
    from kamflow.definitions.selection import portfolio_config

    if workflow is not None:
        try:
            own = get_workflow(workflow).spec.permissions.get(right)
        except BrokenWorkflow:
            own = None
        if own:
            return tuple(own)
    configured = portfolio_config().permissions.get(right)
    return tuple(configured) if configured else DEFAULT_RULES[right]


def describe(subjects: Sequence[str]) -> str:
    """``owner, leader`` -> ``the owner or a leader``."""
    names = [
        "the owner"
        if who == OWNER
        else "someone on the account team"
        if who == TEAM
        else "a leader"
        if who == LEADER
        else "an admin"
        if who == ADMIN
        else f"the {who.removeprefix(ROLE_PREFIX)}"
        for who in subjects
    ]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def judge(
    session: Session,
    subjects: Sequence[str],
    actor: str,
    *,
    doing: str,
    owner_id: int | None = None,
    account_id: int | None = None,
    doer_id: int | None = None,
) -> Verdict:
    """Whether ``actor`` is one of ``subjects`` for an account owned by ``owner_id`` (None: no
    account, or one not yet created), or is ``doer_id`` (the owner of the action at hand, who
    may always report it done), as a verdict named ``allowed``. A deactivated person holds
    nothing."""
    person = _active(session, actor)
    if ADMIN in subjects and _admin(actor, person):
        return Verdict(ALLOWED, True, f"{actor} is an admin")
    if person is not None:
        if doer_id is not None and person.id == doer_id:
            return Verdict(ALLOWED, True, f"{person.email} owns the action")
        if OWNER in subjects and owner_id is not None and person.id == owner_id:
            return Verdict(ALLOWED, True, f"{person.email} owns the account")
        if LEADER in subjects and person.is_leader:
            return Verdict(ALLOWED, True, f"{person.email} is a leader")
        roles = [who.removeprefix(ROLE_PREFIX) for who in subjects if who.startswith(ROLE_PREFIX)]
        if account_id is not None and (TEAM in subjects or roles):
            held = select(RoleAssignment.role).where(
                RoleAssignment.account_id == account_id, RoleAssignment.person_id == person.id
            )
            if TEAM not in subjects:
                held = held.where(col(RoleAssignment.role).in_(roles))
            role = session.exec(held.limit(1)).first()
            if role:
                return Verdict(ALLOWED, True, f"{person.email} holds {role}")
    return Verdict(
        ALLOWED, False, f"only {describe(subjects)} may {doing}; you are {_who(session, actor)}"
    )


def require(
    session: Session,
    right: Right,
    actor: str,
    *,
    doing: str | None = None,
    workflow: str | None = None,
    owner_id: int | None = None,
    account_id: int | None = None,
    doer_id: int | None = None,
) -> None:
    """NotAllowed unless ``actor`` holds ``right`` (for the account when one is given), or is
    ``doer_id``."""
    verdict = judge(
        session,
        rule(right, workflow),
        actor,
        doing=doing or DOING[right],
        owner_id=owner_id,
        account_id=account_id,
        doer_id=doer_id,
    )
    if not verdict.ok:
        raise NotAllowed(verdict.message)


#: Built once (only the email bound to it changes): who the actor is, as plain columns.
_PERSON = sa.select(
    Person.__table__.c.id,  # type: ignore[attr-defined]
    Person.__table__.c.email,  # type: ignore[attr-defined]
    Person.__table__.c.is_leader,  # type: ignore[attr-defined]
    Person.__table__.c.is_admin,  # type: ignore[attr-defined]
).where(
    Person.__table__.c.email == sa.bindparam("email"),  # type: ignore[attr-defined]
    Person.__table__.c.active == sa.true(),  # type: ignore[attr-defined]
)


def _active(session: Session, email: str) -> Any:
    """The actor's id, email, leadership and admin flag, if they are a known, active person: one
    indexed read of plain columns (a transition pays for it)."""
    return session.connection().execute(_PERSON, {"email": str(email).strip().lower()}).first()


def _admin(actor: str, person: Any) -> bool:
    """Whether the person the change is made as is an admin; the login that created the
    database counts as one until it is linked to a person (acting as itself, not for someone)."""
    founder = getattr(actor, "founder", False) and getattr(actor, "acted_by", None) is None
    return founder or (person is not None and person.is_admin)


def _who(session: Session, actor: str) -> str:
    """The actor as a refusal names them, with a word when they are not a known person, are
    deactivated, or act on someone's behalf; the login that created the database, before it is
    linked, is told how to link it."""
    if getattr(actor, "founder", False) and getattr(actor, "acted_by", None) is None:
        return (
            f"the login {actor}, linked to no person yet "
            f"(kamflow person add YOUR-EMAIL --login {actor})"
        )
    person = session.exec(select(Person).where(Person.email == str(actor).strip().lower())).first()
    if person is None:
        name = f"{actor} (not a known person)"
    else:
        name = str(actor) if person.active else f"{actor} (deactivated)"
    really = getattr(actor, "acted_by", None)
    return f"{really}, acting for {name}" if really else name
