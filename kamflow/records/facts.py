"""What the guards read about accounts, loaded for a whole batch of accounts at once.

A guard asks for one account's strategy, roles, answers, actions, KPIs, reviews or stage entries;
the first such question loads that kind of fact for every account of the batch in one query, so
judging 500 accounts costs a handful of queries, not thousands. A single transition is a batch of
one. Only plain tuples are read and kept (no ORM objects), which keeps large batches cheap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from kamflow.models import (
    Action,
    Answer,
    HistoryEntry,
    HistoryKind,
    Kpi,
    KpiValue,
    Review,
    RoleAssignment,
    Score,
    Strategy,
)

T = TypeVar("T")


class StrategyFact(NamedTuple):
    """An account's strategy as guards read it: what, with whom, and why."""

    objective: str
    stakeholders: str
    rationale: str


class AnswerFact(NamedTuple):
    """An answer as guards read it: its text (the reason, for a not-applicable mark) and whether it
    marks the question not applicable."""

    text: str
    not_applicable: bool


class ActionFact(NamedTuple):
    """A plan action as guards read it: its id, status, owner's person id and due date (None when
    unset)."""

    id: int
    status: str
    owner_id: int | None
    due: date | None


class KpiFact(NamedTuple):
    """A KPI as guards read it: its id and its name."""

    id: int
    name: str


class Facts:
    """Facts about the accounts ``ids`` (at most one batch), each kind loaded on first use."""

    def __init__(self, session: Session, ids: Sequence[int]) -> None:
        self.session = session
        self.ids = list(dict.fromkeys(ids))
        self._loaded: dict[str, dict[int, Any]] = {}

    def _kind(self, name: str, load: Callable[[], dict[int, Any]]) -> dict[int, Any]:
        found = self._loaded.get(name)
        if found is None:
            found = self._loaded[name] = load() if self.ids else {}
        return found

    # --- one account's facts ---------------------------------------------------------------------

    def strategy(self, account_id: int) -> StrategyFact | None:
        """The account's strategy; None when none was ever set."""
        found: StrategyFact | None = self._kind("strategy", self._strategies).get(account_id)
        return found

    def roles(self, account_id: int) -> set[str]:
        """The roles someone holds on the account (empty when none)."""
        found: set[str] = self._kind("roles", self._roles).get(account_id, set())
        return found

    def answers(self, account_id: int) -> dict[str, AnswerFact]:
        """The account's answers and not-applicable marks, by question id."""
        found: dict[str, AnswerFact] = self._kind("answers", self._answers).get(account_id, {})
        return found

    def actions(self, account_id: int) -> list[ActionFact]:
        """The account's plan actions, open, done and cancelled, in the order they were added."""
        found: list[ActionFact] = self._kind("actions", self._actions).get(account_id, [])
        return found

    def kpis(self, account_id: int) -> list[KpiFact]:
        """The KPIs of the account's plan (not those removed from it), in the order they were
        added."""
        found: list[KpiFact] = self._kind("kpis", self._kpis).get(account_id, [])
        return found

    def kpi_latest(self, account_id: int) -> dict[int, datetime]:
        """When each KPI of the account last had a value recorded."""
        found: dict[int, datetime] = self._kind("kpi_latest", self._kpi_latest).get(account_id, {})
        return found

    def review_times(self, account_id: int) -> list[datetime]:
        """When each review conclusion of the account was written."""
        found: list[datetime] = self._kind("reviews", self._reviews).get(account_id, [])
        return found

    def entered(self, account_id: int, stage: str) -> datetime | None:
        """When the account last entered ``stage``, from its history."""
        entries: dict[str, datetime] = self._kind("entered", self._entered).get(account_id, {})
        return entries.get(stage)

    def latest_score(self, account_id: int) -> float | None:
        """The total (0 to 100) of the account's latest scoring; None when it was never scored."""
        found: float | None = self._kind("scores", self._scores).get(account_id)
        return found

    # --- loaders: one query each, for every account of the batch -------------------------------

    def _rows(self, statement: Any) -> list[Any]:
        """The rows of ``statement`` for the batch's ids, on the session's connection (Core
        statements need none of the ORM's execution path)."""
        connection = (
            self.session.connection() if isinstance(self.session, Session) else self.session
        )
        return list(connection.execute(statement, {"ids": self.ids}).all())

    def _strategies(self) -> dict[int, Any]:
        return {row[0]: StrategyFact(row[1], row[2], row[3]) for row in self._rows(_STRATEGIES)}

    def _roles(self) -> dict[int, Any]:
        found: dict[int, set[str]] = defaultdict(set)
        for account_id, role in self._rows(_ROLES):
            found[account_id].add(role)
        return dict(found)

    def _answers(self) -> dict[int, Any]:
        found: dict[int, dict[str, AnswerFact]] = defaultdict(dict)
        for account_id, question, text, not_applicable in self._rows(_ANSWERS):
            found[account_id][question] = AnswerFact(text, bool(not_applicable))
        return dict(found)

    def _actions(self) -> dict[int, Any]:
        found: dict[int, list[ActionFact]] = defaultdict(list)
        for account_id, action_id, status, owner_id, due in self._rows(_ACTIONS):
            found[account_id].append(ActionFact(action_id, status, owner_id, due))
        return dict(found)

    def _kpis(self) -> dict[int, Any]:
        found: dict[int, list[KpiFact]] = defaultdict(list)
        for account_id, kpi_id, name in self._rows(_KPIS):
            found[account_id].append(KpiFact(kpi_id, name))
        return dict(found)

    def _kpi_latest(self) -> dict[int, Any]:
        found: dict[int, dict[int, datetime]] = defaultdict(dict)
        for account_id, kpi_id, latest in self._rows(_KPI_LATEST):
            found[account_id][kpi_id] = _utc(latest)
        return dict(found)

    def _reviews(self) -> dict[int, Any]:
        found: dict[int, list[datetime]] = defaultdict(list)
        for account_id, written_at in self._rows(_REVIEWS):
            found[account_id].append(written_at)
        return dict(found)

    def _entered(self) -> dict[int, Any]:
        found: dict[int, dict[str, datetime]] = defaultdict(dict)
        for account_id, stage, latest in self._rows(_ENTERED):
            found[account_id][stage] = _utc(latest)
        return dict(found)

    def _scores(self) -> dict[int, Any]:
        return {account_id: total for account_id, total in self._rows(_SCORES)}


