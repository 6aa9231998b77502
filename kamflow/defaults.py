"""Every named default of kamflow, in one place."""

from __future__ import annotations

#: The database used when neither --db nor KAMFLOW_DB says otherwise.
DATABASE_URL = "sqlite:///kamflow.db"
#: The database `kamflow demo` (re)creates, leaving the user's own alone.
DEMO_DATABASE_FILE = "kamflow-demo.db"
#: How long a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 15_000
#: The workflow a new account follows unless told otherwise.
WORKFLOW = "kam"
#: The six account-team roles, in the order kamflow shows them.
ROLES = (
    "relationship-lead",
    "technical-expert",
    "collaborator",
    "project-manager",
    "innovator",
    "result-driver",
)
#: The kinds of key account.
ACCOUNT_KINDS = ("existing", "new")
#: Environment variables kamflow reads.
ENV_DATABASE = "KAMFLOW_DB"
ENV_USER = "KAMFLOW_USER"
ENV_NOW = "KAMFLOW_NOW"
ENV_WORKFLOWS = "KAMFLOW_WORKFLOWS"
