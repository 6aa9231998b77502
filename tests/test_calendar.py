"""`kamflow calendar`: stage deadlines, next reviews and open actions as an iCalendar file.

Every file is parsed back with the icalendar package, on SQLite and on PostgreSQL, and judged by
the events a user would see in a calendar.
"""

from __future__ import annotations

import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.reports.calendar import EVENTS_PER_CHUNK, CalendarFile
from tests import account_steps as steps
from tests import bulk
from tests.conftest import START, Cli, Runner, as_json, failed, ok, snapshot

OWNER = "owner@example.com"
OTHER = "other@example.com"
#: A name with every character RFC 5545 escapes in a text.
ACME = "Acme, Corp; A\\B"
GLOBEX = "Globex"
#: START, written as the UIDs write a moment.
ENTERED = "20270104T090000Z"


def events(text: str) -> dict[str, Any]:
    """The events of an iCalendar file, parsed back, by UID."""
    calendar = icalendar.Calendar.from_ical(text)
    found = {str(event["UID"]): event for event in calendar.walk("VEVENT")}
    assert len(found) == len(calendar.walk("VEVENT")), "a UID appears twice"
    return found


def ics(cli: Cli, *args: str, env: dict[str, str] | None = None) -> str:
    """The iCalendar file `kamflow calendar ARGS` prints, exactly as written (CRLF line ends)."""
    result = cli("calendar", *args, env=env)
    ok(result)
    return result.stdout_bytes.decode("utf-8")


def day_of(event: Any, name: str = "DTSTART") -> date:
    value = event.decoded(name)
    assert type(value) is date, f"{name} is not a whole day: {value!r}"
    return value


def account_id(cli: Cli, name: str) -> int:
    shown = as_json(cli("account", "show", name, "--json"))
    return int(shown["id"])


def build(cli: Cli, clock: FixedClock) -> None:
    """At START: ACME (OWNER's) in Strategy with three actions (open, done, cancelled) and one
    owned by OTHER; GLOBEX (OTHER's) in Strategy; a candidate and a disqualified account, which
    have no deadline."""
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", OTHER))
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", GLOBEX, "--owner", OTHER))
    ok(cli("account", "add", "Hopeful Inc", "--owner", OWNER, "--candidate"))
    ok(cli("action", "add", ACME, "Workshop, east; plant", "--owner", OWNER, "--due", "2027-02-01"))
    ok(cli("action", "add", ACME, "Pilot", "--owner", OTHER, "--due", "2027-02-15"))
    ok(cli("action", "add", ACME, "Done already", "--owner", OWNER, "--due", "2027-02-20"))
    ok(cli("action", "done", ACME, "3"))
    ok(cli("action", "add", ACME, "Dropped", "--owner", OWNER, "--due", "2027-02-21"))
    ok(cli("action", "cancel", ACME, "4", "--reason", "Not needed"))
    ok(cli("account", "add", "Gone Ltd", "--owner", OWNER))
    ok(cli("action", "add", "Gone Ltd", "Never mind", "--owner", OWNER, "--due", "+3"))
    ok(cli("disqualify", "Gone Ltd", "--reason", "No budget"))


def test_every_key_account_has_its_stage_deadline_and_next_review_and_every_open_action_its_day(
    cli: Cli, clock: FixedClock
) -> None:
    build(cli, clock)
    acme, globex = account_id(cli, ACME), account_id(cli, GLOBEX)

    text = ics(cli)

    found = events(text)
    assert set(found) == {
        f"stage-{acme}-strategy-{ENTERED}@kamflow",
        f"review-{acme}@kamflow",
        f"stage-{globex}-strategy-{ENTERED}@kamflow",
        f"review-{globex}@kamflow",
        "action-1@kamflow",
        "action-2@kamflow",
    }
    deadline = found[f"stage-{acme}-strategy-{ENTERED}@kamflow"]
    # Strategy's limit is 14 days: the deadline is the day it runs out, all day long.
    assert day_of(deadline) == date(2027, 1, 18)
    assert day_of(deadline, "DTEND") == date(2027, 1, 19)
    assert str(deadline["SUMMARY"]) == f"{ACME}: Strategy deadline"
    assert f"kamflow why '{ACME}'" in str(deadline["DESCRIPTION"])
    # The review: 14 + 21 + 21 + 90 days on, when each stage takes its full limit.
    assert day_of(found[f"review-{acme}@kamflow"]) == date(2027, 1, 4) + timedelta(days=146)
    assert str(found[f"review-{acme}@kamflow"]["SUMMARY"]) == f"{ACME}: Review due"
    workshop = found["action-1@kamflow"]
    assert day_of(workshop) == date(2027, 2, 1)
    assert str(workshop["SUMMARY"]) == f"Due: Workshop, east; plant ({ACME})"
    assert day_of(found["action-2@kamflow"]) == date(2027, 2, 15)
    for event in found.values():
        assert event.decoded("DTSTAMP") == START
    # Text escaped as RFC 5545 says: the library wrote it, the parser read it back whole.
    assert "SUMMARY:Due: Workshop\\, east\\; plant (Acme\\, Corp\\; A\\\\B)" in text
    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert text.endswith("END:VCALENDAR\r\n")
    assert "\n" not in text.replace("\r\n", "")


