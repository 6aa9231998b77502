"""The key-account cap as the database counts it: how many key accounts there are (of everyone or
of one owner), the latest selection score of each, the lowest-scored ones by name, the lock that
serialises the counting, and the cap's verdict on key accounts passing to another owner."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow.definitions.discovery import workflows_in_use
from kamflow.guards import CapFacts, cap_verdict
from kamflow.models import Account, Person, Score
from kamflow.verdict import Verdict

#: How many of the lowest-scored key accounts a cap refusal names.
RANKED_SHOWN = 5
#: PostgreSQL's advisory lock that serialises the counting of the key-account cap.
CAP_LOCK = 4242002


def lock(session: Session) -> None:
    """Hold the cap's lock until the transaction ends, so two changes at once cannot both take
    the last place (SQLite lets one writer in at a time anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text(f"SELECT pg_advisory_xact_lock({CAP_LOCK})"))


def latest_score(account_id: Any) -> Any:
    """SQL: the most recent selection score of the account whose id is ``account_id`` (a
    column of the outer query), or NULL: one probe of the score index per account."""
    return (
        select(Score.total)
        .where(col(Score.account_id) == account_id)
        .order_by(col(Score.id).desc())
        .limit(1)
        .scalar_subquery()
    )


def key_account_filter(session: Session, *, owner_id: int | None = None) -> Any:
    """SQL: the account is a key account (in a stage of the cycle of its workflow), of
    ``owner_id`` if given; a workflow that fails to load is an error here, since leaving its
    accounts out would let the cap be passed."""
    conditions = [
        sa.and_(
            col(Account.workflow) == definition.name, col(Account.stage).in_(definition.stage_names)
        )
        for definition in workflows_in_use(
            session, strict="the key-account cap counts the key accounts of every workflow"
        )
    ]
    found = sa.or_(sa.false(), *conditions)
    return found if owner_id is None else sa.and_(found, col(Account.owner_id) == owner_id)


def count_key_accounts(session: Session, *, owner_id: int | None = None) -> int:
    """How many key accounts there are (of ``owner_id``, if given), counted in SQL."""
    which = key_account_filter(session, owner_id=owner_id)
    return int(session.execute(select(func.count()).select_from(Account).where(which)).scalar_one())


def ranked(session: Session, owner_id: int | None, leaving_out: int | None) -> str:
    """The key accounts (of ``owner_id``, or of everyone), lowest-scored first, the first few by
    name, naming the lowest-scored one; ``leaving_out``: an account not to name."""
    which = key_account_filter(session, owner_id=owner_id)
    if leaving_out is not None:
        which = sa.and_(which, col(Account.id) != leaving_out)
    score = latest_score(Account.id).label("score")
    lowest = session.execute(
        select(col(Account.name), score)
        .where(which)
        # Unscored first, as the lowest of all; then by score, then by name in any case.
        .order_by(func.coalesce(score, -1.0), func.lower(col(Account.name)))
        .limit(RANKED_SHOWN)
    ).all()
    if not lowest:
        return ""
    total = session.execute(select(func.count()).select_from(Account).where(which)).scalar_one()

    def label(name: str, value: float | None) -> str:
        """An account's name with its score, or with ``not scored``."""
        return f"{name} (not scored)" if value is None else f"{name} ({value:g})"

    listing = ", ".join(label(name, value) for name, value in lowest)
    if total > RANKED_SHOWN:
        listing += f" and {total - RANKED_SHOWN} more"
    return f"{listing}; the lowest-scored is {label(*lowest[0])}"


def owner_cap(
    session: Session, owner: Person, *, joining: int, override: str | None, actor: str
) -> Verdict:
    """The cap's verdict on ``joining`` key accounts passing to ``owner`` from another owner
    (the organisation keeps as many), counted under the cap's lock; ``override``: a leader's
    reason, already checked to come from a leader."""
    assert owner.id is not None
    lock(session)
    cap = CapFacts(
        everyone=count_key_accounts(session),
        owned=count_key_accounts(session, owner_id=owner.id),
        owner=owner.email,
        ranked=lambda owner_id: ranked(session, owner_id, None),
        override=override,
        joining=joining,
        new_to_organisation=False,
    )
    return cap_verdict(cap, owner_id=owner.id, actor=actor)
