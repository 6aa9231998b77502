"""The errors kamflow reports to its users: one root, a shallow tree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kamflow.verdict import Verdict


class KamflowError(Exception):
    """Root of every error kamflow turns into a one-line message and an exit code."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The message as the CLI prints it: the first line, then any details."""
        return [str(self)]


class NotFound(KamflowError):
    """An account, person, role, stage, question, action, KPI or workflow that does not exist."""


class InvalidInput(KamflowError):
    """A value a user gave that kamflow cannot use (a bad date, number, name, or move)."""


class ConfigError(KamflowError):
    """A bad setting in the environment or on the command line."""


class DatabaseError(KamflowError):
    """The database cannot be opened or is not a kamflow database."""


class Conflict(KamflowError):
    """Someone changed the account meanwhile; nothing was written."""


class _Problems(KamflowError):
    """An error about one file that lists each of its problems on a line of its own."""

    summary = "is not valid"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source} {self.summary} ({count} {noun}):")

    def lines(self) -> list[str]:
        """The first line, then each problem indented on a line of its own."""
        return [str(self), *(f"  {problem}" for problem in self.problems)]


class InvalidWorkflow(_Problems):
    """A workflow or question-bank file that does not validate; nothing of it is loaded."""


class BrokenWorkflow(KamflowError):
    """A workflow that is needed and whose file does not load: its first problem, in one line."""


class GuardRefused(KamflowError):
    """A transition whose guards are not all met; every unmet guard is listed."""

    exit_code = 3

    def __init__(self, message: str, unmet: Sequence[Verdict]) -> None:
        self.unmet = list(unmet)
        super().__init__(message)

    def lines(self) -> list[str]:
        """The refusal, then the message of each unmet guard as an item of a list."""
        return [str(self), *(f"  - {verdict.message}" for verdict in self.unmet)]


class NotAllowed(KamflowError):
    """The person acting may not do this (a permission, not a missing item): nothing was written."""

    exit_code = 5

    def __init__(self, message: str) -> None:
        prefix = "" if message.startswith("not allowed") else "not allowed: "
        super().__init__(f"{prefix}{message}")


class BrokenHistory(KamflowError):
    """The history's hash chain does not hold: a row was changed or removed outside kamflow."""

    exit_code = 4


class DeliveryError(KamflowError):
    """A message could not be delivered."""


class TransientFailure(DeliveryError):
    """The server said "not now" (4xx, a timeout): the message is retried later."""

    def __init__(self, message: str, *, retry_after: float | datetime | None = None) -> None:
        super().__init__(message)
        #: How long the server asked to wait (HTTP Retry-After): seconds, or until a moment.
        self.retry_after = retry_after


class RateLimited(TransientFailure):
    """The server takes no more for now (HTTP 429): this message waits, and so does the rest."""


class PermanentFailure(DeliveryError):
    """The server refused the message for good (5xx): it becomes a dead letter."""


class TransportDown(DeliveryError):
    """Not the message's fault (no connection, TLS, authentication): the run stops, nothing dies."""


class ConnectionLost(TransportDown):
    """The server dropped the connection while taking one message: retried once on a fresh one."""


class InvalidFile(_Problems):
    """An input file (e.g. a CSV to import) with problems; every one is named, nothing is done."""

    summary = "was not imported"