def test_uids_stay_while_the_account_stays_and_a_move_makes_a_new_deadline(
    cli: Cli, clock: FixedClock
) -> None:
    build(cli, clock)
    acme = account_id(cli, ACME)
    first = events(ics(cli))
    clock.advance(days=2)

    again = events(ics(cli))

    assert set(again) == set(first)
    for uid, event in again.items():
        assert day_of(event) == day_of(first[uid]), uid
        assert event.decoded("DTSTAMP") == START + timedelta(days=2)

    ok(cli("strategy", "set", ACME, "--objective", "o", "--who", "w", "--why", "y"))
    ok(cli("advance", ACME))
    ok(cli("action", "reschedule", ACME, "1", "--due", "2027-03-01"))

    moved = events(ics(cli))

    research = f"stage-{acme}-research-20270106T090000Z@kamflow"
    assert f"stage-{acme}-strategy-{ENTERED}@kamflow" not in moved
    assert day_of(moved[research]) == date(2027, 1, 27)
    assert str(moved[research]["SUMMARY"]) == f"{ACME}: Research deadline"
    # The review and the action keep their UIDs and move to their new days.
    assert day_of(moved[f"review-{acme}@kamflow"]) == date(2027, 1, 6) + timedelta(days=132)
    assert day_of(moved["action-1@kamflow"]) == date(2027, 3, 1)


def test_an_account_in_review_has_its_review_on_the_day_it_got_there(
    cli: Cli, run: Runner, engine: Engine, clock: FixedClock
) -> None:
    steps.new_account(engine, clock, run)
    steps.reach(run, clock, "review")
    arrived = clock.now()
    clock.advance(days=3)

    found = events(ics(cli, "--account", steps.ACCOUNT))

    acme = account_id(cli, steps.ACCOUNT)
    assert day_of(found[f"review-{acme}@kamflow"]) == arrived.date()
    deadline = found[f"stage-{acme}-review-{arrived:%Y%m%dT%H%M%S}Z@kamflow"]
    assert day_of(deadline) == arrived.date() + timedelta(days=14)
    assert str(deadline["SUMMARY"]) == f"{steps.ACCOUNT}: Review deadline"


def test_the_filters_give_one_owners_or_one_accounts_events(cli: Cli, clock: FixedClock) -> None:
    build(cli, clock)
    acme, globex = account_id(cli, ACME), account_id(cli, GLOBEX)

    theirs = events(ics(cli, "--owner", OTHER))
    one = events(ics(cli, "--account", ACME))

    # OTHER's account, and the action OTHER owns on someone else's account.
    assert set(theirs) == {
        f"stage-{globex}-strategy-{ENTERED}@kamflow",
        f"review-{globex}@kamflow",
        "action-2@kamflow",
    }
    assert set(one) == {
        f"stage-{acme}-strategy-{ENTERED}@kamflow",
        f"review-{acme}@kamflow",
        "action-1@kamflow",
        "action-2@kamflow",
    }
    assert events(ics(cli, "--account", "Hopeful Inc")) == {}
    assert events(ics(cli, "--account", "Gone Ltd")) == {}


def test_the_deadline_is_the_day_in_kamflow_timezone(cli: Cli, clock: FixedClock) -> None:
    build(cli, clock)
    acme = account_id(cli, ACME)

    text = ics(cli, "--account", ACME, env={"KAMFLOW_TIMEZONE": "Pacific/Honolulu"})

    # 09:00 UTC on the 18th is 23:00 on the 17th in Honolulu.
    assert day_of(events(text)[f"stage-{acme}-strategy-{ENTERED}@kamflow"]) == date(2027, 1, 17)


def test_the_calendar_goes_to_a_private_file(cli: Cli, clock: FixedClock, tmp_path: Path) -> None:
    build(cli, clock)
    target = tmp_path / "kamflow.ics"

    said = ok(cli("calendar", "--output", str(target)))

    assert said == f"Wrote 6 events to {target}.\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert events(target.read_text(encoding="utf-8")) == events(ics(cli))


def test_unknown_people_and_accounts_are_one_error_line_and_nothing_changes(
    cli: Cli, clock: FixedClock, engine: Engine, tmp_path: Path
) -> None:
    build(cli, clock)
    before = snapshot(engine)
    target = tmp_path / "kamflow.ics"

    nobody = failed(cli("calendar", "--owner", "nobody@example.com", "--output", str(target)))
    nothing = failed(cli("calendar", "--account", "Initech"))
    both = cli("calendar", "--owner", OWNER, "--account", ACME)

    assert nobody.startswith("Error: no person 'nobody@example.com'")
    assert nothing.startswith("Error: no account 'Initech'")
    assert both.exit_code == 2 and "cannot go together" in both.stderr
    assert not target.exists()
    assert snapshot(engine) == before


def test_a_large_portfolio_is_written_a_chunk_at_a_time(database_url: str) -> None:
    now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    count = 2 * EVENTS_PER_CHUNK + 10
    layout = bulk.Layout(place=lambda i: ("execution", i % 80))
    engine = bulk.build(database_url, count, layout, now=now)

    with db.session_scope(engine) as session:
        found = CalendarFile(session, now=now, timezone=ZoneInfo("UTC"))
        chunks = list(found.chunks())

    assert found.events == 2 * count  # a deadline and a review each
    assert len(chunks) >= 2 + 4  # the header, the events a chunk at a time, the end
    parsed = events(b"".join(chunks).decode("utf-8"))
    assert len(parsed) == 2 * count
    entered = now - timedelta(days=1, hours=1)
    first = parsed[f"stage-1-execution-{entered:%Y%m%dT%H%M%S}Z@kamflow"]
    assert day_of(first) == (entered + timedelta(days=90)).date()
    assert day_of(parsed["review-1@kamflow"]) == (entered + timedelta(days=90)).date()
