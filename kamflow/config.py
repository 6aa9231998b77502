"""Settings from the command line and the environment, validated once at start-up."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from kamflow import defaults
from kamflow.clock import Clock, clock_from


@dataclass(frozen=True)
class Settings:
    """Who acts, on which database, at what time."""

    database_url: str
    actor: str
    clock: Clock

    @classmethod
    def load(cls, *, database: str | None = None, actor: str | None = None) -> Settings:
        """--db, else $KAMFLOW_DB, else ./kamflow.db; --as, else $KAMFLOW_USER, else login."""
        url = database or os.environ.get(defaults.ENV_DATABASE) or defaults.DATABASE_URL
        who = actor or os.environ.get(defaults.ENV_USER) or _login_name()
        clock = clock_from(os.environ.get(defaults.ENV_NOW), source=defaults.ENV_NOW)
        return cls(database_url=url, actor=" ".join(who.split()).lower(), clock=clock)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
