"""What the daemon's steps cost on large portfolios, measured against raw floors in the same run.

For each SQLite size a portfolio is built with `portfolio_data` (about 3.4% of the accounts past
their stage's limit at KAMFLOW_NOW), then:

1. floor, stall scan: the stalled-accounts query through the stdlib ``sqlite3`` module;
2. first tick: ``queue_due`` once on a fresh copy, against a raw script that runs the same scans
   and inserts as many outbox rows (with formatted text and HTML bodies) in batches of 500;
3. steady tick: ``tick`` in-process once everything queued is marked sent, against the floor (1)
   on the same file; then ``kamflow tick`` as a process;
4. the CLI commands as processes (wall time and peak RSS), the first ``tick`` on a fresh copy;
5. the daemon's peak RSS over its start-up pass;
6. a growth table across the sizes.

Then the same commands on PostgreSQL, and SMTP delivery against a raw ``smtplib`` loop. Every
figure is printed as it is measured; the tables go to a Markdown report. The machine is shared
and noisy: read the ratios (both sides measured in this one run), not the seconds, and never as a
pass or fail.

    .venv/bin/python bench/bench_steps.py [--sizes 10000,100000,1000000] [--pg-size 100000]
        [--smtp-messages 2000] [--quick] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import email.policy
import html
import importlib.metadata
import itertools
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, TypeVar

import portfolio_data
import profiles
import sqlalchemy as sa
import yaml

from kamflow import db
from kamflow.config import MailSettings, Schedule
from kamflow.models import MessageKind
from kamflow.notify.transports import SmtpSettings, SmtpTransport
from kamflow.outbox import Draft, Identity, queue_many
from kamflow.steps import queue_due, tick
from kamflow.steps.delivery import deliver

T = TypeVar("T")

#: What a table shows for a figure that is not there (an en dash).
NONE = "\u2013"

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: Scratch space: databases, outboxes, the HTML report (removed as the run goes).
WORK = Path("/tmp/kf-bench")
NOW = portfolio_data.DEFAULT_NOW
NOW_TEXT = NOW.isoformat().replace("+00:00", "Z")
TODAY = NOW.astimezone(UTC).date()
#: The largest size, at which the memory targets apply.
MILLION = 1_000_000
CLI_TIMEOUT = 900
DAEMON_TIMEOUT = 900
#: Short in-process measurements (under this many seconds) are taken as the best of three.
SHORT = 2.0
FLOOR_BATCH = 500
PG_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SMTP_SENDER = "kamflow@example.com"
PACKAGES = ("sqlalchemy", "sqlmodel", "psycopg", "aiosmtpd", "apscheduler")

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
DEFAULT_PG_SIZE = 100_000
DEFAULT_SMTP = 2_000
QUICK_SIZES = (2_000,)
QUICK_PG_SIZE = 2_000
QUICK_SMTP = 200


#: When the run started (for the elapsed time in the section headings).
STARTED = time.perf_counter()


def since_start() -> str:
    return f"{time.perf_counter() - STARTED:.0f} s into the run"


def say(line: str = "") -> None:
    """Print one line of progress at once (the run is long)."""
    print(line, flush=True)


def kamflow_command() -> list[str]:
    """The ``kamflow`` entry point of the running virtual environment."""
    script = Path(sys.executable).with_name("kamflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kamflow"]


def stamp(moment: datetime) -> str:
    """A moment as kamflow stores it in SQLite: naive UTC, 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 0.1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def ratio_text(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}"


def megabytes(kilobytes: float | None) -> str:
    return NONE if kilobytes is None else f"{kilobytes / 1024:.0f} MB"


def met(value: float | None, limit: float, *, at_least: bool = False) -> str:
    """Whether a figure is within its target (informative only)."""
    if value is None:
        return NONE
    return "yes" if (value >= limit if at_least else value <= limit) else "no"


def best_of(function: Callable[[], T], runs: int = 3) -> tuple[float, T]:
    """The best wall time of ``runs`` calls, and the last call's result."""
    best = float("inf")
    result: T | None = None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result  # type: ignore[return-value]


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """One call if it is long; the best of three if the first took under ``SHORT`` seconds."""
    started = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - started
    if elapsed < SHORT:
        again, result = best_of(function, 2)
        elapsed = min(elapsed, again)
    return elapsed, result


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def error_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(str(error))}"


# --- scratch files ---------------------------------------------------------------------------


