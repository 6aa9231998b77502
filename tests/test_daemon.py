"""The daemon's steps over a real database, the commands around them, and `kamflow daemon` itself.

Reminders, escalations, snoozes, overdue actions and digests run as the plain step functions on
SQLite and PostgreSQL, at the test clock's time. The daemon runs as a real process (SQLite only),
delivering to a real SMTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.config import MailSettings, Schedule
from kamflow.daemon import Daemon
from kamflow.engine import add_account, advance, close
from kamflow.errors import PermanentFailure
from kamflow.models import Account, HistoryEntry, HistoryKind, MessageKind, Notification
from kamflow.notify.message import bodies
from kamflow.notify.transports import FileTransport, SmtpSettings, SmtpTransport
from kamflow.outbox import Draft, Identity, queue
from kamflow.records import people, plan
from kamflow.records.snoozes import snooze
from kamflow.steps import tick
from kamflow.steps.actions import queue_action_reminders
from kamflow.steps.base import StepReport, StepRun
from kamflow.steps.delivery import deliver
from kamflow.steps.leader_digests import leader_view, queue_leader_digests
from kamflow.steps.owner_digests import queue_owner_digests
from kamflow.steps.stalls import queue_stalls
from tests.account_steps import ACCOUNT, OWNER, add_person, define_strategy, go, new_account
from tests.conftest import START, Cli, Runner, dispose, snapshot
from tests.tables import cells

LEADER = "boss@example.com"
CHIEF = "chief@example.com"
COLLEAGUE = "colleague@example.com"
DOER = "doer@example.com"
SENDER = "kamflow@example.com"
QUOTED = f"'{ACCOUNT}'"  # how the account is typed in a shell command
ACTION = "Send the CIO the pilot proposal"
UTC_SCHEDULE = Schedule.load({})
NEW_YORK = Schedule.load({"KAMFLOW_TIMEZONE": "America/New_York"})


# --- helpers ------------------------------------------------------------------------------------


def on_day(clock: FixedClock, days: float) -> datetime:
    """Set the clock to ``days`` after START (when ACCOUNT enters Strategy)."""
    clock.set(START + timedelta(days=days))
    return clock.now()


def team(engine: Engine, clock: FixedClock, run: Runner) -> None:
    """ACCOUNT in Strategy since START, owned by OWNER; two leaders and a colleague."""
    new_account(engine, clock, run)
    add_person(engine, clock, LEADER, leader=True)
    add_person(engine, clock, CHIEF, leader=True)
    add_person(engine, clock, COLLEAGUE)


def outbox(engine: Engine) -> list[Notification]:
    with db.session_scope(engine) as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))).all())


def stall_step(engine: Engine, clock: FixedClock) -> StepReport:
    return queue_stalls(StepRun(engine, clock.now(), UTC_SCHEDULE))


def stalls(engine: Engine, clock: FixedClock) -> list[str]:
    """Run the stall step at the clock's time; the subjects it queued."""
    return [item["subject"] for item in stall_step(engine, clock).queued]


def actions(engine: Engine, clock: FixedClock, zone: str = "UTC") -> list[str]:
    schedule = Schedule.load({"KAMFLOW_TIMEZONE": zone})
    report = queue_action_reminders(StepRun(engine, clock.now(), schedule))
    return [item["subject"] for item in report.queued]


def text_body(row: Notification) -> str:
    """The plain-text body the message will have when it is sent."""
    return bodies(row)[0]


def html_body(row: Notification) -> str:
    return bodies(row)[1]


def addressed(field: str) -> set[str]:
    return {part.strip() for part in field.split(",") if part.strip()}


def file_mail(folder: Path) -> dict[str, str]:
    return {
        "KAMFLOW_MAIL_TRANSPORT": "file",
        "KAMFLOW_OUTBOX_DIR": str(folder),
        "KAMFLOW_MAIL_FROM": SENDER,
    }


