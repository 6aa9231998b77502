"""Every named default of kamflow, in one place."""

from __future__ import annotations

#: The years KAMFLOW_NOW may name (inclusive): far enough from datetime's limits (years 1 and
#: 9999) that every date kamflow reckons from "now" stays representable.
EARLIEST_YEAR = 1970
LATEST_YEAR = 9000
#: The database used when neither --db nor KAMFLOW_DB says otherwise.
DATABASE_URL = "sqlite:///kamflow.db"
#: The database `kamflow demo` (re)creates, leaving the user's own alone.
DEMO_DATABASE_FILE = "kamflow-demo.db"
#: The mode of the files kamflow creates that hold names and email addresses (the SQLite database,
#: reports, exports, outbox messages): readable and writable by their owner only.
PRIVATE_FILE_MODE = 0o600
#: The mode of the outbox folder when kamflow creates it.
PRIVATE_FOLDER_MODE = 0o700
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
#: The reminder and escalation ladder (KAM.md): remind the owner when a stage's limit is reached
#: and every N days after; escalate to leadership M days after the limit, then every K days.
REMIND_EVERY_DAYS = 3
ESCALATE_AFTER_DAYS = 7
ESCALATE_EVERY_DAYS = 7
#: Overdue plan actions: remind the action's owner on the due date, then every N days.
ACTION_REMIND_EVERY_DAYS = 3
#: How far `kamflow forecast` looks ahead by default, and at most.
FORECAST_DAYS = 14
MAX_FORECAST_DAYS = 366
#: A snooze pauses the ladder for at most this many days.
MAX_SNOOZE_DAYS = 30
#: The daemon's schedule (seconds for intervals; HH:MM in KAMFLOW_TIMEZONE for digests).
STALL_INTERVAL_SECONDS = 5 * 60
DELIVERY_INTERVAL_SECONDS = 60
OWNER_DIGEST_AT = "08:00"
LEADER_DIGEST_AT = "mon 08:00"
TIMEZONE = "UTC"
#: APScheduler: run a job that is late by up to this much rather than skipping it.
MISFIRE_GRACE_SECONDS = 15 * 60
#: Mail.
MAIL_FROM = "kamflow@localhost"
OUTBOX_DIR = "outbox"
#: Delivery: a run claims this many messages at a time and goes on claiming while its time lasts.
DELIVERY_BATCH = 100
LEASE_SECONDS = 5 * 60
#: A delivery run stops sending once this share of its lease has passed (another may reclaim).
LEASE_SHARE = 0.8
#: Results of sent messages are written at least this often (seconds), in one transaction.
DELIVERY_RECORD_SECONDS = 2.0
RETRY_FIRST_SECONDS = 60
RETRY_MAX_SECONDS = 6 * 60 * 60
MAX_ATTEMPTS = 8
#: The longest wait a server's Retry-After is followed for; a longer one is cut to this.
RETRY_AFTER_MAX_SECONDS = 24 * 60 * 60
#: The channels a message is delivered on, each with its bit in the outbox's ``delivered`` and
#: ``refused`` columns: mail (SMTP, files or the console) and chat (a webhook).
CHANNELS = {"mail": 1, "chat": 2}
#: Chat: the webhook's format by default, and at most how many characters of a message's text a
#: chat message carries (Slack shows about 4,000 before folding it; Teams takes about 28 KB).
WEBHOOK_FORMAT = "slack"
WEBHOOK_TEXT_LIMIT = 3000

#: The queuing steps work through what is due in batches of this many items, one transaction
#: each; it also bounds every IN list (far below the databases' parameter limits).
STEP_BATCH = 500
#: A leadership digest names at most this many accounts per list; the rest are counted.
DIGEST_LIST_LIMIT = 25
#: The HTML report draws and lists at most this many accounts per section.
REPORT_LIST_LIMIT = 50
#: Long listings (the board, rank, coverage, KPIs, the account list) read and print this many
#: rows at a time: their memory follows this, not the portfolio.
LISTING_BATCH = 1000
#: `kamflow history verify` reads the history this many rows at a time: its memory follows this,
#: not the length of the history.
HISTORY_VERIFY_BATCH = 10_000
#: The widest a cell of a text table may be, in terminal columns: a longer text is cut there
#: with an ellipsis (never in --json or CSV, which keep every text whole).
TABLE_CELL_WIDTH = 40

#: "Did you mean": at most how many near names an error offers; how alike a name must be (difflib's
#: ratio, 0 to 1) and how little less alike than the closest one to be offered too; at most how
#: many account names each indexed look for them reads.
SUGGESTIONS = 3
SUGGESTION_CUTOFF = 0.6
SUGGESTION_MARGIN = 0.1
NEAR_NAMES = 100

#: The kinds of key account (the values of models.AccountKind, named here for the CLI).
ACCOUNT_KINDS = ("existing", "new")
#: Environment variables kamflow reads: every one starts with ENV_PREFIX.
ENV_PREFIX = "KAMFLOW_"
ENV_DATABASE = "KAMFLOW_DB"
ENV_USER = "KAMFLOW_USER"
ENV_NOW = "KAMFLOW_NOW"
ENV_WORKFLOWS = "KAMFLOW_WORKFLOWS"
ENV_TIMEZONE = "KAMFLOW_TIMEZONE"
ENV_HOLIDAYS = "KAMFLOW_HOLIDAYS"
ENV_DEBUG = "KAMFLOW_DEBUG"
ENV_MAIL_TRANSPORT = "KAMFLOW_MAIL_TRANSPORT"
ENV_SMTP_URL = "KAMFLOW_SMTP_URL"
ENV_SMTP_PASSWORD = "KAMFLOW_SMTP_PASSWORD"
ENV_MAIL_FROM = "KAMFLOW_MAIL_FROM"
ENV_OUTBOX_DIR = "KAMFLOW_OUTBOX_DIR"
ENV_WEBHOOK_URL = "KAMFLOW_WEBHOOK_URL"
ENV_WEBHOOK_FORMAT = "KAMFLOW_WEBHOOK_FORMAT"
ENV_STALL_INTERVAL = "KAMFLOW_STALL_INTERVAL"
ENV_DELIVERY_INTERVAL = "KAMFLOW_DELIVERY_INTERVAL"
ENV_DELIVERY_LEASE = "KAMFLOW_DELIVERY_LEASE"
ENV_OWNER_DIGEST_AT = "KAMFLOW_OWNER_DIGEST_AT"
ENV_LEADER_DIGEST_AT = "KAMFLOW_LEADER_DIGEST_AT"
ENV_ACTION_REMIND_EVERY_DAYS = "KAMFLOW_ACTION_REMIND_EVERY_DAYS"