class Scratch:
    """The files of this run under WORK, removed as soon as they are no longer needed."""

    def __init__(self) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        self.tag = f"{os.getpid()}"
        self.paths: set[Path] = set()

    def path(self, name: str) -> Path:
        found = WORK / f"{self.tag}-{name}"
        self.paths.add(found)
        return found

    def copy(self, source: Path, name: str) -> Path:
        target = self.path(name)
        shutil.copyfile(source, target)
        return target

    def remove(self, path: Path) -> None:
        for victim in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            if victim.is_dir():
                shutil.rmtree(victim, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    victim.unlink()
        self.paths.discard(path)

    def clean(self) -> None:
        for path in list(self.paths):
            self.remove(path)


def dispose(url: str) -> None:
    """Close kamflow's pooled connections to ``url`` (before its file is removed)."""
    with contextlib.suppress(Exception):
        db.engine_for(url).dispose()


# --- what the floors read ------------------------------------------------------------------------


def stage_limits() -> dict[str, dict[str, int]]:
    """Each workflow's stages and their limits in calendar days, read from workflows/*.yaml (a
    limit in business days as about as many calendar days: five business days to a week)."""
    found: dict[str, dict[str, int]] = {}
    for name in portfolio_data.STAGE_LIMITS:
        spec = yaml.safe_load((ROOT / "workflows" / f"{name}.yaml").read_text(encoding="utf-8"))
        found[name] = {
            stage["name"]: (
                int(stage["limit_days"])
                if "limit_days" in stage
                else round(int(stage["limit_business_days"]) * 7 / 5)
            )
            for stage in spec.get("stages", [])
            if "limit_days" in stage or "limit_business_days" in stage
        }
    if found != portfolio_data.STAGE_LIMITS:
        say("note: the limits in workflows/*.yaml differ from portfolio_data.STAGE_LIMITS")
    return found


STALL_SQL = (
    "SELECT a.id, a.name, a.stage_entered_at, p.email FROM account a "
    "JOIN person p ON p.id = a.owner_id "
    "WHERE a.workflow = ? AND a.stage = ? AND a.stage_entered_at <= ?"
)
ACTION_SQL = (
    "SELECT t.id, t.account_id, t.title, t.due, a.name, p.email FROM action t "
    "JOIN account a ON a.id = t.account_id JOIN person p ON p.id = t.owner_id "
    "WHERE t.status = 'open' AND t.due <= ?"
)
INSERT_SQL = (
    "INSERT INTO outbox (key, kind, account_id, stage, stage_entered_at, action_id, action_due, "
    "recipients, cc, subject, template, context, body_text, body_html, status, attempts, "
    "next_attempt_at, last_error, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, '', '', ?, ?, 'pending', 0, ?, '', ?) "
    "ON CONFLICT(key) DO NOTHING"
)
STALL_TEXT = (
    "Hello {owner},\n\n"
    "{account} has been in {stage} for {days} days (its limit is {limit} days).\n"
    'What the next move still needs: kamflow why "{account}"\n'
    'When it is done: kamflow advance "{account}"\n\n'
    "-- \nkamflow, key account management\n"
)
STALL_HTML = (
    "<!DOCTYPE html>\n<html><body>\n<p>Hello {owner},</p>\n"
    "<p><strong>{account}</strong> has been in {stage} for {days} days "
    "(its limit is {limit} days).</p>\n"
    "<p>What the next move still needs: <code>kamflow why &quot;{account}&quot;</code><br>\n"
    "When it is done: <code>kamflow advance &quot;{account}&quot;</code></p>\n"
    "<p>kamflow, key account management</p>\n</body></html>\n"
)
ACTION_TEXT = (
    "Hello {owner},\n\n"
    "{title} ({account}) was due on {due}, {days} days ago.\n"
    'Done? kamflow action done "{account}" {action}\n\n'
    "-- \nkamflow, key account management\n"
)
ACTION_HTML = (
    "<!DOCTYPE html>\n<html><body>\n<p>Hello {owner},</p>\n"
    "<p><strong>{title}</strong> ({account}) was due on {due}, {days} days ago.</p>\n"
    "<p>Done? <code>kamflow action done &quot;{account}&quot; {action}</code></p>\n"
    "<p>kamflow, key account management</p>\n</body></html>\n"
)

Scan = list[tuple[str, str, int, list[tuple[Any, ...]]]]


def floor_stall_scan(
    connection: Any, limits: dict[str, dict[str, int]], *, pg: bool = False
) -> Scan:
    """The stalled accounts, one query per workflow and stage, all rows fetched."""
    sql = STALL_SQL.replace("?", "%s") if pg else STALL_SQL
    found: Scan = []
    for workflow, stages in limits.items():
        for stage, limit in stages.items():
            cutoff: Any = NOW - timedelta(days=limit)
            if not pg:
                cutoff = stamp(cutoff)
            rows = connection.execute(sql, (workflow, stage, cutoff)).fetchall()
            found.append((workflow, stage, limit, rows))
    return found


def scanned(scan: Scan) -> int:
    return sum(len(rows) for *_, rows in scan)


def floor_outbox_rows(scan: Scan, actions: list[tuple[Any, ...]], wanted: int) -> Iterator[tuple]:
    """``wanted`` outbox rows with formatted bodies: the stalls, then the overdue actions (and
    round again with fresh keys if kamflow queued more than the scans found)."""
    now_text = stamp(NOW)
    naive_now = NOW.astimezone(UTC).replace(tzinfo=None)

    def one_round(turn: int) -> Iterator[tuple[Any, ...]]:
        for _workflow, stage, limit, rows in scan:
            for account_id, name, entered, address in rows:
                days = (naive_now - datetime.fromisoformat(entered)).days
                values = {
                    "owner": html.escape(address),
                    "account": html.escape(name),
                    "stage": stage,
                    "days": days,
                    "limit": limit,
                }
                yield (
                    f"floor:stall:{account_id}:{stage}:{entered}:{turn}",
                    MessageKind.REMINDER.value,
                    account_id,
                    stage,
                    entered,
                    None,
                    None,
                    address,
                    f"{name}: {days} days in {stage} (limit {limit})",
                    STALL_TEXT.format(**values),
                    STALL_HTML.format(**values),
                    now_text,
                    now_text,
                )
        for action_id, account_id, title, due, name, address in actions:
            days = (TODAY - datetime.fromisoformat(due).date()).days
            values = {
                "owner": html.escape(address),
                "account": html.escape(name),
                "title": html.escape(title),
                "due": due,
                "days": days,
                "action": action_id,
            }
            yield (
                f"floor:action:{action_id}:{due}:{turn}",
                MessageKind.ACTION.value,
                account_id,
                None,
                None,
                action_id,
                due,
                address,
                f"Overdue: {title} ({name})",
                ACTION_TEXT.format(**values),
                ACTION_HTML.format(**values),
                now_text,
                now_text,
            )

    if not scanned(scan) and not actions:
        return
    made = 0
    for turn in itertools.count():
        for row in one_round(turn):
            if made >= wanted:
                return
            made += 1
            yield row


def floor_first_tick(
    path: Path, limits: dict[str, dict[str, int]], wanted: int
) -> tuple[float, int]:
    """The raw first tick on ``path``: both scans, then ``wanted`` outbox rows in batches of 500,
    one BEGIN IMMEDIATE ... COMMIT each (with kamflow's own pragmas). (seconds, rows inserted)"""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=15000"):
            connection.execute(f"PRAGMA {pragma}")
        started = time.perf_counter()
        scan = floor_stall_scan(connection, limits)
        actions = connection.execute(ACTION_SQL, (TODAY.isoformat(),)).fetchall()
        inserted = 0
        batch: list[tuple[Any, ...]] = []

        def flush() -> int:
            connection.execute("BEGIN IMMEDIATE")
            before = connection.total_changes
            connection.executemany(INSERT_SQL, batch)
            connection.execute("COMMIT")
            return connection.total_changes - before

        for row in floor_outbox_rows(scan, actions, wanted):
            batch.append(row)
            if len(batch) >= FLOOR_BATCH:
                inserted += flush()
                batch = []
        if batch:
            inserted += flush()
        return time.perf_counter() - started, inserted
    finally:
        connection.close()


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Cli:
    """One command run as a process under /usr/bin/time."""

    label: str
    args: list[str]
    rc: int | None = None
    wall: float | None = None
    rss_kb: float | None = None
    error: str = ""
    stdout: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def figure(self) -> str:
        return f"{seconds(self.wall)}, {megabytes(self.rss_kb)}"

    def line(self) -> str:
        text = f"{self.label}: exit {self.rc}, {self.figure()}"
        if self.note:
            text += f"; {self.note}"
        if self.error:
            text += f"; FAILED: {self.error}"
        return text


def read_time_file(path: Path) -> list[float] | None:
    """The numbers of /usr/bin/time's last line ('%e %M' or '%M')."""
    with contextlib.suppress(OSError):
        for line in reversed(path.read_text(errors="replace").splitlines()):
            parts = line.split()
            try:
                return [float(part) for part in parts]
            except ValueError:
                continue
    return None


def run_cli(
    scratch: Scratch,
    label: str,
    url: str,
    args: list[str],
    env: dict[str, str],
    *,
    keep_stdout: bool = False,
) -> Cli:
    """``kamflow --db URL ARGS`` under ``/usr/bin/time -f '%e %M'`` and ``timeout 900``; stdout
    kept or thrown away (as ``> /dev/null``). A failure is recorded, never raised."""
    result = Cli(label, args)
    time_file = scratch.path("time.txt")
    command = [
        "/usr/bin/time",
        "-f",
        "%e %M",
        "-o",
        str(time_file),
        "timeout",
        str(CLI_TIMEOUT),
        *kamflow_command(),
        "--db",
        url,
        *args,
    ]
    try:
        done = subprocess.run(
            command,
            env=env,
            stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=CLI_TIMEOUT + 60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        result.error = error_line(error)
        return result
    result.rc = done.returncode
    numbers = read_time_file(time_file)
    scratch.remove(time_file)
    if numbers and len(numbers) >= 2:
        result.wall, result.rss_kb = numbers[0], numbers[1]
    if keep_stdout:
        result.stdout = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        if done.returncode == 124:
            result.error = f"timed out after {CLI_TIMEOUT} s"
        else:
            result.error = first_line(stderr) or f"exit {done.returncode}, nothing on stderr"
    return result


TICK_STEP = re.compile(r"^(?P<step>[a-z ]+): examined (?P<examined>\d+), queued (?P<queued>\d+)")
TICK_DELIVERY = re.compile(r"delivery: claimed (?P<claimed>\d+), sent (?P<sent>\d+)(?P<rest>.*)")


def tick_summary(stdout: str) -> tuple[int, int | None, str]:
    """(queued, sent, a one-line summary) from ``kamflow tick``'s output."""
    queued, sent, parts = 0, None, []
    for line in stdout.splitlines():
        step = TICK_STEP.match(line)
        if step:
            queued += int(step["queued"])
            parts.append(f"{step['step']} {int(step['queued']):,}")
        delivery = TICK_DELIVERY.search(line)
        if delivery:
            sent = int(delivery["sent"])
            rest = delivery["rest"].strip(", ")
            parts.append(
                f"claimed {int(delivery['claimed']):,}, sent {sent:,}"
                + (f", {rest}" if rest else "")
            )
    return queued, sent, "queued " + ", ".join(parts) if parts else "no summary printed"


def status_note(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("Accounts:"):
            return line.removeprefix("Accounts:").strip()
    return first_line(stdout)


def count_files(folder: Path) -> int:
    return sum(1 for item in folder.glob("*.eml")) if folder.is_dir() else 0


@dataclass
class DaemonRun:
    rss_kb: float | None = None
    ready_after: float | None = None
    delivery: str = ""
    error: str = ""


def children_of(pid: int) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(part) for part in text.split()]
    return []


def run_daemon(scratch: Scratch, url: str, env: dict[str, str]) -> DaemonRun:
    """``kamflow daemon`` under ``/usr/bin/time -f '%M'`` until it logs its start-up delivery,
    then SIGTERM; its peak RSS."""
    result = DaemonRun()
    log_path, time_file = scratch.path("daemon.log"), scratch.path("daemon-time.txt")
    command = [
        "/usr/bin/time",
        "-f",
        "%M",
        "-o",
        str(time_file),
        *kamflow_command(),
        "--db",
        url,
        "daemon",
    ]
    daemon_env = {
        **env,
        "KAMFLOW_STALL_INTERVAL": "1h",
        "KAMFLOW_DELIVERY_INTERVAL": "1h",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=daemon_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    started = time.perf_counter()
    seen = ""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as reader:
            while time.perf_counter() - started < DAEMON_TIMEOUT:
                seen += reader.read()
                found = re.search(r"delivery: claimed[^\n]*", seen)
                if found:
                    result.ready_after = time.perf_counter() - started
                    result.delivery = found.group(0).strip()
                    break
                if process.poll() is not None:
                    seen += reader.read()
                    result.error = f"exited ({process.returncode}) before its start-up delivery: "
                    result.error += first_line("\n".join(seen.splitlines()[-1:])) or "no output"
                    break
                time.sleep(0.25)
            else:
                result.error = f"no 'delivery: claimed' line within {DAEMON_TIMEOUT} s"
    finally:
        for pid in children_of(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for pid in children_of(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=30)
    numbers = read_time_file(time_file)
    if numbers:
        result.rss_kb = numbers[-1]
    scratch.remove(log_path)
    scratch.remove(time_file)
    return result


# --- results -------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    kamflow: str
    floor: str = NONE
    ratio: str = NONE
    target: str = NONE
    met: str = NONE


@dataclass
class Growth:
    accounts: int
    stalled: int | None = None
    overdue_actions: int | None = None
    queued: int | None = None
    build: float | None = None
    first_queue: float | None = None
    first_cli: Cli | None = None
    steady: float | None = None
    steady_cli: Cli | None = None
    forecast: Cli | None = None
    portfolio: Cli | None = None
    report: Cli | None = None
    daemon: DaemonRun | None = None


@dataclass
class Results:
    tables: dict[str, list[Row]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    commands: dict[str, list[tuple[str, Cli]]] = field(default_factory=dict)
    growth: list[Growth] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    pg_version: str = "not reachable"

    def add(self, table: str, row: Row) -> None:
        self.tables.setdefault(table, []).append(row)

    def note(self, table: str, text: str) -> None:
        self.notes.setdefault(table, []).append(text)

    def fail(self, text: str) -> None:
        say(f"FAILED: {text}")
        self.failures.append(text)

    def command(self, section: str, where: str, run: Cli) -> None:
        self.commands.setdefault(section, []).append((where, run))
        say(f"  {run.line()}")
        if not run.ok:
            self.failures.append(f"{section}, {where}: `{' '.join(run.args)}`: {run.error}")


T_STALL = "Floor: stall scan (stdlib sqlite3)"
T_FIRST = "First tick, queuing only (in-process)"
T_STEADY = "Steady tick (in-process; nothing due or pending)"
T_MEMORY = "Memory"
T_PG = "PostgreSQL: steady tick (in-process)"
T_SMTP = "SMTP delivery"
C_SQLITE = "SQLite"
C_PG = "PostgreSQL"


# --- the SQLite part -------------------------------------------------------------------------


def bench_env(outbox: Path) -> dict[str, str]:
    """The environment of every kamflow process: the bench's time, files for mail."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KAMFLOW_") and key not in ("SSL_CERT_FILE",)
    }
    env.update(
        KAMFLOW_NOW=NOW_TEXT,
        KAMFLOW_MAIL_TRANSPORT="file",
        KAMFLOW_OUTBOX_DIR=str(outbox),
        KAMFLOW_USER="bench@example.com",
    )
    return env


def mail_settings(outbox: Path) -> MailSettings:
    return MailSettings.load({"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(outbox)})


def warm_up(scratch: Scratch) -> None:
    """Import and cache what the first in-process measurement would otherwise pay for."""
    path = scratch.path("warm-up.db")
    outbox = scratch.path("outbox-warm-up")
    url = f"sqlite:///{path}"
    portfolio_data.build(url, 300, now=NOW)
    engine = db.ready_engine(url)
    tick(engine, NOW, Schedule.load({}), mail_settings(outbox))
    dispose(url)
    scratch.remove(path)
    scratch.remove(outbox)


def sqlite_size(size: int, scratch: Scratch, results: Results) -> None:
    """Every SQLite measurement at one size; at most the built file and one copy at a time."""
    growth = Growth(size)
    results.growth.append(growth)
    limits = stage_limits()
    schedule = Schedule.load({})
    say(f"\n== SQLite, {size:,} accounts ({since_start()})")
    original = scratch.path(f"{size}.db")
    try:
        built = portfolio_data.build(f"sqlite:///{original}", size, now=NOW)
    except Exception as error:
        results.fail(f"building {size:,} accounts: {error_line(error)}")
        scratch.remove(original)
        return
    dispose(f"sqlite:///{original}")
    growth.build = built["seconds"]
    growth.stalled = built["stalled"]
    say(
        f"built in {built['seconds']:.1f} s, {built.get('bytes', 0) / 1e6:,.0f} MB; "
        f"{built['stalled']:,} past their limit ({built['behind']:,} behind, "
        f"{built['stuck']:,} stuck); {built['accounts_with_overdue_action']:,} "
        "with an overdue action"
    )
    try:
        # 1. the floor: the stalled-accounts query, on the built file.
        connection = sqlite3.connect(original)
        try:
            floor1, scan = best_of(lambda: floor_stall_scan(connection, limits))
            growth.overdue_actions = len(
                connection.execute(ACTION_SQL, (TODAY.isoformat(),)).fetchall()
            )
        finally:
            connection.close()
        found = scanned(scan)
        say(f"floor, stall scan: {seconds(floor1)} (best of 3), {found:,} rows")
        results.add(
            T_STALL,
            Row(
                f"{size:,} accounts: {len(scan)} queries, {found:,} stalled accounts found",
                NONE,
                seconds(floor1),
            ),
        )
        first_tick(size, original, limits, schedule, scratch, results, growth)
        steady_tick(size, original, limits, schedule, scratch, results, growth)
        cli_commands(size, original, scratch, results, growth)
        daemon_rss(size, original, scratch, results, growth)
    finally:
        scratch.remove(original)


def first_tick(
    size: int,
    original: Path,
    limits: dict[str, dict[str, int]],
    schedule: Schedule,
    scratch: Scratch,
    results: Results,
    growth: Growth,
) -> None:
    """2. ``queue_due`` once on a fresh copy, then the raw floor on another fresh copy."""
    copy = scratch.copy(original, f"{size}-first.db")
    url = f"sqlite:///{copy}"
    kamflow_s: float | None = None
    try:
        engine = db.ready_engine(url)
        started = time.perf_counter()
        reports = queue_due(engine, NOW, schedule)
        kamflow_s = time.perf_counter() - started
        growth.first_queue = kamflow_s
        growth.queued = sum(len(report.queued) for report in reports)
        say(
            f"first tick (queue_due): {seconds(kamflow_s)}, queued {growth.queued:,} ("
            + "; ".join(report.summary() for report in reports)
            + ")"
        )
    except Exception as error:
        results.fail(f"{size:,}: queue_due on a fresh copy: {error_line(error)}")
    finally:
        dispose(url)
        scratch.remove(copy)
    if growth.queued is None:
        return
    copy = scratch.copy(original, f"{size}-floor.db")
    try:
        floor_s, inserted = floor_first_tick(copy, limits, growth.queued)
    finally:
        scratch.remove(copy)
    say(f"floor, first tick: {seconds(floor_s)}, {inserted:,} outbox rows inserted")
    ratio = kamflow_s / floor_s if kamflow_s and floor_s else None
    say(f"ratio first tick kamflow / floor: {ratio_text(ratio)} (target <= 3)")
    results.add(
        T_FIRST,
        Row(
            f"{size:,} accounts: `queue_due`, {growth.queued:,} queued / floor {inserted:,} rows",
            seconds(kamflow_s),
            seconds(floor_s),
            ratio_text(ratio),
            "≤ 3 at 1M",
            met(ratio, 3) if size >= MILLION else NONE,
        ),
    )
    if size >= MILLION and ratio is not None and ratio > 3:
        profile_first_tick(size, original, schedule, scratch, results)


KAMFLOW_GROUPS: profiles.Groups = (
    profiles.SQLITE,
    profiles.PSYCOPG,
    profiles.SQLALCHEMY,
    ("kamflow's steps", ("/kamflow/steps/",)),
    ("kamflow's outbox", ("/kamflow/outbox",)),
    ("the rest of kamflow", ("/kamflow/",)),
    ("json", ("/json/", "_json.")),
)


def profile_tick(table: str, run: Callable[[], object], results: Results) -> None:
    """Where one more steady tick that missed its target spends its time."""
    _, shares = profiles.own_time(run, KAMFLOW_GROUPS)
    say(f"{table}, own time by group: " + ", ".join(shares))
    results.note(
        table, "Where the tick's time goes (cProfile, own time): " + ", ".join(shares) + "."
    )


def profile_first_tick(
    size: int, original: Path, schedule: Schedule, scratch: Scratch, results: Results
) -> None:
    """Where a first tick that misses its target spends its time, on one more fresh copy."""
    copy = scratch.copy(original, f"{size}-profile.db")
    url = f"sqlite:///{copy}"
    try:
        engine = db.ready_engine(url)
        _, shares = profiles.own_time(lambda: queue_due(engine, NOW, schedule), KAMFLOW_GROUPS)
        say("first tick, own time by group: " + ", ".join(shares))
        results.note(
            T_FIRST,
            "Where the first tick's time goes (cProfile, own time): " + ", ".join(shares) + ".",
        )
    except Exception as error:
        results.fail(f"{size:,}: profiling queue_due: {error_line(error)}")
    finally:
        dispose(url)
        scratch.remove(copy)


def steady_tick(
    size: int,
    original: Path,
    limits: dict[str, dict[str, int]],
    schedule: Schedule,
    scratch: Scratch,
    results: Results,
    growth: Growth,
) -> None:
    """3. After a first tick with everything marked sent: ``tick`` in-process (best of 3) against
    the floor (1) on the same file (best of 3), then ``kamflow tick`` as a process."""
    copy = scratch.copy(original, f"{size}-steady.db")
    url = f"sqlite:///{copy}"
    outbox = scratch.path(f"outbox-{size}-steady")
    try:
        engine = db.ready_engine(url)
        queue_due(engine, NOW, schedule)
        with contextlib.closing(sqlite3.connect(copy, isolation_level=None)) as raw:
            raw.execute("UPDATE outbox SET status = 'sent'")
        mail = mail_settings(outbox)
        kamflow_s, report = best_of(lambda: tick(engine, NOW, schedule, mail))
        queued = sum(len(step.queued) for step in report.steps)
        claimed = report.delivery.claimed if report.delivery else None
        dispose(url)
        with contextlib.closing(sqlite3.connect(copy)) as connection:
            floor_s, scan = best_of(lambda: floor_stall_scan(connection, limits))
        growth.steady = kamflow_s
        ratio = kamflow_s / floor_s if floor_s else None
        if size >= MILLION and ratio is not None and ratio > 2:
            profile_tick(T_STEADY, lambda: tick(engine, NOW, schedule, mail), results)
        say(
            f"steady tick: {seconds(kamflow_s)} (best of 3; queued {queued}, claimed {claimed}); "
            f"floor {seconds(floor_s)} (best of 3, {scanned(scan):,} rows); ratio "
            f"{ratio_text(ratio)} (target <= 2)"
        )
        results.add(
            T_STEADY,
            Row(
                f"{size:,} accounts: `tick` (queued {queued}, delivered {claimed}) / stall scan",
                seconds(kamflow_s),
                seconds(floor_s),
                ratio_text(ratio),
                "≤ 2 at 1M",
                met(ratio, 2) if size >= MILLION else NONE,
            ),
        )
        if queued or claimed:
            results.fail(f"{size:,}: the steady tick queued {queued} and claimed {claimed}")
        env = bench_env(outbox)
        run = run_cli(scratch, "`tick` (steady)", url, ["tick"], env, keep_stdout=True)
        run.note = tick_summary(run.stdout)[2]
        growth.steady_cli = run
        results.command(C_SQLITE, f"{size:,}", run)
    except Exception as error:
        results.fail(f"{size:,}: steady tick: {error_line(error)}")
    finally:
        dispose(url)
        scratch.remove(copy)
        scratch.remove(outbox)


READ_COMMANDS: tuple[tuple[str, list[str]], ...] = (
    ("`forecast --days 14 --json > /dev/null`", ["forecast", "--days", "14", "--json"]),
    ("`portfolio > /dev/null`", ["portfolio"]),
    ("`portfolio --json > /dev/null`", ["portfolio", "--json"]),
    ("`coverage > /dev/null`", ["coverage"]),
    ("`kpis > /dev/null`", ["kpis"]),
    ("`status`", ["status"]),
)


def read_commands(
    where: str, url: str, scratch: Scratch, results: Results, section: str, env: dict[str, str]
) -> dict[str, Cli]:
    """The reading commands of (4), and the HTML report with its size."""
    runs: dict[str, Cli] = {}
    for label, args in READ_COMMANDS:
        run = run_cli(scratch, label, url, args, env, keep_stdout=args == ["status"])
        if args == ["status"] and run.ok:
            run.note = status_note(run.stdout)
        runs[args[0] + ("-json" if "--json" in args and args[0] == "portfolio" else "")] = run
        results.command(section, where, run)
    page = scratch.path("r.html")
    run = run_cli(scratch, "`report --html r.html`", url, ["report", "--html", str(page)], env)
    if run.ok and page.exists():
        run.note = f"{page.stat().st_size / 1e6:,.2f} MB written"
    runs["report"] = run
    results.command(section, where, run)
    scratch.remove(page)
    return runs


def cli_commands(
    size: int, original: Path, scratch: Scratch, results: Results, growth: Growth
) -> None:
    """4. The reading commands on the built file (an empty outbox), then the first ``tick`` with
    its delivery to files on a fresh copy."""
    outbox = scratch.path(f"outbox-{size}-cli")
    env = bench_env(outbox)
    url = f"sqlite:///{original}"
    runs = read_commands(f"{size:,}", url, scratch, results, C_SQLITE, env)
    growth.forecast, growth.portfolio, growth.report = (
        runs["forecast"],
        runs["portfolio"],
        runs["report"],
    )
    copy = scratch.copy(original, f"{size}-tick.db")
    try:
        run = run_cli(
            scratch,
            "`tick` (first, fresh copy)",
            f"sqlite:///{copy}",
            ["tick"],
            env,
            keep_stdout=True,
        )
        _queued, sent, run.note = tick_summary(run.stdout)
        files = count_files(outbox)
        run.note += f"; {files:,} .eml files"
        if sent is not None and files != sent:
            results.fail(f"{size:,}: first CLI tick sent {sent:,} but wrote {files:,} files")
        run.stdout = ""
        growth.first_cli = run
        results.command(C_SQLITE, f"{size:,}", run)
    finally:
        scratch.remove(copy)
        scratch.remove(outbox)
    for label, run, limit in (
        ("`tick` (first)", growth.first_cli, 150),
        ("`report --html`", growth.report, 300),
    ):
        what = f"{size:,} accounts: {label}, peak RSS"
        if run is not None and not run.ok:
            what += f" (the command failed, exit {run.rc}, after {seconds(run.wall)})"
        results.add(T_MEMORY, memory_row(what, run.rss_kb if run else None, limit, size))


def memory_row(what: str, rss_kb: float | None, limit_mb: int, size: int) -> Row:
    """A peak-RSS figure; the target applies at 1,000,000 accounts."""
    mb = rss_kb / 1024 if rss_kb is not None else None
    return Row(
        what,
        megabytes(rss_kb),
        target=f"≤ {limit_mb} MB at 1M",
        met=met(mb, limit_mb) if size >= MILLION else NONE,
    )


def daemon_rss(
    size: int, original: Path, scratch: Scratch, results: Results, growth: Growth
) -> None:
    """5. The daemon's peak RSS over its start-up pass, on a fresh copy."""
    copy = scratch.copy(original, f"{size}-daemon.db")
    outbox = scratch.path(f"outbox-{size}-daemon")
    try:
        run = run_daemon(scratch, f"sqlite:///{copy}", bench_env(outbox))
    finally:
        scratch.remove(copy)
        scratch.remove(outbox)
    growth.daemon = run
    ready = f"start-up pass done after {seconds(run.ready_after)}" if run.ready_after else ""
    say(f"daemon: peak RSS {megabytes(run.rss_kb)}; {ready}; {run.delivery or run.error}")
    if run.error:
        results.fail(f"{size:,}: daemon: {run.error}")
    row = memory_row(
        f"{size:,} accounts: `daemon`, peak RSS over its start-up pass", run.rss_kb, 150, size
    )
    if run.ready_after:
        row.what += f" ({seconds(run.ready_after)}; {run.delivery})"
    results.add(T_MEMORY, row)


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_part(size: int, scratch: Scratch, results: Results) -> None:
    """Every CLI command on PostgreSQL, and the steady tick against a raw psycopg floor."""
    import psycopg

    say(f"\n== PostgreSQL, {size:,} accounts ({since_start()})")
    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5)
    except Exception as error:
        say(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({error_line(error)}): skipped")
        results.note(T_PG, f"PostgreSQL was not reachable ({error_line(error)}); skipped.")
        return
    schema = f"kf_bench_{secrets.token_hex(4)}"
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    limits = stage_limits()
    outbox = scratch.path("outbox-pg")
    env = bench_env(outbox)
    try:
        results.pg_version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        admin.execute(f"CREATE SCHEMA {schema}")
        built = portfolio_data.build(url, size, now=NOW)
        say(f"built in {built['seconds']:.1f} s; {built['stalled']:,} past their limit")
        results.note(
            C_PG,
            f"{size:,} accounts built in {built['seconds']:.1f} s (COPY) in schema `{schema}`; "
            f"{built['stalled']:,} past their stage's limit.",
        )
        dispose(url)
        where = f"{size:,}"
        run = run_cli(
            scratch, "`tick --dry-run`", url, ["tick", "--dry-run"], env, keep_stdout=True
        )
        run.note = tick_summary(run.stdout)[2].replace("queued", "would queue", 1)
        run.stdout = ""
        results.command(C_PG, where, run)
        read_commands(where, url, scratch, results, C_PG, env)
        run = run_cli(scratch, "`tick` (first)", url, ["tick"], env, keep_stdout=True)
        run.note = tick_summary(run.stdout)[2] + f"; {count_files(outbox):,} .eml files"
        run.stdout = ""
        results.command(C_PG, where, run)
        scratch.remove(outbox)

        engine = db.ready_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE outbox SET status = 'sent'"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # What autovacuum does within a minute of the first tick's inserts: the planner sees
            # the outbox as it now is, not as the empty table it was.
            connection.execute(sa.text("ANALYZE"))
        schedule, mail = Schedule.load({}), mail_settings(outbox)
        kamflow_s, report = best_of(lambda: tick(engine, NOW, schedule, mail))
        queued = sum(len(step.queued) for step in report.steps)
        claimed = report.delivery.claimed if report.delivery else None
        dispose(url)
        with psycopg.connect(PG_SERVER, options=f"-csearch_path={schema}") as raw:
            floor_s, scan = best_of(lambda: floor_stall_scan(raw, limits, pg=True))
        ratio = kamflow_s / floor_s if floor_s else None
        if ratio is not None and ratio > 3:
            profile_tick(T_PG, lambda: tick(engine, NOW, schedule, mail), results)
        say(
            f"steady tick: {seconds(kamflow_s)} (best of 3; queued {queued}, claimed {claimed}); "
            f"floor {seconds(floor_s)} (best of 3, {scanned(scan):,} rows); ratio "
            f"{ratio_text(ratio)} (target <= 3)"
        )
        results.add(
            T_PG,
            Row(
                f"{size:,} accounts: `tick` (queued {queued}, delivered {claimed}) / stall scan "
                "(psycopg)",
                seconds(kamflow_s),
                seconds(floor_s),
                ratio_text(ratio),
                "≤ 3",
                met(ratio, 3),
            ),
        )
    except Exception as error:
        results.fail(f"PostgreSQL: {error_line(error)}")
    finally:
        dispose(url)
        scratch.remove(outbox)
        with contextlib.suppress(Exception):
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


# --- SMTP ------------------------------------------------------------------------------------


SMTP_SERVER = """
import sys, time
from aiosmtpd.controller import Controller

class Accept:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

controller = Controller(Accept(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def smtp_server() -> Iterator[int]:
    """An aiosmtpd server that accepts everything, in another process; its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SMTP_SERVER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the SMTP server did not start: {process.stderr.read()}")  # type: ignore[union-attr]
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


DIGEST_TEXT = (
    "Your kamflow digest for 2027-03-01 ({owner}).\n\nAccounts past their stage's time limit:\n"
    '  - Account {a}: 17 days in strategy (limit 14), behind. See: kamflow why "Account {a}"\n'
    '  - Account {b}: 30 days in research (limit 21), stuck. See: kamflow why "Account {b}"\n\n'
    "Items you were already reminded of today are left out.\n\n-- \nkamflow\n"
)
DIGEST_HTML = (
    "<!DOCTYPE html>\n<html><body>\n<p>Your kamflow digest for 2027-03-01 ({owner}).</p>\n<ul>\n"
    "<li><strong>Account {a}</strong>: 17 days in strategy (limit 14), behind. "
    "See: <code>kamflow why &quot;Account {a}&quot;</code></li>\n"
    "<li><strong>Account {b}</strong>: 30 days in research (limit 21), stuck. "
    "See: <code>kamflow why &quot;Account {b}&quot;</code></li>\n</ul>\n</body></html>\n"
)


def smtp_floor(port: int, messages: int) -> float:
    """M messages over one raw smtplib connection, each built as an EmailMessage. Seconds."""
    import smtplib

    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        for i in range(messages):
            owner = f"owner{i}@example.com"
            # The SMTP policy: CRLF line ends, as the DATA command needs them.
            message = EmailMessage(policy=email.policy.SMTP)
            message["From"] = SMTP_SENDER
            message["To"] = owner
            message["Subject"] = f"kamflow: your digest for 2027-03-01 (2 accounts, {i})"
            message["Message-ID"] = make_msgid(domain="example.com")
            message.set_content(DIGEST_TEXT.format(owner=owner, a=2 * i, b=2 * i + 1))
            message.add_alternative(
                DIGEST_HTML.format(owner=owner, a=2 * i, b=2 * i + 1), subtype="html"
            )
            client.sendmail(SMTP_SENDER, [owner], message.as_bytes())
    return time.perf_counter() - started


def digest_drafts(messages: int, period: str) -> list[Draft]:
    """M owner digests, two accounts each, as the owner-digest step would queue them."""
    drafts = []
    for i in range(1, messages + 1):
        owner = f"owner{i}@example.com"
        accounts = [
            {
                "name": f"Account {2 * i}",
                "days": 17,
                "stage": "strategy",
                "limit": 14,
                "status": "behind",
                "command": f'kamflow why "Account {2 * i}"',
            },
            {
                "name": f"Account {2 * i + 1}",
                "days": 30,
                "stage": "research",
                "limit": 21,
                "status": "stuck",
                "command": f'kamflow why "Account {2 * i + 1}"',
            },
        ]
        drafts.append(
            Draft(
                identity=Identity.digest(MessageKind.OWNER_DIGEST, person_id=i, period=period),
                recipients=[owner],
                cc=[],
                subject=f"kamflow: your digest for 2027-03-01 (2 accounts, {i})",
                template="owner_digest",
                context={"owner": owner, "day": "2027-03-01", "accounts": accounts, "actions": []},
            )
        )
    return drafts


def smtp_kamflow(url: str, port: int, messages: int, period: str) -> tuple[float, int, int]:
    """Queue M digests, then time ``deliver`` over SMTP until none is left. (s, sent, calls)"""
    engine = db.ready_engine(url)
    with db.session_scope(engine) as session:
        queue_many(session, digest_drafts(messages, period), now=NOW)
    transport = SmtpTransport(SmtpSettings.parse(f"smtp://127.0.0.1:{port}", None))
    sent = calls = 0
    started = time.perf_counter()
    while calls < 10:
        report = deliver(engine, transport, sender=SMTP_SENDER, now=NOW)
        calls += 1
        sent += report.sent
        if report.claimed == 0 or sent >= messages or report.stopped:
            break
    return time.perf_counter() - started, sent, calls


def smtp_part(messages: int, scratch: Scratch, results: Results) -> None:
    """Raw smtplib and kamflow's delivery, alternately, twice."""
    say(f"\n== SMTP delivery, {messages:,} messages, aiosmtpd in another process ({since_start()})")
    path = scratch.path("smtp.db")
    url = f"sqlite:///{path}"
    try:
        db.ready_engine(url)
        with smtp_server() as port:
            for turn in (1, 2):
                floor_s = smtp_floor(port, messages)
                kamflow_s, sent, calls = smtp_kamflow(url, port, messages, f"bench-{turn}")
                floor_rate, kamflow_rate = messages / floor_s, sent / kamflow_s
                ratio = kamflow_rate / floor_rate
                say(
                    f"run {turn}: floor {floor_rate:,.0f} msg/s ({seconds(floor_s)}); kamflow "
                    f"{kamflow_rate:,.0f} msg/s ({seconds(kamflow_s)}, {sent:,} sent in {calls} "
                    f"deliver call(s)); ratio {ratio:.2f} (target >= 0.8)"
                )
                if sent != messages:
                    results.fail(f"SMTP run {turn}: kamflow sent {sent:,} of {messages:,}")
                results.add(
                    T_SMTP,
                    Row(
                        f"run {turn}: {messages:,} messages, msg/s "
                        f"(kamflow: {sent:,} sent, {calls} `deliver` call(s))",
                        f"{kamflow_rate:,.0f}",
                        f"{floor_rate:,.0f}",
                        f"{ratio:.2f}",
                        "≥ 0.8",
                        met(ratio, 0.8, at_least=True),
                    ),
                )
    except Exception as error:
        results.fail(f"SMTP: {error_line(error)}")
    finally:
        dispose(url)
        scratch.remove(path)


# --- the report --------------------------------------------------------------------------------


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    revision = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "kamflow"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        revision = head + (" with uncommitted changes under kamflow/" if dirty else "")
    return [
        ("cores (nproc)", str(os.cpu_count())),
        ("CPU", cpu),
        ("RAM", ram),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("kamflow", revision),
        ("packages", ", ".join(versions)),
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def tables_text(results: Results) -> list[str]:
    """The tables, as printed at the end and written to the report."""
    out: list[str] = []
    for title, rows in results.tables.items():
        out += [f"### {title}", ""]
        out += markdown_table(
            ["what", "kamflow", "floor", "ratio", "target", "met?"],
            [(r.what, r.kamflow, r.floor, r.ratio, r.target, r.met) for r in rows],
        )
        out += [f"- {note}" for note in results.notes.get(title, [])]
        out.append("")
    if results.commands.get(C_SQLITE):
        out += ["### CLI commands on SQLite (each a process)", ""]
        out += command_table(results.commands[C_SQLITE])
        out.append("")
    if results.growth:
        out += ["### Growth with the portfolio (SQLite)", ""]
        out += growth_table(results.growth)
        out.append("")
    out += ["### PostgreSQL commands", ""]
    out += [f"- {note}" for note in results.notes.get(C_PG, [])]
    if results.commands.get(C_PG):
        out += ["", *command_table(results.commands[C_PG])]
    elif not results.notes.get(C_PG):
        out.append("Not run.")
    out.append("")
    return out


def command_table(runs: list[tuple[str, Cli]]) -> list[str]:
    return markdown_table(
        ["accounts", "command", "exit", "wall", "peak RSS", "notes"],
        [
            (
                where,
                run.label,
                NONE if run.rc is None else str(run.rc),
                seconds(run.wall),
                megabytes(run.rss_kb),
                "; ".join(
                    part
                    for part in (run.note, f"**failed**: {run.error}" if run.error else "")
                    if part
                ),
            )
            for where, run in runs
        ],
    )


def growth_table(growth: list[Growth]) -> list[str]:
    def cli(run: Cli | None) -> str:
        if run is None:
            return NONE
        return run.figure() + ("" if run.ok else f" (exit {run.rc})")

    def count(value: int | None) -> str:
        return NONE if value is None else f"{value:,}"

    return markdown_table(
        [
            "accounts",
            "due (stalled)",
            "overdue actions",
            "queued by first tick",
            "`tick` first (CLI)",
            "steady tick (in-process)",
            "`tick` steady (CLI)",
            "`forecast`",
            "`portfolio`",
            "`report --html`",
            "`daemon` peak RSS",
        ],
        [
            (
                f"{g.accounts:,}",
                count(g.stalled),
                count(g.overdue_actions),
                count(g.queued),
                cli(g.first_cli),
                seconds(g.steady),
                cli(g.steady_cli),
                cli(g.forecast),
                cli(g.portfolio),
                cli(g.report),
                megabytes(g.daemon.rss_kb) if g.daemon else NONE,
            )
            for g in growth
        ],
    )


def write_report(
    path: Path, results: Results, command: str, elapsed: float, started: datetime
) -> None:
    facts = machine()
    facts.insert(5, ("PostgreSQL server", results.pg_version))
    before = os.path.relpath(BENCH / "BEFORE.md", path.resolve().parent)
    lines = [
        "# kamflow steps: benchmark results",
        "",
        f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}. "
        f"The whole run took {elapsed / 60:.1f} min.",
        "",
        "Produced by:",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Machine",
        "",
        *[f"- {name}: {value}" for name, value in facts],
        "",
        "## How to read this",
        "",
        "- Data: `bench/portfolio_data.py`, seed 1, laid out around "
        f"KAMFLOW_NOW = {NOW_TEXT}; about 3.4% of the accounts are past their stage's limit.",
        "- Each ratio is kamflow's time over a raw floor on the same data, both measured in this "
        "one run; the machine is shared and noisy, so compare ratios, not seconds. Short "
        "in-process figures are the best of 3, long ones a single run; CLI figures are single "
        "runs under `/usr/bin/time -f '%e %M'` and `timeout 900` (wall seconds, peak RSS), "
        "process start-up included.",
        "- In-process figures come after a warm-up tick on a 300-account database, so imports "
        "and template loading are not counted in them.",
        "- Floors: the stdlib `sqlite3` module (or psycopg) running the stalled-accounts query, "
        "one per workflow and stage, with every row fetched; for the first tick also the overdue-"
        "actions query and the same number of outbox rows with formatted text and HTML bodies, "
        "inserted 500 per `BEGIN IMMEDIATE` transaction with kamflow's pragmas "
        "(WAL, synchronous=NORMAL, foreign keys on). The SMTP floor is one `smtplib` connection "
        "sending `EmailMessage`s (text and HTML) to an aiosmtpd server in another process.",
        "- The steady tick runs after a first tick with every outbox row marked sent, so nothing "
        "is due or pending (on PostgreSQL the tables are then analysed, as autovacuum would do "
        "within a minute of the first tick's inserts). The reading commands run on the freshly "
        "built file (empty outbox); the first `tick` and the daemon each on a fresh copy, "
        "delivering to .eml files.",
        "- The ratio targets of the SQLite steps apply at 1,000,000 accounts; at the smaller sizes "
        "a run's fixed costs (loading the workflows, compiling the statements of a fresh "
        "engine) weigh more than the work, and the growth table shows how the work follows what "
        "is due.",
        '- "met?" is for information only; nothing here passes or fails on time.',
        "- A single transition and the command line's start-up, against their own floors and "
        "with their profiles, are measured by `bench/bench_transitions.py` (the first half of "
        "`make bench`) and copied from its `TRANSITIONS.md` at the end of this file.",
        "",
        "## Results",
        "",
        *tables_text(results),
        "## Failures",
        "",
        *([f"- {text}" for text in results.failures] or ["None."]),
        "",
        "## Before",
        "",
        f"The same kinds of figures measured on the code before the steps rework are in "
        f"[BEFORE.md]({before}) (single runs, `tick` delivering at most 50 messages per run; "
        "`tick --dry-run` timed out at 1,000,000 accounts and `portfolio` failed on PostgreSQL).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(with_transitions("\n".join(lines), path.parent), encoding="utf-8")


def with_transitions(report: str, folder: Path) -> str:
    """The report with the transition benchmark's own report (``TRANSITIONS.md`` in ``folder``,
    written by the first half of `make bench`) appended as its last section, if there is one."""
    found = folder / "TRANSITIONS.md"
    if not found.exists():
        return report
    title, _, body = found.read_text(encoding="utf-8").partition("\n")
    heading = title.lstrip("# ").removeprefix("kamflow: ")
    return f"{report.rstrip()}\n\n## {heading[:1].upper()}{heading[1:]}\n{body}"


# --- main ------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", type=parse_sizes, help="SQLite sizes (default 10000,100000,1000000)"
    )
    parser.add_argument("--pg-size", type=int, help="PostgreSQL accounts (default 100000; 0 skips)")
    parser.add_argument("--smtp-messages", type=int, help="SMTP messages (default 2000; 0 skips)")
    parser.add_argument("--quick", action="store_true", help="2,000 accounts, 200 messages (CI)")
    parser.add_argument(
        "--results", type=Path, help="the Markdown report (default bench/RESULTS.md)"
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    pg_size = (
        args.pg_size
        if args.pg_size is not None
        else (QUICK_PG_SIZE if args.quick else DEFAULT_PG_SIZE)
    )
    smtp = (
        args.smtp_messages
        if args.smtp_messages is not None
        else (QUICK_SMTP if args.quick else DEFAULT_SMTP)
    )
    if args.results is not None:
        results_path = args.results
    elif args.quick:
        WORK.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="results-quick-", suffix=".md", dir=WORK)
        os.close(handle)
        results_path = Path(name)
    else:
        results_path = BENCH / "RESULTS.md"
    python = (
        os.path.relpath(sys.executable)
        if sys.executable.startswith(os.getcwd())
        else sys.executable
    )
    command = shlex.join(
        [python, os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)]
    )

    started_at = datetime.now(UTC)
    started = time.perf_counter()
    os.environ.update(KAMFLOW_NOW=NOW_TEXT, KAMFLOW_MAIL_TRANSPORT="file")
    results = Results()
    scratch = Scratch()
    say(
        f"kamflow steps benchmark: SQLite sizes {', '.join(f'{s:,}' for s in sizes)}; "
        f"PostgreSQL {pg_size:,}; SMTP {smtp:,} messages; KAMFLOW_NOW={NOW_TEXT}"
    )
    try:
        warm_up(scratch)
        for size in sizes:
            sqlite_size(size, scratch, results)
        if pg_size > 0:
            postgres_part(pg_size, scratch, results)
        if smtp > 0:
            smtp_part(smtp, scratch, results)
    finally:
        scratch.clean()
    elapsed = time.perf_counter() - started
    say("\n== Results\n")
    for line in tables_text(results):
        say(line)
    say("Failures: " + ("none" if not results.failures else ""))
    for text in results.failures:
        say(f"- {text}")
    write_report(results_path, results, command, elapsed, started_at)
    say(f"\nThe whole run took {elapsed:.0f} s ({elapsed / 60:.1f} min). Report: {results_path}")


if __name__ == "__main__":
    main()
