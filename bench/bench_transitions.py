"""How the cost of one transition grows with the number of accounts in the database.

kamflow never loads all accounts to move one, and never builds a state machine per account, so a
transition should cost about the same with 100 accounts or 10,000. Prints the ratio measured in one
run (this machine is shared and noisy: compare ratios, not seconds).

    .venv/bin/python bench/bench_transitions.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from kamflow import db, engine
from kamflow.models import Account
from kamflow.records import people, plan

NOW = datetime(2027, 1, 4, 9, tzinfo=UTC)
ACTOR = "owner@example.com"
MOVES = 60


def build(folder: Path, filler: int, tag: str) -> sa.Engine:
    eng = db.ready_engine(f"sqlite:///{folder / f'bench-{tag}.db'}")
    with db.session_scope(eng) as session:
        owner = people.add_person(session, ACTOR, now=NOW)
        # Written directly: a portfolio this large is far over the key-account cap on purpose.
        names = [(f"Filler {i}", "research") for i in range(filler)]
        names += [(f"Moving {i}", "strategy") for i in range(MOVES)]
        session.execute(
            sa.insert(Account),
            [
                {
                    "name": name,
                    "owner_id": owner.id,
                    "workflow": "kam",
                    "kind": "existing",
                    "stage": stage,
                    "stage_entered_at": NOW,
                    "version": 1,
                    "created_at": NOW,
                }
                for name, stage in names
            ],
        )
        for i in range(MOVES):
            plan.set_strategy(
                session, f"Moving {i}", objective="o", who="w", why="y", actor=ACTOR, now=NOW
            )
    return eng


def per_transition(eng: sa.Engine) -> float:
    timings = []
    for i in range(MOVES):
        start = time.perf_counter()
        with db.session_scope(eng) as session:
            engine.advance(session, f"Moving {i}", to="research", actor=ACTOR, now=NOW)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        per_transition(build(Path(folder), 100, "warm-up"))  # imports, caches
        small = build(Path(folder), 100, "small")
        large = build(Path(folder), 10_000, "large")
        t_small, t_large = per_transition(small), per_transition(large)
    print(f"median transition with    100 accounts: {t_small * 1000:7.2f} ms")
    print(f"median transition with 10,000 accounts: {t_large * 1000:7.2f} ms")
    print(
        f"ratio 10,000 / 100: {t_large / t_small:.2f} (about 1 means a transition does not grow "
        "with the portfolio)"
    )


if __name__ == "__main__":
    main()
