"""People: account owners, role holders and leaders, known by email."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from kamflow.errors import GuardRefused, InvalidInput, NotFound
from kamflow.models import Account, Person
from kamflow.text import MAX_EMAIL, MAX_NAME, clean_text
from kamflow.verdict import Verdict

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
    session: Session, email: str, *, name: str = "", leader: bool = False, now: datetime
) -> Person:
    """Add a person by email (kept in lower case), with an optional name, as a leader when
    ``leader``; InvalidInput for a malformed or known email, or a name too long or with a control
    character."""
    address = normalise_email(email)
    if find_person(session, address) is not None:
        raise InvalidInput(f"{address} is already known")
    person = Person(
        email=address,
        name=clean_text(name, "--name", required=False, max_length=MAX_NAME),
        is_leader=leader,
        created_at=now,
    )
    session.add(person)
    session.flush()
    return person


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


def require_owner_or_leader(session: Session, account: Account, actor: str, doing: str) -> Person:
    """The acting person, if they own the account or lead; otherwise a refusal saying who may."""
    person = find_person(session, actor)
    if person is None or not (person.id == account.owner_id or person.is_leader):
        known = "" if person is not None else " (not a known person)"
        raise GuardRefused(
            f"{actor} may not {doing} {account.name}:",
            [
                Verdict(
                    "allowed",
                    False,
                    f"only the owner or a leader may {doing} {account.name}; "
                    f"you are {actor}{known}",
                )
            ],
        )
    return person


def list_people(session: Session) -> list[dict[str, Any]]:
    """Everyone, by email, as person_view() shows them."""
    return [person_view(p) for p in session.exec(select(Person).order_by(col(Person.email))).all()]


def person_view(person: Person) -> dict[str, Any]:
    """A person as plain data: email, name, and whether they are a leader."""
    return {"email": person.email, "name": person.name, "leader": person.is_leader}
