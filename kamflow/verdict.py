"""A guard's answer: met or not, and the sentence that says why."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One guard's answer: met or not, and a sentence saying why."""

    guard: str
    ok: bool
    message: str
    #: Met, but worth saying (e.g. an owner close to the cap).
    warning: bool = False
    #: Met only because a leader overrode the key-account cap (with a reason on record).
    overridden: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain data (as the history stores it and ``--json`` prints it)."""
        return asdict(self)


def verdicts_json(verdicts: list[Verdict]) -> str:
    """The verdicts as the history stores them."""
    return json.dumps([verdict.as_dict() for verdict in verdicts])


def overridden(verdicts: list[Verdict]) -> bool:
    """Whether a leader's override was what let these verdicts pass."""
    return any(verdict.overridden for verdict in verdicts)
