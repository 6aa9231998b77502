"""A large, realistic kamflow portfolio, written fast for benchmarks.

kamflow's own functions create one account per transaction and check the key-account cap, which is
right for people and far too slow (and too strict) for a million accounts. This module lets kamflow
create the schema (``db.ready_engine`` runs the Alembic migrations) and then writes the rows itself
in bulk: ``executemany`` in large transactions on SQLite, ``COPY`` on PostgreSQL.

The data is seeded, so the same arguments give the same database, and laid out around ``now`` (the
moment the benchmark passes as KAMFLOW_NOW): about 3.4% of all accounts are past their stage's time
limit at that moment, most of them a few days ("behind"), the rest longer ("stuck"), a few for
months.

    .venv/bin/python bench/portfolio_data.py --accounts 100000 --url sqlite:////tmp/kf-100k.db

Only ``kamflow.db`` is imported from kamflow, so the module works with any checkout whose tables
still have the columns written here (checked before anything is written).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from kamflow import db
from kamflow.records.chain import CONTENT_COLUMNS, GENESIS, row_hash

#: The moment the data is laid out around (the benchmark's KAMFLOW_NOW).
DEFAULT_NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
#: Accounts generated, and written, per batch: bounds the memory whatever the size.
CHUNK = 50_000
ACCOUNTS_PER_OWNER = 50
LEADERS = 5

#: Each workflow's stages with their limits, and the days past the limit from which an account is
#: stuck rather than behind (``escalate_after_days``), as in workflows/*.yaml; kam-lite counts
#: business days, given here as about as many calendar days (5 business days to a week).
STAGE_LIMITS: dict[str, dict[str, int]] = {
    "kam": {"strategy": 14, "research": 21, "action_plan": 21, "execution": 90, "review": 14},
    "kam-lite": {"strategy": 21, "research": 31, "action_plan": 31, "execution": 119, "review": 21},
}
ESCALATE_AFTER_DAYS = {"kam": 7, "kam-lite": 14}
#: How the accounts in the cycle spread over its stages (execution is the long one).
STAGE_WEIGHTS = {"strategy": 20, "research": 20, "action_plan": 18, "execution": 30, "review": 12}

SHARE_LITE = 0.20
SHARE_CANDIDATES = 0.05
SHARE_EXITED = 0.05
#: Of all accounts, how many are past their stage's limit at ``now``, and how those split.
SHARE_PAST_LIMIT = 0.034
SHARE_BEHIND = 0.55  # of the past-limit ones; the rest are stuck
SHARE_STUCK_FOR_MONTHS = 0.22  # of the stuck ones
#: Of all accounts, how many have an open action whose due date has passed.
SHARE_OVERDUE_ACTION = 0.01
SHARE_KPI_OFF_TARGET = 0.30

ROLES = (
    "relationship-lead",
    "technical-expert",
    "collaborator",
    "project-manager",
    "innovator",
    "result-driver",
)
#: Question ids from workflows/questions.yaml (ids are stable there; the required ones first).
QUESTIONS = (
    "our-team.exec-sponsor",
    "our-team.revenue-goal",
    "their-team.decision-maker",
    "their-team.champion",
    "trends.industry-shifts",
    "needs.top-business-needs",
    "competitors.main-competitor",
    "value.value-we-deliver",
    "value.expansion-opportunities",
    "unknowns.critical-gaps",
    "our-team.role-coverage",
    "our-team.capacity",
    "their-team.buying-group",
    "their-team.skeptics",
    "trends.regulation",
    "trends.technology",
    "needs.pain-points",
    "needs.budget",
    "insights.history",
    "insights.risks",
    "competitors.incumbents",
    "competitors.why-us",
    "value.quick-wins",
    "unknowns.assumptions",
)
REQUIRED_QUESTIONS = frozenset(QUESTIONS[:10])
#: (name, unit, lower is better, a typical target).
KPIS = (
    ("Annual revenue", "EUR", False, 1_500_000.0),
    ("Gross margin", "%", False, 32.0),
    ("Share of wallet", "%", False, 40.0),
    ("Net promoter score", "points", False, 45.0),
    ("Churn rate", "%", True, 5.0),
    ("Open opportunities", "", False, 12.0),
    ("Escalated support tickets", "", True, 8.0),
)
ACTION_TITLES = (
    "Run a discovery workshop with the operations team",
    "Send the tailored proposal for the second site",
    "Book the quarterly business review",
    "Introduce our product lead to their architects",
    "Prepare the renewal offer",
    "Map the buying group after the reorganisation",
    "Agree on the pilot's success criteria",
    "Share the reference case from the same industry",
)
RESOURCES = ("", "", "Solution architect, two days", "Pre-sales budget", "Marketing material")
REVIEW_TEXTS = (
    "On track: keep the plan, widen the pilot next quarter.",
    "Revenue below target; adjust the plan towards the second business unit.",
    "Champion left the company; rebuild the relationship map first.",
    "Targets met; start over from the strategy with a bigger objective.",
)
#: The selection weights of workflows/portfolio.yaml (they add up to 100); effort is inverted.
WEIGHTS = {
    "revenue": 20.0,
    "growth": 20.0,
    "renewal": 15.0,
    "win_now": 10.0,
    "effort": 5.0,
    "relationship": 10.0,
    "fit": 15.0,
    "logo": 5.0,
}
FACTORS = tuple(WEIGHTS)
INVERTED = frozenset({"effort"})

#: The columns written to each table, in the order of the generated tuples (and of writing).
COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("id", "email", "name", "is_leader", "created_at"),
    "account": (
        "id",
        "name",
        "owner_id",
        "workflow",
        "kind",
        "stage",
        "stage_entered_at",
        "version",
        "created_at",
    ),
    "history": (
        "id",
        "account_id",
        "at",
        "actor",
        "kind",
        "transition",
        "from_stage",
        "to_stage",
        "note",
        "verdicts",
        "hash",
    ),
    "strategy": (
        "account_id",
        "objective",
        "stakeholders",
        "rationale",
        "updated_at",
        "updated_by",
    ),
    "role_assignment": ("id", "account_id", "role", "person_id", "assigned_at"),
    "answer": (
        "id",
        "account_id",
        "question_id",
        "text",
        "not_applicable",
        "answered_at",
        "answered_by",
    ),
    "action": (
        "id",
        "account_id",
        "title",
        "owner_id",
        "due",
        "resources",
        "status",
        "created_at",
        "done_at",
    ),
    "kpi": ("id", "account_id", "name", "target", "unit", "lower_is_better", "created_at"),
    "kpi_value": ("id", "kpi_id", "value", "period", "recorded_at", "recorded_by"),
    "review": ("id", "account_id", "conclusion", "written_at", "written_by"),
    "score": ("id", "account_id", *FACTORS, "total", "scored_at", "scored_by"),
}

Row = tuple[Any, ...]


class BuildError(RuntimeError):
    """The database cannot be filled: unknown schema, rows already there, unsupported URL."""


DAY = 86_400.0


def _chances(weights: dict[int, int]) -> tuple[int, ...]:
    """A 100-slot table for drawing a count with the given percentages (they add up to 100)."""
    table = tuple(count for count, weight in weights.items() for _ in range(weight))
    assert len(table) == 100, weights
    return table


# Counts per account, drawn from these tables (means in the comments).
ROLE_COUNTS = _chances({0: 30, 1: 27, 2: 22, 3: 12, 4: 5, 6: 4})  # 1.51
ANSWER_COUNTS = _chances({0: 36, 1: 15, 2: 15, 3: 12, 4: 10, 6: 8, 8: 4})  # 2.01
ACTION_COUNTS = _chances({0: 67, 1: 23, 2: 10})  # 0.43 per account in the cycle
KPI_COUNTS = _chances({0: 54, 1: 36, 2: 10})  # 0.56 per account in the cycle
REVIEW_COUNTS = _chances({0: 72, 1: 23, 2: 5})  # 0.33 per account in the cycle
SCORE_COUNTS = _chances({0: 57, 1: 38, 2: 5})  # 0.48 per account out of intake
#: Share of accounts with a strategy, by where they are (about half overall).
STRATEGY_SHARE = {"candidate": 0.0, "strategy": 0.25, "exited": 0.5, "later": 0.6}


def score_total(values: Sequence[int]) -> float:
    """The selection score (0-100) of eight factor values (1-5), as kamflow computes it."""
    total = 0.0
    for factor, value in zip(FACTORS, values, strict=True):
        share = (5 - value) / 4 if factor in INVERTED else (value - 1) / 4
        total += WEIGHTS[factor] * share
    return round(total, 6)


# --- generation ----------------------------------------------------------------------------------


@dataclass
class Counts:
    """What was written, and how the accounts stand at ``now``."""

    accounts: int = 0
    candidates: int = 0
    exited: int = 0
    behind: int = 0
    stuck: int = 0
    people: int = 0
    owners: int = 0
    leaders: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    overdue_action_accounts: int = 0

    @property
    def stalled(self) -> int:
        return self.behind + self.stuck


@dataclass
class _Ids:
    """The next id of each table whose rows are numbered here."""

    role_assignment: int = 1
    answer: int = 1
    action: int = 1
    kpi: int = 1
    kpi_value: int = 1
    review: int = 1
    score: int = 1


class _Generator:
    """Makes the rows of ``accounts`` accounts, chunk by chunk, from one seeded random stream."""

    def __init__(self, accounts: int, now: datetime, seed: int) -> None:
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.now = now.astimezone(UTC).replace(tzinfo=None)  # naive UTC, as SQLite stores it
        self.today = now.astimezone(UTC).date()
        self.owners = max(1, math.ceil(accounts / ACCOUNTS_PER_OWNER))
        self.emails = [f"owner{i}@example.com" for i in range(1, self.owners + 1)]
        self.ids = _Ids()
        #: The hash of the last history row written: each chunk's rows extend the chain.
        self.history_head = GENESIS
        self.counts = Counts(accounts=accounts, owners=self.owners, leaders=LEADERS)
        self.counts.people = self.owners + LEADERS
        self._days: dict[int, str] = {}
        stages = [s for s, weight in STAGE_WEIGHTS.items() for _ in range(weight)]
        self.stage_table = tuple(stages)
        # Only accounts in the cycle can be past a limit: scale the share to them.
        self.p_past = SHARE_PAST_LIMIT / (1 - SHARE_CANDIDATES - SHARE_EXITED)
        self.p_overdue = SHARE_OVERDUE_ACTION / (1 - SHARE_CANDIDATES - SHARE_EXITED)

    def stamp(self, seconds_ago: float) -> str:
        """The moment ``seconds_ago`` before now, written as SQLite's DateTime stores it."""
        moment = self.now - timedelta(seconds=seconds_ago)
        return moment.isoformat(sep=" ", timespec="microseconds")

    def day(self, offset: int) -> str:
        """Today plus ``offset`` days, as YYYY-MM-DD."""
        text = self._days.get(offset)
        if text is None:
            text = self._days[offset] = (self.today + timedelta(days=offset)).isoformat()
        return text

    def people(self) -> list[Row]:
        """The owners, then the leaders."""
        joined = self.stamp(800 * DAY)
        rows: list[Row] = [
            (i, email, f"Account Manager {i:04d}", False, joined)
            for i, email in enumerate(self.emails, start=1)
        ]
        rows += [
            (self.owners + j, f"leader{j}@example.com", f"Sales Leader {j}", True, joined)
            for j in range(1, LEADERS + 1)
        ]
        return rows

    def _placement(self, workflow: str) -> tuple[str, float, str]:
        """(stage, seconds since it entered that stage, category) for one account."""
        draw = self.rng.random
        pick = draw()
        if pick < SHARE_CANDIDATES:
            return "candidate", 3600 + draw() * 120 * DAY, "candidate"
        if pick < SHARE_CANDIDATES + SHARE_EXITED:
            stage = "disqualified" if draw() < 0.4 else "retired"
            return stage, DAY + draw() * 400 * DAY, "exited"
        stage = self.stage_table[int(draw() * 100)]
        limit = STAGE_LIMITS[workflow][stage] * DAY
        if draw() >= self.p_past:
            return stage, 60 + draw() * (limit - 120), "on_track"
        if draw() < SHARE_BEHIND:  # under a week past the limit: behind in both workflows
            return stage, limit + 60 + draw() * (7 * DAY - 120), "behind"
        stuck_from = limit + ESCALATE_AFTER_DAYS[workflow] * DAY
        if draw() < SHARE_STUCK_FOR_MONTHS:
            return stage, stuck_from + 45 * DAY + draw() * 195 * DAY, "stuck"
        return stage, stuck_from + 60 + draw() * 45 * DAY, "stuck"

    def chunk(self, start: int, stop: int) -> dict[str, list[Row]]:
        """The rows of accounts ``start`` to ``stop - 1`` (ids are one more), table by table."""
        rng, draw, ids, counts = self.rng, self.rng.random, self.ids, self.counts
        stamp, day, emails, owners = self.stamp, self.day, self.emails, self.owners
        out: dict[str, list[Row]] = {table: [] for table in COLUMNS if table != "person"}
        accounts, history, strategies = out["account"], out["history"], out["strategy"]
        roles, answers, actions = out["role_assignment"], out["answer"], out["action"]
        kpis, kpi_values, reviews, scores = (
            out["kpi"],
            out["kpi_value"],
            out["review"],
            out["score"],
        )
        for index in range(start, stop):
            account_id = index + 1
            owner_id = int(draw() * owners) + 1
            owner = emails[owner_id - 1]
            workflow = "kam-lite" if draw() < SHARE_LITE else "kam"
            stage, age, category = self._placement(workflow)
            if category == "behind":
                counts.behind += 1
            elif category == "stuck":
                counts.stuck += 1
            elif category == "candidate":
                counts.candidates += 1
            elif category == "exited":
                counts.exited += 1
            in_cycle = category in ("on_track", "behind", "stuck")
            # Accounts made straight into their first place keep created_at = stage_entered_at.
            if stage in ("candidate", "strategy") and draw() < 0.7:
                created_age = age
            else:
                created_age = age + 14 * DAY + draw() * 500 * DAY
            entered, created = stamp(age), stamp(created_age)
            accounts.append(
                (
                    account_id,
                    f"Account {account_id:07d}",
                    owner_id,
                    workflow,
                    "new" if draw() < 0.3 else "existing",
                    stage,
                    entered,
                    1,
                    created,
                )
            )
            content = (account_id, created, owner, "created", None, None, stage, "bench", "[]")
            sealed = dict(zip(CONTENT_COLUMNS, content, strict=True))
            sealed["at"] = datetime.fromisoformat(created)  # naive UTC, as the chain reads it
            self.history_head = row_hash(self.history_head, sealed)
            history.append((account_id, *content, self.history_head))
            # Plan data is dated between the account's creation and now.
            span = created_age

            group = stage if stage in ("candidate", "strategy") else category
            if draw() < STRATEGY_SHARE.get(group, STRATEGY_SHARE["later"]):
                strategies.append(
                    (
                        account_id,
                        f"Grow account {account_id} into a multi-site partnership",
                        "Head of operations, procurement lead, CFO",
                        "A reference customer in its sector with room for two more product lines",
                        stamp(draw() * span),
                        owner,
                    )
                )
            for role in rng.sample(ROLES, ROLE_COUNTS[int(draw() * 100)]):
                holder = owner_id if role == "relationship-lead" else int(draw() * owners) + 1
                roles.append((ids.role_assignment, account_id, role, holder, stamp(draw() * span)))
                ids.role_assignment += 1
            for question in rng.sample(QUESTIONS, ANSWER_COUNTS[int(draw() * 100)]):
                not_applicable = question not in REQUIRED_QUESTIONS and draw() < 0.08
                text = (
                    "Does not apply to a single-site customer."
                    if not_applicable
                    else f"Notes from the account team on {question}."
                )
                answers.append(
                    (
                        ids.answer,
                        account_id,
                        question,
                        text,
                        not_applicable,
                        stamp(draw() * span),
                        owner,
                    )
                )
                ids.answer += 1
            if category != "candidate":
                for _ in range(SCORE_COUNTS[int(draw() * 100)]):
                    self._score(scores, account_id, owner, stamp(draw() * span))
            elif draw() < 0.85:
                self._score(scores, account_id, owner, stamp(draw() * span))
            if not in_cycle:
                continue

            overdue = draw() < self.p_overdue
            if overdue:
                counts.overdue_action_accounts += 1
            planned = ACTION_COUNTS[int(draw() * 100)]
            for number in range(planned + overdue):
                created_at = stamp(draw() * min(span, 120 * DAY))
                if number == planned:  # the overdue one
                    due, status, done_at = day(-1 - int(draw() * 30)), "open", None
                elif draw() < 0.35:
                    due, status = day(int(draw() * 120) - 90), "done"
                    done_at = stamp(draw() * min(span, 60 * DAY))
                else:
                    due, status, done_at = day(1 + int(draw() * 120)), "open", None
                actor_id = owner_id if draw() < 0.7 else int(draw() * owners) + 1
                actions.append(
                    (
                        ids.action,
                        account_id,
                        ACTION_TITLES[int(draw() * len(ACTION_TITLES))],
                        actor_id,
                        due,
                        RESOURCES[int(draw() * len(RESOURCES))],
                        status,
                        created_at,
                        done_at,
                    )
                )
                ids.action += 1
            for name, unit, lower, typical in rng.sample(KPIS, KPI_COUNTS[int(draw() * 100)]):
                target = round(typical * (0.5 + draw()), 1)
                off = draw() < SHARE_KPI_OFF_TARGET
                factor = 0.6 + 0.35 * draw() if off != lower else 1.0 + 0.4 * draw()
                kpis.append((ids.kpi, account_id, name, target, unit, lower, stamp(draw() * span)))
                recorded_age = draw() * min(span, 90 * DAY)
                recorded = self.now - timedelta(seconds=recorded_age)
                period = f"{recorded.year}-Q{(recorded.month - 1) // 3 + 1}"
                kpi_values.append(
                    (
                        ids.kpi_value,
                        ids.kpi,
                        round(target * factor, 2),
                        period,
                        stamp(recorded_age),
                        owner,
                    )
                )
                ids.kpi += 1
                ids.kpi_value += 1
            for _ in range(REVIEW_COUNTS[int(draw() * 100)]):
                text = REVIEW_TEXTS[int(draw() * len(REVIEW_TEXTS))]
                reviews.append((ids.review, account_id, text, stamp(draw() * span), owner))
                ids.review += 1
        for table, rows in out.items():
            counts.rows[table] += len(rows)
        return out

    def _score(self, rows: list[Row], account_id: int, owner: str, at: str) -> None:
        draw = self.rng.random
        values = tuple(1 + int(draw() * 5) for _ in FACTORS)
        rows.append((self.ids.score, account_id, *values, score_total(values), at, owner))
        self.ids.score += 1


