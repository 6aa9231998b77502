"""People: account owners, role holders and leaders, known by email."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from kamflow.definitions.spec import Right
from kamflow.errors import GuardRefused, InvalidInput, NotAllowed, NotFound
from kamflow.models import Account, Action, ActionStatus, HistoryKind, Person
from kamflow.records import history, permissions
from kamflow.records.cap import count_key_accounts, owner_cap
from kamflow.text import MAX_EMAIL, MAX_NAME, clean_text
from kamflow.verdict import Verdict, overridden

EMAIL = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")


def normalise_email(email: str) -> str:
    """Emails are compared without case and surrounding blanks; a malformed one is refused.

    Plain ASCII addresses only (``name@domain.tld``): they go into mail headers and envelopes.
    """
    cleaned = email.strip().lower()
    if len(cleaned) > MAX_EMAIL or not EMAIL.match(cleaned):
        raise InvalidInput(f"{email!r} is not an email address")
    return cleaned


def add_person(
    session: Session,
    email: str,
    *,
    name: str = "",
    leader: bool = False,
    admin: bool = False,
    login: str | None = None,
    now: datetime,
) -> Person:
    """Add a person by email (kept in lower case), with an optional name, as a leader when
    ``leader``, an admin when ``admin``, signing in as ``login``; InvalidInput for a malformed or
    known email, a login linked to someone else, or a name too long or with a control
    character. The first person linked to the login that created the database is an admin."""
    address = normalise_email(email)
    if find_person(session, address) is not None:
        raise InvalidInput(f"{address} is already known")
    person = Person(
        email=address,
        name=clean_text(name, "--name", required=False, max_length=MAX_NAME),
        is_leader=leader,
        is_admin=admin,
        created_at=now,
    )
    if login is not None:
        _link(session, person, login)
    session.add(person)
    session.flush()
    return person


def link(session: Session, email: str, login: str | None) -> tuple[Person, str | None]:
    """Link ``login`` to the person with this email (None: unlink them); the person and the
    login they had. The first person linked to the login that created the database becomes an
    admin."""
    person = get_person(session, email)
    before = person.login
    if login is None:
        if before is None:
            raise InvalidInput(f"{person.email} has no login to unlink")
        _keep_an_admin(session, person, "unlink")
        person.login = None
    else:
        _link(session, person, login)
    session.add(person)
    session.flush()
    return person, before


def _link(session: Session, person: Person, login: str) -> None:
    from kamflow.records.identity import check_login, founder_login

    name = check_login(login)
    holder = session.exec(select(Person).where(Person.login == name)).first()
    if holder is not None and holder.id != person.id:
        raise InvalidInput(
            f"login {name} is linked to {holder.email} already "
            f"(kamflow person unlink {holder.email} first)"
        )
    if person.login == name:
        raise InvalidInput(f"{person.email} signs in as {name} already")
    person.login = name
    if name == founder_login(session) and not _any_admin(session):
        person.is_admin = True


def _any_admin(session: Session) -> bool:
    found = session.exec(
        select(sa.literal(1)).where(Person.is_admin == sa.true(), Person.active == sa.true())
    ).first()
    return found is not None


def _keep_an_admin(session: Session, person: Person, doing: str) -> None:
    """InvalidInput when ``person`` is the last active admin linked to a login: someone must be
    left to manage people."""
    if not (person.is_admin and person.active and person.login):
        return
    others = session.exec(
        select(sa.literal(1)).where(
            Person.is_admin == sa.true(),
            Person.active == sa.true(),
            col(Person.login).is_not(None),
            Person.id != person.id,
        )
    ).first()
    if others is None:
        raise InvalidInput(
            f"cannot {doing} {person.email}: they are the last admin who can sign in "
            f"(make someone else an admin first: kamflow person edit EMAIL --admin)"
        )


def find_person(session: Session, email: str) -> Person | None:
    """The person with this email (in any case, blanks around it ignored), or None."""
    # Emails are stored lower-cased, so the unique index answers this.
    return session.exec(select(Person).where(Person.email == email.strip().lower())).first()


def get_person(session: Session, email: str) -> Person:
    """The person with this email (in any case); NotFound when there is none."""
    person = find_person(session, email)
    if person is None:
        raise NotFound(f"no person {email.strip()!r} (add them: kamflow person add EMAIL)")
    return person


def active_person(session: Session, email: str, doing: str) -> Person:
    """The person with this email, if they are active: NotFound when there is none, InvalidInput
    (saying they cannot ``doing``) when they are deactivated."""
    person = get_person(session, email)
    if not person.active:
        raise InvalidInput(
            f"{person.email} is deactivated and cannot {doing} "
            f"(kamflow person activate {person.email})"
        )
    return person


def require_account_right(session: Session, account: Account, actor: str, doing: str) -> None:
    """NotAllowed unless the actor may change ``account`` (the ``account`` right: by default
    its owner, a leader or an admin); ``doing`` names the change (``rename``)."""
    permissions.require(
        session,
        Right.ACCOUNT,
        actor,
        doing=f"{doing} {account.name}",
        workflow=account.workflow,
        owner_id=account.owner_id,
        account_id=account.id,
    )


def override_refused(session: Session, actor: str, override: str | None) -> Verdict | None:
    """A refusal when someone who may not (the ``override`` right: by default a leader) asks to
    go over the key-account cap; None without an override or when they may."""
    if override is None:
        return None
    verdict = permissions.judge(
        session, permissions.rule(Right.OVERRIDE), actor, doing="override the key-account cap"
    )
    return None if verdict.ok else verdict


def list_people(session: Session) -> list[dict[str, Any]]:
    """Everyone, by email, as person_view() shows them."""
    return [person_view(p) for p in session.exec(select(Person).order_by(col(Person.email))).all()]


def person_view(person: Person) -> dict[str, Any]:
    """A person as plain data: email, name, whether they are a leader or an admin, their login,
    and whether they are active."""
    return {
        "email": person.email,
        "name": person.name,
        "leader": person.is_leader,
        "admin": person.is_admin,
        "login": person.login,
        "active": person.active,
    }


# --- corrections ---------------------------------------------------------------------------------


def edit_person(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    leader: bool | None = None,
    admin: bool | None = None,
) -> tuple[Person, list[str]]:
    """Change a person's name, whether they lead and whether they are an admin; the person and
    what changed, in words.

    InvalidInput when nothing is asked or nothing would change, for a bad name, or when the last
    admin who can sign in would be no admin any more.
    """
    if name is None and leader is None and admin is None:
        raise InvalidInput(
            "nothing to change: give --name TEXT, --leader or --no-leader, --admin or --no-admin"
        )
    person = get_person(session, email)
    changes = []
    if name is not None:
        cleaned = clean_text(name, "--name", required=False, max_length=MAX_NAME)
        if cleaned != person.name:
            changes.append(f"name {person.name or '(none)'!r} -> {cleaned or '(none)'!r}")
            person.name = cleaned
    if leader is not None and leader != person.is_leader:
        changes.append("now a leader" if leader else "no longer a leader")
        person.is_leader = leader
    if admin is not None and admin != person.is_admin:
        if not admin:
            _keep_an_admin(session, person, "take admin away from")
        changes.append("now an admin" if admin else "no longer an admin")
        person.is_admin = admin
    if not changes:
        raise InvalidInput(f"nothing to change: {person.email} is already as asked")
    session.add(person)
    return person, changes


def activate(session: Session, email: str) -> Person:
    """Make a deactivated person active again: they receive mail and may own accounts again."""
    person = get_person(session, email)
    if person.active:
        raise InvalidInput(f"{person.email} is already active")
    person.active = True
    session.add(person)
    return person


@dataclass(frozen=True)
class Deactivation:
    """What a deactivation did: who, to whom their accounts and open actions passed (and how
    many), what they still own, and the cap's verdicts on the change of owner."""

    email: str
    successor: str | None
    accounts_passed: int
    actions_passed: int
    accounts_kept: int
    actions_kept: int
    verdicts: list[Verdict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The deactivation as plain data, as ``--json`` prints it."""
        return {
            "email": self.email,
            "active": False,
            "reassigned_to": self.successor,
            "accounts_passed": self.accounts_passed,
            "actions_passed": self.actions_passed,
            "accounts_kept": self.accounts_kept,
            "actions_kept": self.actions_kept,
            "verdicts": [verdict.as_dict() for verdict in self.verdicts],
        }


def deactivate(
    session: Session,
    email: str,
    *,
    reassign_to: str | None = None,
    override: str | None = None,
    actor: str,
    now: datetime,
) -> Deactivation:
    """Deactivate a person: they receive no more mail. With ``reassign_to``, every account they
    own and every open action they own passes to that (active) person first, in this
    transaction, with a history row for each account changed; the new owner's key-account cap
    applies (a leader may go over it with ``override``, a reason).

    A person already deactivated may be given ``reassign_to`` again, to pass on what they still
    own.
    """
    person = get_person(session, email)
    _keep_an_admin(session, person, "deactivate")
    if reassign_to is None:
        if override is not None:
            raise InvalidInput("--override goes with --reassign-to: without it, no owner changes")
        if not person.active:
            raise InvalidInput(f"{person.email} is already deactivated")
        person.active = False
        session.add(person)
        kept = still_owned(session, person)
        return Deactivation(person.email, None, 0, 0, *kept)
    successor = active_person(session, reassign_to, "take over accounts")
    if successor.id == person.id:
        raise InvalidInput(f"{person.email} cannot pass what they own to themselves")
    accounts, actions, verdicts = _pass_on(
        session, person, successor, override=override, actor=actor, now=now
    )
    person.active = False
    session.add(person)
    return Deactivation(person.email, successor.email, accounts, actions, 0, 0, verdicts)


def _pass_on(
    session: Session,
    person: Person,
    successor: Person,
    *,
    override: str | None,
    actor: str,
    now: datetime,
) -> tuple[int, int, list[Verdict]]:
    """Pass every account and open action of ``person`` to ``successor``, within the cap: one
    UPDATE for the accounts and one for the actions, then a history row for each account
    changed (one executemany per kind). How many accounts and actions passed, and the cap's
    verdicts."""
    refusal = override_refused(session, actor, override)
    if refusal is not None:
        raise NotAllowed(refusal.message)
    verdicts: list[Verdict] = []
    joining = count_key_accounts(session, owner_id=person.id)
    if joining:
        verdict = owner_cap(session, successor, joining=joining, override=override, actor=actor)
        if not verdict.ok:
            raise GuardRefused(
                f"the key accounts of {person.email} cannot pass to {successor.email}: "
                f"{verdict.message}",
                [],
            )
        verdicts.append(verdict)
    elif override is not None:
        raise InvalidInput(f"{person.email} owns no key account: there is no cap to override")
    note = f"owner {person.email} -> {successor.email}"
    if overridden(verdicts):
        note += f"; cap override: {override}"
    connection = session.connection()
    # Each UPDATE returns the rows it changed, so the history names exactly those accounts,
    # even if another transaction gave this person an account meanwhile.
    passed: list[int] = list(
        connection.execute(
            sa.update(Account)
            .where(col(Account.owner_id) == person.id)
            .values(owner_id=successor.id, version=Account.version + 1)
            .returning(_ACCOUNTS.c.id)
        ).scalars()
    )
    accounts = _record_each(connection, passed, HistoryKind.OWNER, note, actor, now)
    moved = connection.execute(
        sa.update(Action)
        .where(col(Action.owner_id) == person.id, col(Action.status) == ActionStatus.OPEN.value)
        .values(owner_id=successor.id)
        .returning(col(Action.account_id))
    ).scalars()
    moved_ids = list(moved)
    touched = sorted(set(moved_ids))
    if touched:
        # The plan changed: a transition that read the old one must conflict (as plan changes
        # do), one parameter set per account.
        connection.execute(_TOUCH, [{"account": account_id} for account_id in touched])
    _record_each(
        connection,
        touched,
        HistoryKind.ACTION,
        f"open actions of {person.email} passed to {successor.email}",
        actor,
        now,
    )
    return accounts, len(moved_ids), verdicts


_ACCOUNTS = Account.__table__  # type: ignore[attr-defined]
#: Built once: count a change to one account's plan (executemany over the accounts changed).
_TOUCH = (
    sa.update(Account)
    .where(col(Account.id) == sa.bindparam("account"))
    .values(version=Account.version + 1)
)


def _record_each(
    connection: sa.Connection,
    account_ids: list[int],
    kind: HistoryKind,
    note: str,
    actor: str,
    now: datetime,
) -> int:
    """The same history entry for each of these accounts, in one executemany; how many."""
    history.append_many(
        connection,
        [
            {
                "account_id": account_id,
                "at": now,
                "actor": actor,
                "kind": kind,
                "transition": None,
                "from_stage": None,
                "to_stage": None,
                "note": note,
                "verdicts": "[]",
            }
            for account_id in account_ids
        ],
    )
    return len(account_ids)


def still_owned(session: Session, person: Person) -> tuple[int, int]:
    """How many accounts and open actions ``person`` owns, counted in SQL."""
    accounts = session.execute(
        sa.select(sa.func.count()).select_from(Account).where(col(Account.owner_id) == person.id)
    ).scalar_one()
    actions = session.execute(
        sa.select(sa.func.count())
        .select_from(Action)
        .where(col(Action.owner_id) == person.id, col(Action.status) == ActionStatus.OPEN.value)
    ).scalar_one()
    return int(accounts), int(actions)


def unattended(session: Session) -> list[dict[str, Any]]:
    """The deactivated people who still own accounts or open actions, by email, with how many
    of each: one grouped count per kind, joined on the (few) deactivated people."""
    if not session.execute(sa.select(sa.exists().where(~col(Person.active)))).scalar():
        return []  # nobody is deactivated: the counts need not look at accounts and actions
    accounts = (
        sa.select(col(Account.owner_id).label("person"), sa.func.count().label("count"))
        .join(Person, col(Person.id) == col(Account.owner_id))
        .where(~col(Person.active))
        .group_by(col(Account.owner_id))
        .subquery()
    )
    actions = (
        sa.select(col(Action.owner_id).label("person"), sa.func.count().label("count"))
        .join(Person, col(Person.id) == col(Action.owner_id))
        .where(~col(Person.active), col(Action.status) == ActionStatus.OPEN.value)
        .group_by(col(Action.owner_id))
        .subquery()
    )
    rows = session.execute(
        sa.select(
            col(Person.email),
            sa.func.coalesce(accounts.c.count, 0),
            sa.func.coalesce(actions.c.count, 0),
        )
        .outerjoin(accounts, accounts.c.person == col(Person.id))
        .outerjoin(actions, actions.c.person == col(Person.id))
        .where(
            ~col(Person.active),
            sa.or_(accounts.c.count.is_not(None), actions.c.count.is_not(None)),
        )
        .order_by(col(Person.email))
    ).all()
    return [
        {"email": email, "accounts": int(owned), "open_actions": int(acting)}
        for email, owned, acting in rows
    ]


def inactive_among(session: Session, emails: list[str]) -> set[str]:
    """Which of these addresses (at most a batch of them) belong to deactivated people."""
    if not emails:
        return set()
    wanted = sorted({email.strip().lower() for email in emails})
    rows = session.execute(
        sa.select(col(Person.email)).where(
            col(Person.email).in_(sa.bindparam("emails", expanding=True)), ~col(Person.active)
        ),
        {"emails": wanted},
    )
    return set(rows.scalars())
