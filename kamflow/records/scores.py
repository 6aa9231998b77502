"""Selection scores: each scoring of an account on the eight factors is kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from kamflow.definitions.selection import FACTORS, portfolio_config
from kamflow.definitions.selection import score as compute_score
from kamflow.definitions.spec import Right
from kamflow.models import Account, HistoryKind, Score
from kamflow.records import history
from kamflow.records.accounts import editable, find_account, touch


def score_account(
    session: Session, ref: str, values: dict[str, Any], *, actor: str, now: datetime
) -> Score:
    """Record a scoring on the eight factors; earlier scores are kept."""
    account, _ = editable(session, ref, actor, Right.SCORE)
    return record_score(session, account, values, actor=actor, now=now)


def record_score(
    session: Session, account: Account, values: dict[str, Any], *, actor: str, now: datetime
) -> Score:
    """Record a scoring of ``account`` in whatever place it is, a closed one included (an import
    brings back the scores of retired accounts too); recorded in the history."""
    result = compute_score(values, portfolio_config().selection)
    row = Score(
        account_id=account.id,  # type: ignore[arg-type]
        total=result.total,
        scored_at=now,
        scored_by=actor,
        **result.values,
    )
    session.add(row)
    inputs = ", ".join(f"{factor} {result.values[factor]}" for factor in FACTORS)
    history.record(
        session,
        account,
        actor=actor,
        at=now,
        kind=HistoryKind.SCORE,
        note=f"scored {result.total:g} ({inputs})",
    )
    touch(session, account)
    return row


def scores_of(session: Session, ref: str) -> list[dict[str, Any]]:
    """Every scoring of an account, newest first."""
    account = find_account(session, ref)
    rows = session.exec(
        select(Score).where(Score.account_id == account.id).order_by(col(Score.id).desc())
    ).all()
    return [
        {
            "total": row.total,
            "scored_at": row.scored_at.isoformat(),
            "scored_by": row.scored_by,
            **{factor: getattr(row, factor) for factor in FACTORS},
        }
        for row in rows
    ]


@dataclass(frozen=True)
class ScoreAgainstThreshold:
    """A scoring set against the promotion threshold of portfolio.yaml."""

    account: str
    total: float
    threshold: float

    @property
    def reaches_threshold(self) -> bool:
        return self.total >= self.threshold


def score_against_threshold(
    session: Session, ref: str, values: dict[str, Any], *, actor: str, now: datetime
) -> ScoreAgainstThreshold:
    """Record a scoring (as score_account does) and say whether it reaches the threshold."""
    scored = score_account(session, ref, values, actor=actor, now=now)
    return ScoreAgainstThreshold(
        account=find_account(session, ref).name,
        total=scored.total,
        threshold=portfolio_config().selection.threshold,
    )