# --- writing -------------------------------------------------------------------------------------


class _Writer(Protocol):
    def write(self, table: str, rows: list[Row]) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


class _SqliteWriter:
    """executemany on the database file, one transaction per chunk, with the fsyncs off."""

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=OFF")
        self.connection.execute("PRAGMA cache_size=-65536")  # 64 MiB for the index pages
        self.connection.execute("BEGIN")

    def write(self, table: str, rows: list[Row]) -> None:
        columns = COLUMNS[table]
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        self.connection.executemany(sql, rows)

    def commit(self) -> None:
        self.connection.execute("COMMIT")
        self.connection.execute("BEGIN")

    def close(self) -> None:
        connection = self.connection
        if connection.in_transaction:
            connection.execute("COMMIT")
        connection.execute("PRAGMA synchronous=NORMAL")  # what kamflow itself uses
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()


class _PostgresWriter:
    """COPY through the psycopg connection of kamflow's engine, one transaction per chunk."""

    def __init__(self, engine: sa.Engine) -> None:
        self.proxy = engine.raw_connection()
        self.connection: Any = self.proxy.driver_connection
        assert self.connection is not None
        with self.connection.cursor() as cursor:
            # Timestamps are written as naive UTC text; read them as UTC (timestamptz columns).
            cursor.execute("SET TIME ZONE 'UTC'")

    def write(self, table: str, rows: list[Row]) -> None:
        sql = f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN"
        with self.connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        with self.connection.cursor() as cursor:
            for table in COLUMNS:
                if "id" in COLUMNS[table]:
                    # Ids were written explicitly: move each sequence past them for kamflow.
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
            # Autovacuum would analyse these tables at some point anyway; do it now so every
            # benchmark run sees the same plans.
            for table in COLUMNS:
                cursor.execute(f"ANALYZE {table}")
        self.connection.commit()
        self.proxy.close()


