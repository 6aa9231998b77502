"""Where a benchmark's time goes: a function run under cProfile, its own time summed by group.

A group is a name and the marks that place a profiled function in it (a piece of its file path
or its name); the first group that matches wins, and what matches none is "Python and the rest".
cProfile slows Python code more than C code, so the shares lean towards Python: they say where
to look, not what a change would save.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

Groups = Sequence[tuple[str, Sequence[str]]]

SQLITE = (
    "the sqlite3 driver (C)",
    ("sqlite3.", "method 'execute'", "method 'commit'", "method 'fetch"),
)
PSYCOPG = (
    "psycopg and the server round trips",
    ("psycopg", "method 'recv", "method 'send", "select.", "poll"),
)
SQLALCHEMY = ("SQLAlchemy and SQLModel", ("sqlalchemy", "sqlmodel"))
REST = "Python and the rest"


def own_time(function: Callable[[], T], groups: Groups) -> tuple[T, list[str]]:
    """Run ``function`` once under cProfile; its result and one line per group, largest first:
    the group's share of the profiled own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        result = function()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    own: dict[str, float] = {}
    for (file, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        group = group_of(f"{file} {name}", groups)
        own[group] = own.get(group, 0.0) + row[2]
    total = sum(own.values()) or 1.0
    return result, [
        f"{name} {seconds / total:.0%}"
        for name, seconds in sorted(own.items(), key=lambda item: -item[1])
    ]


def group_of(where: str, groups: Groups) -> str:
    for name, marks in groups:
        if any(mark in where for mark in marks):
            return name
    return REST
