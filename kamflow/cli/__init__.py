"""The kamflow command line, the only package that imports click.

Each command parses its arguments, calls one core function and renders the result. The modules:

- ``base``: the root group (``--db``, ``--as``, the settings built at start-up, every kamflow
  error turned into one ``Error:`` line and an exit code), sessions on the database, and the
  output helpers (JSON, tables, stage-change outcomes);
- ``people``: person add, list, edit, deactivate, activate;
- ``accounts``: account add, score, promote, swap, rank, set-workflow, rename, reassign, import,
  export, list, show;
- ``plan``: the account plan: strategy, role, plan (the questions), action, kpi;
- ``moves``: stage changes and their record: advance, disqualify, retire, reinstate, why, history;
- ``workflows``: workflow list, show, validate;
- ``reports``: the portfolio views: portfolio, coverage, kpis, report;
- ``daemon``: reminders and mail: snooze, unsnooze, tick, daemon, status, forecast, outbox;
- ``start``: init and demo;
- ``completion``: shell completion of accounts, people, roles, questions, KPIs, stages and
  workflows from the database, attached to every command's parameters by their names.

Heavy imports (SQLModel, Alembic, transitions, Jinja2, APScheduler) stay inside the command
functions, so that ``kamflow --help`` stays fast.
"""

from __future__ import annotations

# Importing a command module registers its commands on the root group.
from kamflow.cli import accounts, daemon, moves, people, plan, reports, start, workflows  # noqa: F401
from kamflow.cli.base import app, main
from kamflow.cli.completion import attach

attach(app)

__all__ = ["app", "main"]