def _check_schema(engine: sa.Engine) -> None:
    """Refuse a schema this module does not fit, and a database that already has data."""
    inspector = sa.inspect(engine)
    for table, columns in COLUMNS.items():
        known = {column["name"]: column for column in inspector.get_columns(table)}
        missing = [c for c in columns if c not in known]
        if missing:
            raise BuildError(f"table {table} has no column {', '.join(missing)}: update {__file__}")
        unfilled = [
            name
            for name, column in known.items()
            if name not in columns
            and not column["nullable"]
            and column.get("default") is None
            and not column.get("autoincrement")
            and name != "id"
        ]
        if unfilled:
            raise BuildError(
                f"table {table} needs {', '.join(unfilled)}, which this module does not write"
            )
    with engine.connect() as connection:
        for table in ("person", "account"):
            if connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar():
                raise BuildError(f"the database already has rows in {table}: use a fresh one")


def _writer_for(engine: sa.Engine) -> tuple[_Writer, str | None]:
    """The bulk writer for the engine's database, and its file for SQLite."""
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if not path or path == ":memory:" or path.startswith("file:"):
            raise BuildError("give SQLite as a file: sqlite:////path/to/file.db")
        engine.dispose()  # no pooled connection of kamflow's stays open on the file
        return _SqliteWriter(path), path
    if engine.dialect.name == "postgresql":
        return _PostgresWriter(engine), None
    raise BuildError(f"no bulk writer for {engine.dialect.name}")