def eml_files(folder: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    found = []
    for path in sorted(folder.glob("*.eml")):
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content: str = part.get_content()
    return content


# --- the owner's reminders ----------------------------------------------------------------------


def test_nothing_is_queued_while_the_account_is_inside_its_limit(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)
    for day in (0, 7, 13):
        on_day(clock, day)
        assert stalls(engine, clock) == []
    clock.set(START + timedelta(days=14, seconds=-1))
    assert stalls(engine, clock) == []
    assert outbox(engine) == []


def test_the_owner_is_reminded_at_the_limit_with_what_is_missing_and_the_command(
    engine: Engine, clock: FixedClock, run: Runner, tmp_path: Path
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)

    assert stalls(engine, clock) == [f"{ACCOUNT} has been in Strategy for 14 days"]

    [row] = outbox(engine)
    assert (row.kind, row.status) == ("reminder", "pending")
    assert row.recipients == OWNER
    assert row.cc == ""
    body = text_body(row)
    assert "14 days" in body
    # the unmet guard, in words, and the exact commands to act
    assert "the strategy lacks the objective (what)" in body
    assert "the rationale (why)" in body
    assert f"kamflow strategy set {QUOTED}" in body
    assert f"kamflow why {QUOTED}" in body
    assert f"kamflow advance {QUOTED}" in body
    assert html_body(row).strip()

    folder = tmp_path / "outbox"
    report = deliver(engine, FileTransport(folder), sender=SENDER, now=clock.now())
    assert (report.claimed, report.sent, report.dead) == (1, 1, 0)
    [message] = eml_files(folder)
    assert message["To"] == OWNER
    assert message["Subject"] == f"{ACCOUNT} has been in Strategy for 14 days"
    assert message["Message-ID"].endswith("@example.com>")
    assert f"kamflow advance {QUOTED}" in text_of(message)
    assert [r.status for r in outbox(engine)] == ["sent"]


def test_the_reminder_repeats_every_three_days_while_the_account_is_behind(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)
    queued = {}
    for day in range(14, 21):
        on_day(clock, day)
        queued[day] = stalls(engine, clock)

    assert queued == {
        14: [f"{ACCOUNT} has been in Strategy for 14 days"],
        15: [],
        16: [],
        17: [f"{ACCOUNT} has been in Strategy for 17 days"],
        18: [],
        19: [],
        20: [f"{ACCOUNT} has been in Strategy for 20 days"],
    }
    rows = outbox(engine)
    assert [row.recipients for row in rows] == [OWNER] * 3
    assert [row.key.rsplit(":", 2)[1:] for row in rows] == [
        ["remind", "0"],
        ["remind", "1"],
        ["remind", "2"],
    ]


def test_at_limit_plus_seven_every_leader_gets_the_escalation_with_the_owner_in_cc(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)
    for day in range(14, 21):
        on_day(clock, day)
        stalls(engine, clock)

    on_day(clock, 21)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 21 days"]
    escalation = outbox(engine)[-1]
    assert escalation.kind == "escalation"
    assert addressed(escalation.recipients) == {LEADER, CHIEF}  # not the colleague
    assert addressed(escalation.cc) == {OWNER}
    assert "stuck" in text_body(escalation)
    assert "already had 3 reminders" in text_body(escalation)
    assert f"kamflow advance {QUOTED}" in text_body(escalation)

    # Once stuck, the escalations replace the owner's reminders: nothing until a week later.
    for day in range(22, 28):
        on_day(clock, day)
        assert stalls(engine, clock) == [], day
    on_day(clock, 28)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 28 days"]
    again = outbox(engine)[-1]
    assert addressed(again.recipients) == {LEADER, CHIEF}
    assert addressed(again.cc) == {OWNER}
    assert "already had 3 reminders" in text_body(again)
    assert [row.kind for row in outbox(engine)] == ["reminder"] * 3 + ["escalation"] * 2


def test_without_leaders_the_escalation_goes_to_the_owner_and_says_why(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    on_day(clock, 21)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 21 days"]
    [row] = outbox(engine)
    assert row.recipients == OWNER
    assert "kamflow person add EMAIL --leader" in text_body(row)


def test_an_owner_who_is_also_a_leader_gets_the_escalation_once(
    engine: Engine, clock: FixedClock, run: Runner, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    add_person(engine, clock, OWNER, leader=True)
    add_person(engine, clock, LEADER, leader=True)
    run(add_account, ACCOUNT, owner=OWNER)
    on_day(clock, 21)

    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 21 days"]
    [row] = outbox(engine)
    assert addressed(row.recipients) == {OWNER, LEADER}
    assert row.cc == ""

    assert deliver(engine, smtp_transport(port), sender=SENDER, now=clock.now()).sent == 1
    [message] = inbox.received()
    assert sorted(a.addr_spec for a in message["To"].addresses) == sorted([OWNER, LEADER])
    assert message["Cc"] is None


def test_nothing_is_queued_or_sent_twice_across_repeated_ticks_and_a_restart(
    engine: Engine, clock: FixedClock, run: Runner, database_url: str, tmp_path: Path
) -> None:
    new_account(engine, clock, run)
    folder = tmp_path / "mail"
    mail = MailSettings.load(file_mail(folder))
    on_day(clock, 14)

    first = tick(engine, clock.now(), UTC_SCHEDULE, mail)
    assert [item["subject"] for step in first.steps for item in step.queued] == [
        f"{ACCOUNT} has been in Strategy for 14 days"
    ]
    assert first.delivery is not None and first.delivery.sent == 1

    for _ in range(3):
        again = tick(engine, clock.now(), UTC_SCHEDULE, mail)
        assert [step.queued for step in again.steps] == [[], [], [], []]
        assert again.delivery is not None and again.delivery.claimed == 0

    # A "restart": the connections are dropped and the database opened anew; later the same day.
    engine.dispose()
    reopened = db.ready_engine(database_url)
    clock.advance(hours=5)
    later = tick(reopened, clock.now(), UTC_SCHEDULE, mail)
    assert [step.queued for step in later.steps] == [[], [], [], []]
    assert queue_stalls(StepRun(reopened, clock.now(), UTC_SCHEDULE)).queued == []

    assert len(outbox(reopened)) == 1
    assert len(eml_files(folder)) == 1


@pytest.mark.parametrize(
    ("day", "subject", "rung"),
    [
        (19, f"{ACCOUNT} has been in Strategy for 19 days", ["remind", "1"]),
        (34, f"Escalation: {ACCOUNT} has been in Strategy for 34 days", ["escalate", "1"]),
    ],
)
def test_after_downtime_one_message_catches_up_not_the_missed_repeats(
    engine: Engine, clock: FixedClock, run: Runner, day: int, subject: str, rung: list[str]
) -> None:
    team(engine, clock, run)
    on_day(clock, day)  # the first tick since the account was created

    assert stalls(engine, clock) == [subject]
    [row] = outbox(engine)
    assert row.key.rsplit(":", 2)[1:] == rung
    assert stalls(engine, clock) == []

    # and the ladder goes on from there
    on_day(clock, 35)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 35 days"]


def test_leaving_the_stage_resets_the_ladder(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    stalls(engine, clock)
    on_day(clock, 17)
    stalls(engine, clock)

    on_day(clock, 18)
    define_strategy(run)
    assert go(run) == "research"
    assert stalls(engine, clock) == []
    listed = json.loads(cli("account", "list", "--json").output)
    assert [(a["stage"], a["status"], a["days_in_stage"]) for a in listed] == [
        ("research", "on_track", 0)
    ]

    # Research's limit (21 days) counts from the day the account entered it.
    clock.set(START + timedelta(days=18 + 21, seconds=-1))
    assert stalls(engine, clock) == []
    on_day(clock, 18 + 21)
    assert stalls(engine, clock) == [f"{ACCOUNT} has been in Research for 21 days"]
    reminder = outbox(engine)[-1]
    assert ":research:" in reminder.key
    assert reminder.recipients == OWNER
    assert "Strategy" not in reminder.subject

    # The escalation counts only the reminders of this stay (39, 42, 45), not Strategy's two.
    for day in (42, 45):
        on_day(clock, day)
        stalls(engine, clock)
    on_day(clock, 18 + 28)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Research for 28 days"]
    assert "already had 3 reminders" in text_body(outbox(engine)[-1])


# --- snooze -------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", [COLLEAGUE, "stranger@example.com"])
def test_only_the_owner_or_a_leader_may_snooze(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, who: str
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    before = snapshot(engine)

    refused = cli("snooze", ACCOUNT, "--days", "7", "--reason", "Budget freeze", actor=who)

    assert refused.exit_code == 5, refused.output + refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith(
        f"Error: not allowed: only the owner, a leader or an admin may snooze {ACCOUNT}; "
    )
    assert f"acting for {who}" in line
    assert snapshot(engine) == before


@pytest.mark.parametrize("who", [OWNER, LEADER])
def test_the_owner_or_a_leader_snoozes_and_it_is_recorded_in_history(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, who: str
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)

    done = cli(
        "snooze", ACCOUNT, "--days", "7", "--reason", "Waiting for the CFO's budget", actor=who
    )

    assert done.exit_code == 0, done.stderr
    assert "paused until 2027-01-25" in done.output
    entries = json.loads(cli("history", ACCOUNT, "--json").output)
    last = entries[-1]
    assert (last["kind"], last["actor"]) == ("snooze", who)
    assert "Waiting for the CFO's budget" in last["note"]
    assert "2027-01-25" in last["note"]
    assert "Waiting for the CFO's budget" in cli("history", ACCOUNT).output


@pytest.mark.parametrize(
    ("days", "reason", "code", "says"),
    [
        ("0", "Budget freeze", 1, "1 to 30 days"),
        ("31", "Budget freeze", 1, "1 to 30 days"),
        ("-3", "Budget freeze", 1, "1 to 30 days"),
        ("seven", "Budget freeze", 1, "not a whole number"),
        ("7", "   ", 1, "reason"),
    ],
)
def test_a_snooze_needs_one_to_thirty_days_and_a_reason(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    cli: Cli,
    days: str,
    reason: str,
    code: int,
    says: str,
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    before = snapshot(engine)

    refused = cli("snooze", ACCOUNT, "--days", days, "--reason", reason)

    assert refused.exit_code == code, refused.output + refused.stderr
    assert refused.stderr.startswith("Error:")
    assert says in refused.stderr
    assert snapshot(engine) == before


def test_a_snooze_without_a_reason_is_a_usage_error_and_the_limits_are_inclusive(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    before = snapshot(engine)
    missing = cli("snooze", ACCOUNT, "--days", "7")
    assert missing.exit_code == 2
    assert "--reason" in missing.stderr
    assert snapshot(engine) == before

    assert cli("snooze", ACCOUNT, "--days", "1", "--reason", "Short pause").exit_code == 0
    thirty = cli("snooze", ACCOUNT, "--days", "30", "--reason", "Board meets next month")
    assert thirty.exit_code == 0, thirty.stderr
    assert "2027-02-17" in thirty.output


def test_while_snoozed_nothing_is_queued_and_afterwards_the_latest_rung_is(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    assert len(stalls(engine, clock)) == 1
    run(snooze, ACCOUNT, days=10, reason="Budget freeze until the board meets")

    for day in range(15, 24):
        on_day(clock, day)
        assert stalls(engine, clock) == [], day
    clock.set(START + timedelta(days=24, seconds=-1))
    assert stalls(engine, clock) == []
    assert len(outbox(engine)) == 1

    # The snooze ends on day 24: one message, the latest rung (the account is stuck by now).
    on_day(clock, 24)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 24 days"]
    assert stalls(engine, clock) == []
    assert len(outbox(engine)) == 2
    with db.session_scope(engine) as session:
        kinds = session.exec(select(HistoryEntry.kind).order_by(col(HistoryEntry.id))).all()
    assert kinds.count(HistoryKind.SNOOZE.value) == 1


def test_a_snooze_ends_when_the_account_leaves_the_stage(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)
    on_day(clock, 1)
    run(snooze, ACCOUNT, days=30, reason="Summer break")
    define_strategy(run)
    assert go(run) == "research"
    on_day(clock, 1 + 21)  # Research's limit, still inside the snooze's 30 days
    assert stalls(engine, clock) == [f"{ACCOUNT} has been in Research for 21 days"]


# --- overdue plan actions -----------------------------------------------------------------------


def add_overdue_action(engine: Engine, clock: FixedClock, run: Runner, due: str) -> int:
    add_person(engine, clock, DOER)
    action = run(plan.add_action, ACCOUNT, ACTION, owner=DOER, due=due)
    action_id: int = action.id
    return action_id


def test_an_overdue_action_reminds_its_owner_on_the_due_date_then_every_three_days(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    action_id = add_overdue_action(engine, clock, run, "2027-01-10")

    clock.set(datetime(2027, 1, 9, 23, 59, tzinfo=UTC))
    assert actions(engine, clock) == []
    clock.set(datetime(2027, 1, 10, 0, 0, tzinfo=UTC))
    assert actions(engine, clock) == [f"Action due today for {ACCOUNT}: {ACTION}"]
    [row] = outbox(engine)
    assert (row.kind, row.recipients) == ("action", DOER)
    assert f"kamflow action done {QUOTED} {action_id}" in text_body(row)

    queued = {}
    for day in range(10, 17):
        clock.set(datetime(2027, 1, day, 12, 0, tzinfo=UTC))
        queued[day] = actions(engine, clock)
    assert queued == {
        10: [],
        11: [],
        12: [],
        13: [f"Action 3 days overdue for {ACCOUNT}: {ACTION}"],
        14: [],
        15: [],
        16: [f"Action 6 days overdue for {ACCOUNT}: {ACTION}"],
    }
    assert {row.recipients for row in outbox(engine)} == {DOER}


def test_the_due_date_is_a_day_in_the_configured_time_zone(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    add_overdue_action(engine, clock, run, "2027-01-10")
    clock.set(datetime(2027, 1, 10, 4, 59, tzinfo=UTC))  # 23:59 on the 9th in New York
    assert actions(engine, clock, "America/New_York") == []
    clock.set(datetime(2027, 1, 10, 5, 0, tzinfo=UTC))
    assert actions(engine, clock, "America/New_York") == [
        f"Action due today for {ACCOUNT}: {ACTION}"
    ]


def test_a_done_action_is_not_reminded_again(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    action_id = add_overdue_action(engine, clock, run, "2027-01-10")
    clock.set(datetime(2027, 1, 10, 9, 0, tzinfo=UTC))
    assert len(actions(engine, clock)) == 1
    clock.set(datetime(2027, 1, 11, 9, 0, tzinfo=UTC))
    run(plan.complete_action, ACCOUNT, str(action_id), actor=DOER)

    for day in (13, 16, 25):
        clock.set(datetime(2027, 1, day, 9, 0, tzinfo=UTC))
        assert actions(engine, clock) == [], day
    assert len(outbox(engine)) == 1


def test_a_disqualified_accounts_actions_and_stalls_are_not_reminded(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    add_overdue_action(engine, clock, run, "2027-01-10")
    clock.set(datetime(2027, 1, 9, 9, 0, tzinfo=UTC))
    run(close, ACCOUNT, "disqualify", reason="No growth potential after all")

    for day in (10, 13, 25):
        clock.set(datetime(2027, 1, day, 9, 0, tzinfo=UTC))
        assert actions(engine, clock) == [], day
        assert stalls(engine, clock) == [], day
    assert outbox(engine) == []


# --- digests ------------------------------------------------------------------------------------


def owner_digests(engine: Engine, clock: FixedClock, schedule: Schedule) -> list[str]:
    report = queue_owner_digests(StepRun(engine, clock.now(), schedule))
    return [item["subject"] for item in report.queued]


def leader_digests(engine: Engine, clock: FixedClock) -> list[dict[str, Any]]:
    return queue_leader_digests(StepRun(engine, clock.now(), UTC_SCHEDULE)).queued


def test_the_owner_digest_is_queued_once_a_day_at_eight_in_the_configured_time_zone(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    on_day(clock, 14)  # Monday 2027-01-18 09:00 UTC: reminded
    assert len(stalls(engine, clock)) == 1

    # 08:00 UTC next day: a UTC owner would get it; in New York it is 03:00.
    clock.set(datetime(2027, 1, 19, 8, 0, tzinfo=UTC))
    would = queue_owner_digests(StepRun(engine, clock.now(), UTC_SCHEDULE, dry_run=True)).queued
    assert len(would) == 1
    assert owner_digests(engine, clock, NEW_YORK) == []
    clock.set(datetime(2027, 1, 19, 12, 59, tzinfo=UTC))
    assert owner_digests(engine, clock, NEW_YORK) == []

    clock.set(datetime(2027, 1, 19, 13, 0, tzinfo=UTC))  # 08:00 in New York
    [subject] = owner_digests(engine, clock, NEW_YORK)
    assert "digest" in subject.lower()
    digest = outbox(engine)[-1]
    assert (digest.kind, digest.recipients) == ("owner_digest", OWNER)
    assert digest.key.endswith("2027-01-19")
    assert ACCOUNT in text_body(digest)
    assert f"kamflow why {QUOTED}" in text_body(digest)

    for moment in (datetime(2027, 1, 19, 13, 30), datetime(2027, 1, 20, 4, 59)):
        clock.set(moment.replace(tzinfo=UTC))
        assert owner_digests(engine, clock, NEW_YORK) == []
    clock.set(datetime(2027, 1, 20, 13, 0, tzinfo=UTC))
    assert len(owner_digests(engine, clock, NEW_YORK)) == 1
    assert [row.kind for row in outbox(engine)] == ["reminder", "owner_digest", "owner_digest"]


def test_the_owner_digest_leaves_out_what_the_owner_was_reminded_of_that_day(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    add_person(engine, clock, OWNER)
    run(add_account, "Globex", owner=OWNER)  # limit reached on 2027-01-18
    clock.advance(days=2)
    run(add_account, ACCOUNT, owner=OWNER)  # limit reached on 2027-01-20

    clock.set(datetime(2027, 1, 18, 9, 0, tzinfo=UTC))
    assert stalls(engine, clock) == ["Globex has been in Strategy for 14 days"]
    clock.set(datetime(2027, 1, 20, 9, 0, tzinfo=UTC))  # 04:00 in New York
    assert stalls(engine, clock) == [f"{ACCOUNT} has been in Strategy for 14 days"]

    clock.set(datetime(2027, 1, 20, 13, 0, tzinfo=UTC))
    [subject] = owner_digests(engine, clock, NEW_YORK)
    assert "1 account" in subject
    body = text_body(outbox(engine)[-1])
    assert "Globex" in body
    assert ACCOUNT not in body


def test_no_owner_digest_when_everything_was_already_reminded_that_day(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    add_overdue_action(engine, clock, run, "2027-01-18")
    on_day(clock, 14)  # 2027-01-18 09:00 UTC
    assert len(stalls(engine, clock)) == 1
    assert len(actions(engine, clock)) == 1

    assert owner_digests(engine, clock, UTC_SCHEDULE) == []
    clock.set(datetime(2027, 1, 18, 13, 0, tzinfo=UTC))
    assert owner_digests(engine, clock, NEW_YORK) == []
    assert [row.kind for row in outbox(engine)] == ["reminder", "action"]


def test_the_owner_digest_names_an_account_whose_reminder_went_dead(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    new_account(engine, clock, run)
    on_day(clock, 14)  # 2027-01-18 09:00 UTC: reminded, but the server refuses the reminder
    assert len(stalls(engine, clock)) == 1
    assert deliver(engine, RefusingTransport(), sender=SENDER, now=clock.now()).dead == 1

    clock.set(datetime(2027, 1, 18, 13, 0, tzinfo=UTC))  # 08:00 in New York
    [subject] = owner_digests(engine, clock, NEW_YORK)

    assert "1 account" in subject
    assert ACCOUNT in text_body(outbox(engine)[-1])


class Statements:
    """The SQL statements an engine runs while this is open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[str] = []

    def _record(self, *args: Any) -> None:
        self.seen.append(str(args[2]).lower())

    def __enter__(self) -> Statements:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    def queries(self) -> list[str]:
        """The statements other than BEGIN, COMMIT and ROLLBACK."""
        return [sql for sql in self.seen if sql.split()[0] not in ("begin", "commit", "rollback")]

    def touching(self, table: str) -> list[str]:
        return [sql for sql in self.seen if re.search(rf"\b(from|join) {table}\b", sql)]


def test_once_the_digests_are_queued_a_tick_does_not_build_them_again(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    """Cron users tick every few minutes: a digest already queued costs a lookup, not a build."""
    team(engine, clock, run)
    run(plan.add_kpi, ACCOUNT, "Revenue growth", target="12", unit="%")
    add_overdue_action(engine, clock, run, "2027-01-18")
    on_day(clock, 14)  # Monday 2027-01-18 09:00 UTC: both digests are due
    assert len(owner_digests(engine, clock, UTC_SCHEDULE)) == 2  # the owner and the doer
    assert len(leader_digests(engine, clock)) == 2
    clock.advance(minutes=5)

    with Statements(engine) as owners:
        assert owner_digests(engine, clock, UTC_SCHEDULE) == []
    with Statements(engine) as heads:
        assert leader_digests(engine, clock) == []

    # Neither looked at snoozes, people's rows or KPIs: nothing was built to be thrown away.
    # The owners' step knows the day's pass is done (one lookup); the leaders' step asks the
    # outbox which leader still lacks the week's digest (one query).
    assert owners.touching("snooze") == owners.touching("person") == []
    assert owners.touching("outbox") == owners.touching("account") == []
    assert len(owners.queries()) == len(owners.touching("heartbeat")) == 1
    assert heads.touching("snooze") == heads.touching("kpi") == heads.touching("account") == []
    assert len(heads.touching("outbox")) == 1


def test_the_stall_step_asks_no_question_per_stalled_account(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    """A reminder says what the next move still needs, for a batch of accounts at a time: as many
    statements for twelve stalled accounts as for three (who may make the move is not asked)."""
    team(engine, clock, run)
    owners = [OWNER, LEADER, CHIEF, COLLEAGUE]

    def stalled_then_count(names: list[str]) -> int:
        clock.set(START)
        for index, name in enumerate(names):
            owner = owners[index % len(owners)]
            run(add_account, name, owner=owner, actor=owner)
        with db.session_scope(engine) as session:  # every stalled account queues again
            session.execute(sa.delete(Notification))
        on_day(clock, 20)  # past Strategy's limit
        with Statements(engine) as seen:
            queued = stalls(engine, clock)
        assert len(queued) >= len(names)
        return len(seen.queries())

    few = stalled_then_count([f"Few {n}" for n in range(2)])
    many = stalled_then_count([f"Many {n}" for n in range(9)])
    assert many == few


def test_the_leadership_digest_comes_on_monday_at_eight_with_the_portfolio(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)  # Acme Corp: in Strategy since Monday 2027-01-04 09:00
    run(plan.add_kpi, ACCOUNT, "Revenue growth", target="12", unit="%")
    run(plan.add_kpi, ACCOUNT, "Gross margin", target="30", unit="%")
    run(plan.record_kpi, ACCOUNT, "Revenue growth", "9.5")
    run(plan.record_kpi, ACCOUNT, "Gross margin", "34")
    clock.set(datetime(2027, 1, 15, 9, 0, tzinfo=UTC))
    run(add_account, "Globex", owner=OWNER)
    clock.set(datetime(2027, 1, 25, 8, 0, tzinfo=UTC))  # Monday
    assert len(leader_digests(engine, clock)) == 2
    run(add_account, "Initech", owner=OWNER)
    run(
        plan.set_strategy,
        "Initech",
        objective="Win the plant maintenance contract",
        who="The COO",
        why="Their in-house team is retiring",
    )
    run(advance, "Initech")

    clock.set(datetime(2027, 2, 1, 7, 59, tzinfo=UTC))
    assert leader_digests(engine, clock) == []
    clock.set(datetime(2027, 2, 1, 8, 0, tzinfo=UTC))
    queued = leader_digests(engine, clock)
    assert sorted(item["to"][0] for item in queued) == [LEADER, CHIEF]
    assert all(item["to"] == [item["to"][0]] and item["cc"] == [] for item in queued)
    subject = queued[0]["subject"]
    assert "digest" in subject.lower()
    assert "1 stuck" in subject and "1 behind" in subject
    clock.set(datetime(2027, 2, 1, 9, 0, tzinfo=UTC))
    assert leader_digests(engine, clock) == []

    body = text_body(outbox(engine)[-1])
    assert "kam / Strategy: 2" in body
    assert "kam / Research: 1" in body
    assert "kam / Action plan: 0" in body
    assert "Stuck (escalated to leadership): 1" in body
    assert "Behind: 1" in body
    assert "KPIs off target: 1" in body
    stuck = body.split("Stuck (escalated to leadership): 1", 1)[1].split("Behind: 1", 1)[0]
    behind = body.split("Behind: 1", 1)[1].split("KPIs off target", 1)[0]
    assert f"{ACCOUNT} ({OWNER})" in stuck and "Globex" not in stuck
    assert f"Globex ({OWNER})" in behind and ACCOUNT not in behind
    assert "Initech" not in stuck + behind  # on track in Research
    assert "Revenue growth: 9.5 % against a target of at least 12 %" in body
    assert "Gross margin" not in body

    with db.session_scope(engine) as session:
        view = leader_view(session, clock.now())
    counts = {row["stage"]: row["count"] for row in view["per_stage"]}
    assert (counts["Strategy"], counts["Research"], counts["Execution"]) == (2, 1, 0)
    assert [a["name"] for a in view["stuck"]] == [ACCOUNT]
    assert [a["name"] for a in view["behind"]] == ["Globex"]
    assert [k["kpi"] for k in view["kpis_off_target"]] == ["Revenue growth"]


# --- the commands: tick, status, forecast, account list -----------------------------------------


def test_tick_dry_run_lists_what_would_be_queued_and_writes_nothing(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, tmp_path: Path
) -> None:
    team(engine, clock, run)
    on_day(clock, 15)  # Tuesday: the first reminder is due
    env = file_mail(tmp_path / "mail")
    before = snapshot(engine)

    dry = cli("tick", "--dry-run", env=env)

    assert dry.exit_code == 0, dry.stderr
    assert f"would queue: {ACCOUNT} has been in Strategy for 15 days" in dry.output
    assert "stalls: examined 1, queued 1" in dry.output
    assert "delivery" not in dry.output
    as_json = cli("tick", "--dry-run", "--json", env=env)
    assert as_json.exit_code == 0, as_json.stderr
    data = json.loads(as_json.output)
    assert data["dry_run"] is True
    assert data["delivery"] is None
    assert f"{ACCOUNT} has been in Strategy for 15 days" in [q["subject"] for q in data["queued"]]
    assert snapshot(engine) == before
    assert not (tmp_path / "mail").exists()


def test_dry_run_lists_what_a_real_tick_queues_on_a_digest_morning(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, tmp_path: Path
) -> None:
    """Monday at the limit: a reminder, the leaders' digest; no owner digest (reminded today)."""
    team(engine, clock, run)
    on_day(clock, 14)
    env = file_mail(tmp_path / "mail")
    dry = json.loads(cli("tick", "--dry-run", "--json", env=env).output)["queued"]
    real = json.loads(cli("tick", "--json", env=env).output)["queued"]
    assert sorted(item["subject"] for item in dry) == sorted(item["subject"] for item in real)
    assert "owner_digest" not in {item["kind"] for item in real}


def test_tick_queues_and_delivers_into_the_outbox_folder(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, tmp_path: Path
) -> None:
    new_account(engine, clock, run)
    on_day(clock, 14)
    folder = tmp_path / "mail"

    done = cli("tick", env=file_mail(folder))

    assert done.exit_code == 0, done.stderr
    assert f"queued: {ACCOUNT} has been in Strategy for 14 days" in done.output
    assert "delivery: claimed 1, sent 1" in done.output
    assert str(folder) in done.output
    [message] = eml_files(folder)
    assert message["To"] == OWNER
    assert message["From"] == SENDER
    assert message["Subject"] == f"{ACCOUNT} has been in Strategy for 14 days"
    assert message["Message-ID"].endswith("@example.com>")
    assert "the strategy lacks" in text_of(message)
    listed = json.loads(cli("outbox", "list", "--json").output)
    assert [(m["status"], m["kind"], m["to"]) for m in listed] == [("sent", "reminder", OWNER)]

    again = cli("tick", env=file_mail(folder))
    assert again.exit_code == 0, again.stderr
    assert "stalls: examined 0, queued 0" in again.output  # found nothing new due
    assert "delivery: claimed 0, sent 0" in again.output
    assert len(eml_files(folder)) == 1


class RefusingTransport:
    """A server that refuses every message for good (550)."""

    name = "refusing"
    channel = "mail"

    def connect(self) -> RefusingTransport:
        return self

    def close(self) -> None:
        return None

    def send(self, message: EmailMessage) -> None:
        raise PermanentFailure("550 mailbox unavailable")


def smtp_transport(port: int) -> SmtpTransport:
    return SmtpTransport(SmtpSettings.parse(f"smtp://127.0.0.1:{port}", None))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- messages that are no longer true when their turn comes -------------------------------------


def _left_the_stage(engine: Engine, clock: FixedClock, run: Runner) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    assert len(stalls(engine, clock)) == 1
    on_day(clock, 15)
    define_strategy(run)
    assert go(run) == "research"


def _snoozed(engine: Engine, clock: FixedClock, run: Runner) -> None:
    team(engine, clock, run)
    on_day(clock, 21)
    assert len(stalls(engine, clock)) == 1  # the escalation
    run(snooze, ACCOUNT, days=10, reason="Budget freeze", actor=LEADER)


def _action_done(engine: Engine, clock: FixedClock, run: Runner) -> None:
    new_account(engine, clock, run)
    action_id = add_overdue_action(engine, clock, run, "2027-01-10")
    clock.set(datetime(2027, 1, 10, 9, 0, tzinfo=UTC))
    assert len(actions(engine, clock)) == 1
    clock.set(datetime(2027, 1, 11, 9, 0, tzinfo=UTC))
    run(plan.complete_action, ACCOUNT, str(action_id), actor=DOER)


def _disqualified(engine: Engine, clock: FixedClock, run: Runner) -> None:
    new_account(engine, clock, run)
    add_overdue_action(engine, clock, run, "2027-01-18")
    on_day(clock, 14)  # 2027-01-18: the reminder and the action reminder are queued
    assert len(stalls(engine, clock)) == len(actions(engine, clock)) == 1
    run(close, ACCOUNT, "disqualify", reason="No growth potential after all")


@pytest.mark.parametrize(
    ("story", "why"),
    [
        (_left_the_stage, f"{ACCOUNT} has left Strategy (now Research)"),
        (_snoozed, f"{ACCOUNT} is snoozed until 2027-02-04: Budget freeze"),
        (_action_done, "is done"),
        (_disqualified, "Disqualified"),
    ],
    ids=["left the stage", "snoozed", "action done", "disqualified"],
)
def test_a_message_no_longer_true_when_its_turn_comes_is_obsolete_not_sent(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    cli: Cli,
    smtp_server: tuple[Inbox, int],
    story: Callable[[Engine, FixedClock, Runner], None],
    why: str,
) -> None:
    """Queued while true, but the mail server was down until after the account moved on."""
    inbox, port = smtp_server
    story(engine, clock, run)
    queued = outbox(engine)
    assert queued and {row.status for row in queued} == {"pending"}

    report = deliver(engine, smtp_transport(port), sender=SENDER, now=clock.now())

    assert (report.claimed, report.sent, report.obsolete) == (len(queued), 0, len(queued))
    assert f"obsolete {len(queued)}" in report.summary()
    assert inbox.received() == []
    for row in outbox(engine):
        assert (row.status, row.attempts, row.lease_owner) == ("obsolete", 0, None)
        assert why in row.last_error, row.last_error
    listed = cli("outbox", "list", "--status", "obsolete")
    assert listed.exit_code == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.output.splitlines()[2:]) == sorted(
        str(row.id) for row in queued
    )
    data = json.loads(cli("status", "--json").output)
    assert data["outbox"] == {"pending": 0, "sent": 0, "dead": 0, "obsolete": len(queued)}
    clock.advance(hours=1)
    assert deliver(engine, smtp_transport(port), sender=SENDER, now=clock.now()).claimed == 0


def test_an_unknown_outbox_status_names_the_known_ones(engine: Engine, cli: Cli) -> None:
    refused = cli("outbox", "list", "--status", "lost")
    assert refused.exit_code == 1
    assert "pending, sent, dead, obsolete" in refused.stderr


# --- broken workflow files ----------------------------------------------------------------------


def test_a_broken_or_missing_workflow_file_holds_up_only_its_own_accounts(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    team(engine, clock, run)
    run(add_account, "Globex", owner=OWNER)
    run(add_account, "Initech", owner=OWNER)
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "broken.yaml").write_text("stages: [unfinished\n")
    (folder / "unused.yaml").write_text("stages:\n  - name: 42\n")  # nobody follows it
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    with db.session_scope(engine) as session:
        session.execute(
            sa.update(Account).where(col(Account.name) == "Globex").values(workflow="broken")
        )
        session.execute(
            sa.update(Account).where(col(Account.name) == "Initech").values(workflow="gone")
        )
    on_day(clock, 21)  # Monday: every account is stuck; the leadership digest is due

    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 21 days"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'broken'" in line and "skipped" in line for line in warned), warned
    assert any("'gone'" in line and "skipped" in line for line in warned), warned
    assert not any("'unused'" in line for line in warned), warned

    status = cli("status", "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["accounts"] == {"behind": 0, "stuck": 1, "snoozed": 0}
    forecast = cli("forecast", "--days", "14", "--json")
    assert forecast.exit_code == 0, forecast.stderr
    assert {row["account"] for row in json.loads(forecast.stdout)} == {ACCOUNT}
    # Each command says once which accounts it left out, and why.
    for result in (status, forecast):
        assert [line for line in result.stderr.splitlines() if "'broken'" in line] == [
            f"Warning: accounts following workflow 'broken' skipped: {folder / 'broken.yaml'} "
            "is not valid: line 2: bad YAML: expected ',' or ']', but got '<stream end>'"
        ]
    with db.session_scope(engine) as session:
        view = leader_view(session, clock.now())
    assert {row["workflow"] for row in view["per_stage"]} == {"kam"}
    assert [a["name"] for a in view["stuck"]] == [ACCOUNT]
    assert len(leader_digests(engine, clock)) == 2
    done = cli("tick", env=file_mail(tmp_path / "mail"))
    assert done.exit_code == 0, done.stderr


# --- status -------------------------------------------------------------------------------------


def test_status_shows_last_tick_queue_depth_dead_letters_and_stalled_accounts(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    add_person(engine, clock, OWNER)
    run(add_account, "Globex", owner=OWNER)
    clock.advance(days=7)
    run(add_account, ACCOUNT, owner=OWNER)
    on_day(clock, 21)  # Globex stuck, Acme Corp behind

    fresh = cli("status")
    assert fresh.exit_code == 0, fresh.stderr
    assert "Last tick: never" in fresh.output
    assert "Outbox: 0 pending (0 due now), 0 sent, 0 dead" in fresh.output
    assert "Accounts: 1 behind, 1 stuck" in fresh.output

    assert len(stalls(engine, clock)) == 2
    report = deliver(engine, RefusingTransport(), sender=SENDER, now=clock.now(), limit=1)
    assert report.dead == 1
    # A tick whose mail server is down: the queue step runs, delivery stops and says why.
    down = cli(
        "tick",
        env={
            "KAMFLOW_MAIL_TRANSPORT": "smtp",
            "KAMFLOW_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
        },
    )
    assert down.exit_code == 1
    assert "stopped" in down.output

    shown = cli("status")
    assert shown.exit_code == 0, shown.stderr
    assert "Last tick: 2027-01-25 09:00:00 UTC, ok" in shown.output
    assert "PROBLEM" in shown.output and "cannot connect" in shown.output
    # Pending: Acme Corp's reminder, and the owner's digest naming Globex (its escalation died).
    assert "Outbox: 2 pending (2 due now), 0 sent, 1 dead" in shown.output
    assert "Accounts: 1 behind, 1 stuck\n" in shown.output
    pending = [row for row in outbox(engine) if row.status == "pending"]
    assert sorted(row.kind for row in pending) == ["owner_digest", "reminder"]

    assert cli("snooze", ACCOUNT, "--days", "3", "--reason", "Owner on leave").exit_code == 0
    assert "Accounts: 1 behind, 1 stuck (1 of them snoozed)\n" in cli("status").output
    data = json.loads(cli("status", "--json").output)
    assert data["last_tick"]["at"] == "2027-01-25T09:00:00+00:00"
    assert data["outbox"] == {"pending": 2, "sent": 0, "dead": 1, "obsolete": 0}
    assert data["due_now"] == 2
    assert data["accounts"] == {"behind": 1, "stuck": 1, "snoozed": 1}


def test_forecast_lists_what_would_fire_leaving_out_what_is_already_queued(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    team(engine, clock, run)

    def forecast(days: str) -> list[tuple[str, str, int]]:
        shown = cli("forecast", "--days", days, "--json")
        assert shown.exit_code == 0, shown.stderr
        return [(row["at"][:10], row["kind"], row["repeat"]) for row in json.loads(shown.output)]

    assert forecast("13") == []
    assert forecast("14") == [("2027-01-18", "reminder", 0)]
    assert forecast("21") == [
        ("2027-01-18", "reminder", 0),
        ("2027-01-21", "reminder", 1),
        ("2027-01-24", "reminder", 2),
        ("2027-01-25", "escalation", 0),
    ]

    on_day(clock, 14)
    stalls(engine, clock)  # the first reminder is queued now
    assert forecast("14") == [
        ("2027-01-21", "reminder", 1),
        ("2027-01-24", "reminder", 2),
        ("2027-01-25", "escalation", 0),
        ("2027-02-01", "escalation", 1),
    ]
    text = cli("forecast", "--days", "14").output
    assert "2027-01-25" in text and "escalation" in text and ACCOUNT in text
    assert "2027-01-18" not in text

    bad = cli("forecast", "--days", "soon")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("Error:")


def test_forecast_lists_the_rung_that_fires_when_a_snooze_ends(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    team(engine, clock, run)
    on_day(clock, 14)
    assert len(stalls(engine, clock)) == 1
    run(snooze, ACCOUNT, days=10, reason="Budget freeze")  # until day 24, 2027-01-28 09:00

    shown = cli("forecast", "--days", "14", "--json")

    assert shown.exit_code == 0, shown.stderr
    rows = json.loads(shown.output)
    # The escalation due on day 21 is held back by the snooze and sent the moment it ends.
    assert [(row["at"], row["kind"], row["repeat"]) for row in rows] == [
        ("2027-01-28T09:00:00+00:00", "escalation", 0),
        ("2027-02-01T09:00:00+00:00", "escalation", 1),
    ]
    on_day(clock, 24)
    assert stalls(engine, clock) == [f"Escalation: {ACCOUNT} has been in Strategy for 24 days"]
    assert outbox(engine)[-1].key.endswith(":escalate:0")


def forecast_rows(cli: Cli, days: str, zone: str) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """`forecast --days N` as JSON, and the rows of its text table (without the header)."""
    env = {"KAMFLOW_TIMEZONE": zone}
    shown = cli("forecast", "--days", days, "--json", env=env)
    assert shown.exit_code == 0, shown.stderr
    text = cli("forecast", "--days", days, env=env)
    assert text.exit_code == 0, text.stderr
    return json.loads(shown.output), cells(text.output)[1:]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_forecast_text_and_json_agree_row_by_row_with_the_moment_each_message_is_sent(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, zone: str
) -> None:
    """Reminders, escalations and action reminders alike: `at` is the moment the daemon sends,
    in UTC, and the repeat is the daemon's own (0 for the first message)."""
    team(engine, clock, run)
    run(plan.add_action, ACCOUNT, "Call the CIO", owner=OWNER, due="2027-01-20")
    on_day(clock, 10)

    rows, table = forecast_rows(cli, "14", zone)

    assert [(row["kind"], row["repeat"]) for row in rows] == [
        ("reminder", 0),
        ("action", 0),
        ("reminder", 1),
        ("action", 1),
        ("reminder", 2),
        ("escalation", 0),
        ("action", 2),
    ]
    for row in rows:
        at = datetime.fromisoformat(row["at"])
        assert "T" in row["at"] and at.utcoffset() == timedelta(0), row
    assert [row["at"] for row in rows] == sorted(row["at"] for row in rows)
    assert table == [
        [
            f"{row['at'][:10]} {row['at'][11:16]}",
            row["kind"],
            row["account"],
            str(row["repeat"]),
            row.get("action") or row["stage"],
        ]
        for row in rows
    ]
    # Each action reminder goes out at the start of its day in KAMFLOW_TIMEZONE.
    first, second, _ = (
        datetime.fromisoformat(row["at"]) for row in rows if row["kind"] == "action"
    )
    assert first.astimezone(ZoneInfo(zone)) == datetime(2027, 1, 20, tzinfo=ZoneInfo(zone))
    assert second - first == timedelta(days=3)

    # Once due, what is not queued yet fires at the next tick: now, for both kinds alike.
    on_day(clock, 16.5)
    rows, table = forecast_rows(cli, "2", zone)
    assert [(row["at"], row["kind"], row["repeat"]) for row in rows][:2] == [
        (clock.now().isoformat(), "reminder", 0),
        (clock.now().isoformat(), "action", 0),
    ]
    assert [cell[3] for cell in table] == [str(row["repeat"]) for row in rows]

    clock.set(first - timedelta(seconds=1))
    assert actions(engine, clock, zone) == []
    clock.set(first)
    assert actions(engine, clock, zone) == [f"Action due today for {ACCOUNT}: Call the CIO"]
    assert outbox(engine)[-1].key.endswith(":0")


def test_account_list_shows_on_track_behind_and_stuck(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    new_account(engine, clock, run)
    seen = {}
    for day in (0, 13, 14, 20, 21, 40):
        on_day(clock, day)
        [row] = json.loads(cli("account", "list", "--json").output)
        seen[day] = (row["status"], row["days_in_stage"])
    assert seen == {
        0: ("on_track", 0),
        13: ("on_track", 13),
        14: ("behind", 14),
        20: ("behind", 20),
        21: ("stuck", 21),
        40: ("stuck", 40),
    }
    assert "stuck" in cli("account", "list").output


# --- the daemon's steps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "line"),
    [("actions", "Last tick"), ("owner digests", "Last tick"), ("delivery", "Last delivery")],
)
def test_a_failing_daemon_step_shows_as_a_problem_in_status(
    engine: Engine,
    clock: FixedClock,
    run: Runner,
    cli: Cli,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    step: str,
    line: str,
) -> None:
    new_account(engine, clock, run)
    add_overdue_action(engine, clock, run, "2027-01-18")
    on_day(clock, 14)
    daemon = Daemon(engine, clock, UTC_SCHEDULE, MailSettings.load(file_mail(tmp_path / "mail")))
    for name in ("queue", "delivery"):
        daemon.run_step(name)
    assert "PROBLEM" not in cli("status").output
    clock.advance(days=3)  # the next reminders are due
    if step == "delivery":
        daemon.run_step("queue")  # queued before the database breaks
    # The database loses a table under the daemon's feet.
    with db.session_scope(engine) as session:
        session.execute(sa.text("DROP TABLE action"))

    daemon.run_step(step)

    shown = cli("status")
    assert shown.exit_code == 0, shown.stderr
    [found] = [text for text in shown.output.splitlines() if text.startswith(line)]
    assert "2027-01-21 09:00:00" in found
    assert "PROBLEM" in found and f"{step} failed" in found and "action" in found
    assert f"step {step} failed" in caplog.text
    beat = json.loads(cli("status", "--json").output)[
        "last_tick" if line == "Last tick" else "last_delivery"
    ]
    assert beat["ok"] is False


# --- the daemon as a real process ---------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.delay = 0.0  # a slow server keeps one daemon's delivery running while others start
        self.started = 0  # how many messages began to arrive (DATA received, reply pending)

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        with self.lock:
            self.started += 1
        await asyncio.sleep(self.delay)
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def prepare(url: str, accounts: list[str], *, leaders: bool) -> Engine:
    """Accounts in Strategy since START, owned by OWNER, in the SQLite database at ``url``."""
    engine = db.ready_engine(url)
    with db.session_scope(engine) as session:
        people.add_person(session, OWNER, now=START)
        if leaders:
            people.add_person(session, LEADER, leader=True, now=START)
            people.add_person(session, CHIEF, leader=True, now=START)
    for name in accounts:
        with db.session_scope(engine) as session:
            # More accounts than one owner may hold: a leader goes over the cap, on record.
            add_account(
                session,
                name,
                owner=OWNER,
                actor=LEADER if leaders else OWNER,
                override="a load test of several daemons" if leaders else None,
                now=START,
            )
    return engine


def start_daemon(
    url: str, folder: Path, port: int, now: datetime, name: str
) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAMFLOW_")}
    env.update(
        {
            "KAMFLOW_NOW": now.isoformat(),
            "KAMFLOW_USER": "daemon@example.com",
            "KAMFLOW_MAIL_TRANSPORT": "smtp",
            "KAMFLOW_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "KAMFLOW_MAIL_FROM": SENDER,
            "KAMFLOW_STALL_INTERVAL": "1",
            "KAMFLOW_DELIVERY_INTERVAL": "1",
        }
    )
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kamflow", "--db", url, "daemon"],
            env=env,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the daemon took to exit."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the daemon did not exit within 10 s of SIGTERM") from None
    return code, time.monotonic() - started


def log_of(folder: Path, name: str) -> str:
    return (folder / f"{name}.log").read_text(errors="replace")


STEP_LINES = {
    "stalls": r"stalls: examined \d+, queued \d+",
    "actions": r"actions: examined \d+, queued \d+",
    "owner digests": r"owner digests: examined \d+, queued \d+",
    "leader digests": r"leader digests: examined \d+, queued \d+",
    "delivery": r"delivery: claimed \d+, sent \d+, retry later \d+, dead \d+",
}


def test_the_daemon_delivers_the_reminder_over_smtp_and_stops_cleanly_on_sigterm(
    sqlite_url: str, tmp_path: Path, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    engine = prepare(sqlite_url, [ACCOUNT], leaders=False)
    daemon = start_daemon(sqlite_url, tmp_path, port, START + timedelta(days=14), "daemon")
    try:
        wait_for(lambda: len(inbox.received()) >= 1, "the reminder to arrive")
        wait_for(lambda: "sent 1" in log_of(tmp_path, "daemon"), "the delivery to be logged")
        code, took = stop(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    log = log_of(tmp_path, "daemon")
    assert code == 0, log
    assert took < 5, f"took {took:.1f} s to stop"
    [message] = inbox.received()
    assert message["To"] == OWNER
    assert message["Subject"] == f"{ACCOUNT} has been in Strategy for 14 days"
    assert message["Message-ID"].endswith("@example.com>")
    for step, pattern in STEP_LINES.items():
        assert re.search(pattern, log), f"no {step} line in the log:\n{log}"
    assert "stalls: examined 1, queued 1" in log
    assert re.search(r"delivery: claimed 1, sent 1, retry later 0, dead 0", log), log
    assert "Traceback" not in log
    assert [row.status for row in outbox(engine)] == ["sent"]


def test_two_daemons_on_one_database_deliver_each_message_once(
    sqlite_url: str, tmp_path: Path, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    inbox.delay = 0.2
    names = [f"Account {letter}" for letter in "ABCDEFGH"]
    engine = prepare(sqlite_url, names, leaders=True)
    now = START + timedelta(days=21)  # Monday: every account is stuck; the weekly digest is due
    first = start_daemon(sqlite_url, tmp_path, port, now, "first")
    second = start_daemon(sqlite_url, tmp_path, port, now, "second")
    daemons = [first, second]

    def all_sent() -> bool:
        rows = outbox(engine)
        return len(rows) >= len(names) and all(row.status == "sent" for row in rows)

    def both_delivered_a_few_times() -> bool:
        return all(
            log_of(tmp_path, name).count("delivery: claimed") >= 3 for name in ("first", "second")
        )

    try:
        wait_for(all_sent, "every queued message to be sent")
        wait_for(both_delivered_a_few_times, "both daemons to run delivery a few times")
        codes = [stop(daemon)[0] for daemon in daemons]
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()

    assert codes == [0, 0], log_of(tmp_path, "first") + log_of(tmp_path, "second")
    rows = outbox(engine)
    assert [row.kind for row in rows].count(MessageKind.ESCALATION) == len(names)
    assert [row.kind for row in rows].count(MessageKind.LEADER_DIGEST) == 2
    arrivals = Counter(message["Message-ID"] for message in inbox.received())
    assert {mid: n for mid, n in arrivals.items() if n > 1} == {}
    assert len(arrivals) == len(rows)
    logs = log_of(tmp_path, "first") + log_of(tmp_path, "second")
    assert "Traceback" not in logs

    def total(step: str) -> int:
        return sum(int(n) for n in re.findall(rf"{step}: examined \d+, queued (\d+)", logs))

    # Both daemons ran every step; between them each message was queued and sent once.
    assert total("stalls") == len(names)
    assert total("leader digests") == 2
    assert sum(int(n) for n in re.findall(r"delivery: claimed \d+, sent (\d+)", logs)) == len(rows)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_while_the_daemon_stops_exits_at_once_with_128_plus_its_number(
    sqlite_url: str, tmp_path: Path, smtp_server: tuple[Inbox, int], signum: signal.Signals
) -> None:
    inbox, port = smtp_server
    engine = prepare(sqlite_url, [ACCOUNT], leaders=False)
    now = START + timedelta(days=14)
    daemon = start_daemon(sqlite_url, tmp_path, port, now, "daemon")
    try:
        wait_for(lambda: "sent 1" in log_of(tmp_path, "daemon"), "the start-up delivery")
        # A message the server takes a long time over: the daemon is inside a delivery step.
        inbox.delay = 20
        with db.session_scope(engine) as session:
            slow = Draft(
                Identity.digest(MessageKind.OWNER_DIGEST, person_id=1, period="slow"),
                [OWNER],
                [],
                "Slow",
                body_text="Slow\n",
            )
            queue(session, slow, now=now)
        wait_for(lambda: inbox.started >= 2, "the slow message to be on its way")
        daemon.send_signal(signum)
        wait_for(
            lambda: "finishing the current step" in log_of(tmp_path, "daemon"),
            "the daemon to begin stopping",
        )
        assert daemon.poll() is None  # it waits for the delivery to finish ...
        started = time.monotonic()
        daemon.send_signal(signum)  # ... unless told again
        code = daemon.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    assert code == 128 + signum, log_of(tmp_path, "daemon")
    assert took < 5, f"took {took:.1f} s to exit"
    assert len(inbox.received()) == 1  # the slow message never finished


# --- the typed outbox, the bounded leadership digest, the migration of old rows ------------------


def test_a_queued_message_says_what_it_is_about_in_columns(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    team(engine, clock, run)
    action_id = add_overdue_action(engine, clock, run, "2027-01-18")
    on_day(clock, 21)  # 2027-01-25: stuck, and the action is a week late
    stalls(engine, clock)
    actions(engine, clock)

    escalation, reminder = outbox(engine)
    with db.session_scope(engine) as session:
        account = session.exec(select(Account)).one()
    assert (escalation.kind, escalation.account_id, escalation.stage) == (
        "escalation",
        account.id,
        "strategy",
    )
    assert escalation.stage_entered_at == account.stage_entered_at
    assert (escalation.rung, escalation.repeat) == ("escalate", 0)
    assert escalation.due_at == START + timedelta(days=21)  # limit 14 + 7: when it fell due
    assert escalation.person_id == account.owner_id  # whom it concerns: the owner, in Cc
    assert (reminder.kind, reminder.action_id, reminder.repeat) == ("action", action_id, 2)
    assert reminder.action_due is not None and reminder.action_due.isoformat() == "2027-01-18"
    assert reminder.period == "2027-01-24"  # the day of the third reminder (18, 21, 24)


def test_the_leadership_digest_names_the_most_urgent_accounts_and_counts_the_rest(
    engine: Engine, clock: FixedClock, run: Runner
) -> None:
    add_person(engine, clock, OWNER)
    add_person(engine, clock, LEADER, leader=True)
    names = [f"Account {n:02d}" for n in range(30)]
    for name in names:  # one a day: the first is the most overdue
        run(add_account, name, owner=OWNER, actor=LEADER, override="a large portfolio")
        clock.advance(days=1)
    clock.set(datetime(2027, 3, 1, 8, 0, tzinfo=UTC))  # a Monday; all 30 are stuck

    [queued] = leader_digests(engine, clock)

    assert "30 stuck" in queued["subject"]
    body = text_body(outbox(engine)[-1])
    assert "Stuck (escalated to leadership): 30" in body
    listed = [name for name in names if f"{name} ({OWNER})" in body]
    assert listed == names[:25]  # the 25 longest overdue, in full
    assert "... and 5 more stuck, listed by: kamflow portfolio" in body
    assert "kamflow report --html" in body
    with db.session_scope(engine) as session:
        view = leader_view(session, clock.now(), limit=3)
    assert [a["name"] for a in view["stuck"]] == names[:3]
    assert view["stuck_count"] == 30


def test_the_migration_carries_queued_messages_over_and_nothing_is_queued_again(
    tmp_path: Path, clock: FixedClock
) -> None:
    """A database at the schema before typed columns, with messages queued by the old code: the
    upgrade writes what each key said into the columns, and the steps see those messages."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.engine_for(url)
    with engine.begin() as connection:
        command.upgrade(db._alembic_config(connection), "0003")
        entered = START
        connection.execute(
            sa.text(
                "INSERT INTO person (id, email, name, is_leader, created_at) VALUES "
                "(1, :owner, '', 0, :at), (2, :doer, '', 0, :at)"
            ),
            {"owner": OWNER, "doer": DOER, "at": "2027-01-04 09:00:00.000000"},
        )
        connection.execute(
            sa.text(
                "INSERT INTO account (id, name, owner_id, workflow, kind, stage, "
                "stage_entered_at, version, created_at) VALUES (1, :name, 1, 'kam', 'existing', "
                "'strategy', '2027-01-04 09:00:00.000000', 1, '2027-01-04 09:00:00.000000')"
            ),
            {"name": ACCOUNT},
        )
        connection.execute(
            sa.text(
                "INSERT INTO action (id, account_id, title, owner_id, due, resources, status, "
                "created_at) VALUES (7, 1, :title, 2, '2027-01-18', '', 'open', "
                "'2027-01-04 09:00:00.000000')"
            ),
            {"title": ACTION},
        )
        keys = [
            f"stall:1:strategy:{entered.isoformat()}:remind:0",
            "action:7:2027-01-18:0",
            "digest:owner:1:2027-01-18",
        ]
        for number, key in enumerate(keys, start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO outbox (id, key, account_id, kind, recipients, cc, subject, "
                    "body_text, body_html, status, attempts, next_attempt_at, last_error, "
                    "created_at) VALUES (:id, :key, 1, :kind, :to, '', 'old', 'Old body\n', '', "
                    "'sent', 1, '2027-01-18 09:00:00.000000', '', '2027-01-18 09:00:00.000000')"
                ),
                {
                    "id": number,
                    "key": key,
                    "kind": ["reminder", "action", "owner_digest"][number - 1],
                    "to": OWNER,
                },
            )
    dispose(url)

    upgraded = db.ready_engine(url)
    stall, action, digest = outbox(upgraded)
    assert (stall.stage, stall.rung, stall.repeat, stall.person_id) == ("strategy", "remind", 0, 1)
    assert stall.stage_entered_at == START
    assert stall.due_at == START + timedelta(days=14)  # from the workflow's limit
    assert (action.action_id, action.repeat, action.period, action.person_id) == (
        7,
        0,
        "2027-01-18",
        2,
    )
    assert (digest.person_id, digest.period) == (1, "2027-01-18")
    assert bodies(stall) == ("Old body\n", "")  # queued before templates: sent as stored

    # The reminder and the action's reminder of the day were sent before the upgrade.
    on_day(clock, 15)  # 2027-01-19: still the first reminder's period
    assert stalls(upgraded, clock) == []
    clock.set(datetime(2027, 1, 20, 9, 0, tzinfo=UTC))  # the action's next reminder is on the 21st
    assert actions(upgraded, clock) == []
    on_day(clock, 17)  # 2027-01-21: the second reminder is due, and the action's second one
    assert stalls(upgraded, clock) == [f"{ACCOUNT} has been in Strategy for 17 days"]
    assert actions(upgraded, clock) == [f"Action 3 days overdue for {ACCOUNT}: {ACTION}"]
    dispose(url)