def _of_batch(column: Any) -> Any:
    """SQL: ``column`` is one of the batch's account ids (an IN list bound at execution, at most
    one batch long)."""
    return col(column).in_(sa.bindparam("ids", expanding=True))


# The loaders' statements, built once: their shape never changes, only the ids bound to them.
_STRATEGIES = sa.select(
    col(Strategy.account_id),
    col(Strategy.objective),
    col(Strategy.stakeholders),
    col(Strategy.rationale),
).where(_of_batch(Strategy.account_id))
_ROLES = sa.select(col(RoleAssignment.account_id), col(RoleAssignment.role)).where(
    _of_batch(RoleAssignment.account_id)
)
_ANSWERS = sa.select(
    col(Answer.account_id),
    col(Answer.question_id),
    col(Answer.text),
    col(Answer.not_applicable),
).where(_of_batch(Answer.account_id))
_ACTIONS = (
    sa.select(
        col(Action.account_id),
        col(Action.id),
        col(Action.status),
        col(Action.owner_id),
        col(Action.due),
    )
    .where(_of_batch(Action.account_id))
    .order_by(col(Action.id))
)
# A KPI removed from the plan is no longer asked for; its values stay.
_KPIS = (
    sa.select(col(Kpi.account_id), col(Kpi.id), col(Kpi.name))
    .where(_of_batch(Kpi.account_id), col(Kpi.removed_at).is_(None))
    .order_by(col(Kpi.id))
)
_KPI_LATEST = (
    select(Kpi.account_id, KpiValue.kpi_id, func.max(KpiValue.recorded_at))
    .join(Kpi, col(Kpi.id) == col(KpiValue.kpi_id))
    .where(_of_batch(Kpi.account_id), col(Kpi.removed_at).is_(None))
    .group_by(col(Kpi.account_id), col(KpiValue.kpi_id))
)
_REVIEWS = sa.select(col(Review.account_id), col(Review.written_at)).where(
    _of_batch(Review.account_id)
)
_ENTERED = (
    select(HistoryEntry.account_id, HistoryEntry.to_stage, func.max(HistoryEntry.at))
    .where(
        _of_batch(HistoryEntry.account_id),
        col(HistoryEntry.kind).in_([HistoryKind.TRANSITION, HistoryKind.CREATED]),
        col(HistoryEntry.to_stage).is_not(None),
    )
    .group_by(col(HistoryEntry.account_id), col(HistoryEntry.to_stage))
)
_NEWEST_SCORE = (
    select(Score.account_id, func.max(Score.id).label("newest"))
    .where(_of_batch(Score.account_id))
    .group_by(col(Score.account_id))
    .subquery()
)
_SCORES = select(Score.account_id, Score.total).join(
    _NEWEST_SCORE, col(Score.id) == _NEWEST_SCORE.c.newest
)


def _utc(value: Any) -> datetime:
    """An aggregate (max) comes back untyped on SQLite: as a string, or a naive datetime."""
    from kamflow.models import UTCDateTime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    result = UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
    assert result is not None
    return result
