"""Portfolios written straight into the tables, for tests of size.

kamflow's own functions write one account per transaction and guard the cap, which is right for
people and far too slow for the tens of thousands of accounts a test of scale needs. Here the
schema comes from kamflow (``db.ready_engine``) and the rows are inserted in bulk (executemany),
as bench/portfolio_data.py does for the benchmarks, but with data a test can predict: account
``i`` is named ``Account 00000i`` and everything about it follows from ``i``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from kamflow import db
from kamflow.models import Account, Kpi, KpiValue, Person, RoleAssignment, Score

OWNER = "owner@example.com"
OTHER = "other@example.com"
LEADER = "lead@example.com"
#: Rows per executemany: each statement stays far below any parameter limit.
CHUNK = 2_000
FACTORS = ("revenue", "growth", "renewal", "win_now", "effort", "relationship", "fit", "logo")


def name(i: int) -> str:
    return f"Account {i:06d}"


@dataclass(frozen=True)
class Layout:
    """Where account ``i`` stands and what it holds; every field a function of ``i``."""

    #: (stage, days in it at ``now``) of account i.
    place: Callable[[int], tuple[str, int]]
    #: Its latest score, or None for an unscored account.
    score: Callable[[int], float | None] = lambda i: None
    #: The roles someone holds on it.
    roles: Callable[[int], tuple[str, ...]] = lambda i: ()
    #: Its KPI's (target, latest value), or None for no KPI.
    kpi: Callable[[int], tuple[float, float | None] | None] = lambda i: None


def _table(model: type[SQLModel]) -> Any:
    return model.__table__  # type: ignore[attr-defined]


def _insert(engine: Engine, model: type[SQLModel], rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            with engine.begin() as connection:
                connection.execute(_table(model).insert(), batch)
            batch = []
    if batch:
        with engine.begin() as connection:
            connection.execute(_table(model).insert(), batch)


def build(url: str, count: int, layout: Layout, *, now: datetime) -> Engine:
    """A portfolio of ``count`` accounts of workflow kam, owned by OWNER and OTHER in turn."""
    engine = db.ready_engine(url)
    people = [(1, OWNER, False), (2, OTHER, False), (3, LEADER, True)]
    _insert(
        engine,
        Person,
        (
            {"id": i, "email": email, "name": "", "is_leader": leader, "created_at": now}
            for i, email, leader in people
        ),
    )

    def accounts() -> Iterator[dict[str, Any]]:
        for i in range(1, count + 1):
            stage, days = layout.place(i)
            yield {
                "id": i,
                "name": name(i),
                "owner_id": 1 + i % 2,
                "workflow": "kam",
                "kind": "existing",
                "stage": stage,
                "stage_entered_at": now - timedelta(days=days, hours=1),
                "version": 1,
                "created_at": now - timedelta(days=400),
            }

    def scores() -> Iterator[dict[str, Any]]:
        for i in range(1, count + 1):
            total = layout.score(i)
            if total is None:
                continue
            for earlier, value in ((True, 100.0 - total), (False, total)):
                # An earlier scoring first: only the latest may count.
                yield {
                    "account_id": i,
                    **dict.fromkeys(FACTORS, 3),
                    "total": value,
                    "scored_at": now - timedelta(days=30 if earlier else 1),
                    "scored_by": OWNER,
                }

    def roles() -> Iterator[dict[str, Any]]:
        for i in range(1, count + 1):
            for role in layout.roles(i):
                yield {"account_id": i, "role": role, "person_id": 2, "assigned_at": now}

    def kpis() -> Iterator[dict[str, Any]]:
        for i in range(1, count + 1):
            found = layout.kpi(i)
            if found is not None:
                yield {
                    "id": i,
                    "account_id": i,
                    "name": "NPS",
                    "target": found[0],
                    "unit": "points",
                    "lower_is_better": False,
                    "created_at": now,
                }

    def values() -> Iterator[dict[str, Any]]:
        for i in range(1, count + 1):
            found = layout.kpi(i)
            if found is None or found[1] is None:
                continue
            for days, value in ((40, found[0]), (2, found[1])):
                yield {
                    "kpi_id": i,
                    "value": value,
                    "period": "2027-Q1",
                    "recorded_at": now - timedelta(days=days),
                    "recorded_by": OWNER,
                }

    _insert(engine, Account, accounts())
    _insert(engine, Score, scores())
    _insert(engine, RoleAssignment, roles())
    _insert(engine, Kpi, kpis())
    _insert(engine, KpiValue, values())
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("person", "account", "kpi"):
                # Ids were written explicitly: move each sequence past them for kamflow.
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            connection.exec_driver_sql("ANALYZE")
    return engine