def build(
    url: str,
    accounts: int,
    *,
    now: datetime,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Create kamflow's schema at ``url`` and fill it with ``accounts`` accounts laid out around
    ``now`` (timezone-aware). Returns the counts: accounts, stalled (past their stage's limit at
    ``now``: behind + stuck), people, the rows per table, seconds taken and, on SQLite, bytes."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    if not 1 <= accounts <= 9_999_999:
        raise ValueError("accounts must be from 1 to 9,999,999")
    started = time.perf_counter()
    engine = db.ready_engine(url)
    _check_schema(engine)
    generator = _Generator(accounts, now, seed)
    writer, path = _writer_for(engine)
    try:
        writer.write("person", generator.people())
        for start in range(0, accounts, CHUNK):
            stop = min(accounts, start + CHUNK)
            for table, rows in generator.chunk(start, stop).items():
                writer.write(table, rows)
            writer.commit()
            if progress is not None:
                progress(f"{stop:,} accounts written ({time.perf_counter() - started:.1f} s)")
    finally:
        writer.close()
    counts = generator.counts
    result: dict[str, Any] = {
        "accounts": counts.accounts,
        "stalled": counts.stalled,
        "behind": counts.behind,
        "stuck": counts.stuck,
        "candidates": counts.candidates,
        "exited": counts.exited,
        "people": counts.people,
        "owners": counts.owners,
        "leaders": counts.leaders,
        "accounts_with_overdue_action": counts.overdue_action_accounts,
        "rows": {**counts.rows, "person": counts.people},
        "now": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if path is not None:
        result["bytes"] = os.path.getsize(path)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: build one database and print what it holds."""
    parser = argparse.ArgumentParser(
        description="Build a kamflow database with N accounts, fast, for benchmarks."
    )
    parser.add_argument("--accounts", type=int, required=True, metavar="N")
    parser.add_argument(
        "--url", required=True, help="sqlite:////tmp/x.db or postgresql+psycopg://..."
    )
    parser.add_argument(
        "--now",
        default=DEFAULT_NOW.isoformat().replace("+00:00", "Z"),
        help="the moment the data is laid out around (ISO 8601; default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = build(
            args.url, args.accounts, now=now, seed=args.seed, progress=None if args.quiet else say
        )
    except BuildError as error:
        sys.exit(f"portfolio_data: {error}")
    share = 100 * result["stalled"] / result["accounts"]
    print(
        f"{result['accounts']:,} accounts, {result['people']:,} people "
        f"({result['leaders']} leaders) in {result['seconds']:.1f} s"
    )
    print(
        f"past their stage's limit at {result['now']}: {result['stalled']:,} ({share:.2f}%): "
        f"{result['behind']:,} behind, {result['stuck']:,} stuck"
    )
    print(
        f"candidates {result['candidates']:,}, exited {result['exited']:,}, "
        f"accounts with an overdue action {result['accounts_with_overdue_action']:,}"
    )
    print("rows: " + ", ".join(f"{table} {n:,}" for table, n in result["rows"].items()))
    if "bytes" in result:
        print(f"database size: {result['bytes'] / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
