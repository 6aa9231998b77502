"""Limits in business days: weekends and public holidays (KAMFLOW_HOLIDAYS) do not count.

The arithmetic (kamflow.definitions.businessdays) on its own, with properties that the ladder's
set-based scans rely on; then through the CLI on SQLite and PostgreSQL: a stage of five business
days, the reminder a holiday pushes back, forecast against tick, and the settings' errors.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from kamflow.clock import FixedClock
from kamflow.config import work_calendar
from kamflow.definitions.businessdays import (
    CALENDAR_DAYS,
    BusinessDays,
    WorkCalendar,
    deadline,
)
from kamflow.definitions.discovery import get_workflow
from kamflow.definitions.ladder import Rung, Status, position, schedule
from kamflow.definitions.spec import LadderSpec
from kamflow.errors import ConfigError
from tests.conftest import Cli, as_json, failed, ok, snapshot

BERLIN = ZoneInfo("Europe/Berlin")
PLAIN = BusinessDays(WorkCalendar())
GERMANY = BusinessDays(WorkCalendar(BERLIN, "DE"))
BAVARIA = BusinessDays(WorkCalendar(BERLIN, "DE", "BY"))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A wall-clock time in Berlin, as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


# --- the arithmetic -------------------------------------------------------------------------------


def test_five_business_days_from_a_friday_end_on_the_next_friday_at_the_same_time() -> None:
    friday = utc(2027, 1, 8, 9, 0)
    assert PLAIN.deadline(friday, 5) == utc(2027, 1, 15, 9, 0)
    assert PLAIN.elapsed(friday, utc(2027, 1, 15, 8, 59)) == 4
    assert PLAIN.elapsed(friday, utc(2027, 1, 15, 9, 0)) == 5
    # The weekend in between counts for nothing.
    assert PLAIN.elapsed(friday, utc(2027, 1, 11, 8, 59)) == 0
    assert PLAIN.elapsed(friday, utc(2027, 1, 11, 9, 0)) == 1


def test_an_entry_on_a_weekend_counts_from_the_start_of_monday() -> None:
    saturday = utc(2027, 1, 9, 15, 30)
    assert PLAIN.deadline(saturday, 0) == utc(2027, 1, 11, 0, 0)
    assert PLAIN.deadline(saturday, 5) == utc(2027, 1, 18, 0, 0)
    assert PLAIN.elapsed(saturday, utc(2027, 1, 11, 12, 0)) == 0


def test_german_unity_day_pushes_the_limit_back_a_day() -> None:
    friday = berlin(2025, 9, 26, 10, 0)  # 3 October 2025 is a Friday
    assert PLAIN.deadline(friday, 5) == berlin(2025, 10, 3, 10, 0)
    assert GERMANY.deadline(friday, 5) == berlin(2025, 10, 6, 10, 0)


def test_a_bavarian_holiday_counts_only_with_the_subdivision() -> None:
    monday = berlin(2027, 1, 4, 10, 0)  # 6 January (Epiphany) is a holiday in Bavaria only
    assert GERMANY.deadline(monday, 5) == berlin(2027, 1, 11, 10, 0)
    assert BAVARIA.deadline(monday, 5) == berlin(2027, 1, 12, 10, 0)
    assert not BAVARIA.calendar.is_business_day(date(2027, 1, 6))
    assert GERMANY.calendar.is_business_day(date(2027, 1, 6))


def test_the_time_of_day_is_local_to_the_zone_across_a_change_to_summer_time() -> None:
    thursday = berlin(2027, 3, 25, 9, 0)  # Easter 2027: Good Friday 26 March, Monday 29 March
    # Clocks go forward on Sunday 28 March; the limit still runs out at 09:00 in Berlin.
    assert GERMANY.deadline(thursday, 2) == berlin(2027, 3, 31, 9, 0)
    assert GERMANY.deadline(thursday, 2) == utc(2027, 3, 31, 7, 0)


def test_the_deadline_of_a_stage_is_one_function() -> None:
    lite = get_workflow("kam-lite")
    strategy = lite.stage("strategy")
    assert strategy is not None and strategy.business_days and strategy.limit == 15
    monday = utc(2027, 1, 4, 9, 0)
    assert deadline(monday, strategy, WorkCalendar()) == utc(2027, 1, 25, 9, 0)
    # With the US holidays Martin Luther King Day (18 January 2027) does not count.
    assert deadline(monday, strategy, WorkCalendar(country="US")) == utc(2027, 1, 26, 9, 0)
    kam = get_workflow("kam").stage("strategy")
    assert kam is not None and not kam.business_days
    assert deadline(monday, kam, WorkCalendar(country="US")) == utc(2027, 1, 18, 9, 0)


def test_the_ladder_counts_business_days_for_every_rung() -> None:
    ladder = LadderSpec(remind_every_days=2, escalate_after_days=4, escalate_every_days=3)
    friday = utc(2027, 1, 8, 9, 0)
    rungs = schedule(friday, 5, ladder, friday, utc(2027, 2, 8, 0, 0), PLAIN)
    assert rungs == [
        (utc(2027, 1, 15, 9, 0), Rung.REMIND, 0),  # 5 business days
        (utc(2027, 1, 19, 9, 0), Rung.REMIND, 1),  # 7: Monday and Tuesday
        (utc(2027, 1, 21, 9, 0), Rung.ESCALATE, 0),  # 9
        (utc(2027, 1, 26, 9, 0), Rung.ESCALATE, 1),  # 12: over the weekend
        (utc(2027, 1, 29, 9, 0), Rung.ESCALATE, 2),  # 15
        (utc(2027, 2, 3, 9, 0), Rung.ESCALATE, 3),  # 18
    ]
    for at, rung, repeat in rungs:
        assert at.weekday() < 5
        found = position(friday, 5, ladder, at, PLAIN)
        assert (found.rung, found.repeat, found.due_at) == (rung, repeat, at)
        before = position(friday, 5, ladder, at - timedelta(microseconds=1), PLAIN)
        assert before.due_at != at
    # Saturday: still the reminder of Tuesday; business days in the stage stop on the weekend.
    found = position(friday, 5, ladder, utc(2027, 1, 23, 12, 0), PLAIN)
    assert (found.status, found.days_in_stage, found.days_over) == (Status.STUCK, 10, 5)


def test_calendar_days_are_the_ladder_as_it_was() -> None:
    entered = utc(2027, 1, 4, 9, 0)
    assert CALENDAR_DAYS.deadline(entered, 14) == entered + timedelta(days=14)
    assert CALENDAR_DAYS.cutoff(utc(2027, 1, 20), 3) == utc(2027, 1, 17)
    assert CALENDAR_DAYS.elapsed(entered, entered + timedelta(days=3, hours=23)) == 3


def test_holidays_are_computed_once_per_year_not_per_question() -> None:
    from kamflow.definitions.businessdays import _weekday_holidays

    _weekday_holidays.cache_clear()
    calendar = BusinessDays(WorkCalendar(BERLIN, "DE", "BY"))
    entered = berlin(2026, 12, 1, 10, 0)
    for day in range(2000):
        calendar.elapsed(entered, entered + timedelta(hours=day))
        calendar.cutoff(entered + timedelta(hours=day), 5)
    info = _weekday_holidays.cache_info()
    assert info.misses <= 3, info  # 2026 and 2027 (and 2025 for a cutoff looking back)


# --- the properties the set-based scans rely on ---------------------------------------------------

MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2029, 12, 31), timezones=st.just(UTC)
)
LATER = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))
CALENDARS = st.sampled_from(
    [
        PLAIN,
        GERMANY,
        BAVARIA,
        BusinessDays(WorkCalendar(ZoneInfo("America/Los_Angeles"), "US", "CA")),
        BusinessDays(WorkCalendar(ZoneInfo("Asia/Tokyo"), "JP")),
    ]
)


@settings(max_examples=400, deadline=None)
@given(days=CALENDARS, entered=MOMENTS, now=MOMENTS, count=st.integers(1, 60))
def test_the_cutoff_is_exactly_the_entries_whose_deadline_has_come(
    days: BusinessDays, entered: datetime, now: datetime, count: int
) -> None:
    # An account is past ``count`` days exactly when it entered by the cutoff: a range in SQL.
    assert (entered <= days.cutoff(now, count)) == (days.deadline(entered, count) <= now)


@settings(max_examples=400, deadline=None)
@given(days=CALENDARS, entered=MOMENTS, later=LATER)
def test_elapsed_is_the_most_days_whose_deadline_has_come(
    days: BusinessDays, entered: datetime, later: timedelta
) -> None:
    now = entered + later
    elapsed = days.elapsed(entered, now)
    assert elapsed == 0 or days.deadline(entered, elapsed) <= now
    assert days.deadline(entered, elapsed + 1) > now
    assert days.calendar.is_business_day(
        days.deadline(entered, elapsed + 1).astimezone(days.calendar.zone).date()
    )


@settings(max_examples=300, deadline=None)
@given(days=CALENDARS, first=MOMENTS, second=MOMENTS, count=st.integers(0, 60))
def test_a_later_entry_never_runs_out_sooner(
    days: BusinessDays, first: datetime, second: datetime, count: int
) -> None:
    early, late = sorted((first, second))
    assert days.deadline(early, count) <= days.deadline(late, count)
    assert days.deadline(early, count) >= early


# --- the workflow file ----------------------------------------------------------------------------

WEEKLY = """\
name: weekly
title: "Five business days a stage"
ladder:
  remind_every_days: 2
  escalate_after_days: 4
  escalate_every_days: 3
stages:
  - name: plan
    limit_business_days: 5
  - name: act
    limit_days: 5
exits:
  - name: retired
transitions:
  - name: advance
    from: plan
    to: act
  - name: advance
    from: act
    to: plan
  - name: retire
    from: "*"
    to: retired
"""

STALLS = ("reminder", "escalation")
OWNER = "owner@example.com"
LEADER = "lead@example.com"


@pytest.fixture
def weekly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "weekly.yaml").write_text(WEEKLY, encoding="utf-8")
    (folder / "questions.yaml").write_text(
        (get_workflow("kam").bank_path).read_text(encoding="utf-8"), encoding="utf-8"
    )
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    return folder / "weekly.yaml"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "    limit_business_days: 5\n",
            "    limit_business_days: 5\n    limit_days: 7\n",
            "line 8, stages[0]: gives both limit_days and limit_business_days: keep one",
        ),
        (
            "    limit_business_days: 5\n",
            "",
            "line 8, stages[0]: needs limit_days (calendar days) or limit_business_days",
        ),
        (
            "    limit_business_days: 5\n",
            "    limit_business_days: 0\n",
            "line 9, stages[0].limit_business_days: input should be greater than 0",
        ),
    ],
    ids=["both", "neither", "zero"],
)
def test_a_stage_gives_exactly_one_limit(
    cli: Cli, weekly: Path, old: str, new: str, problem: str
) -> None:
    weekly.write_text(WEEKLY.replace(old, new), encoding="utf-8")
    result = cli("workflow", "validate", str(weekly))
    assert result.exit_code == 1
    assert problem in result.stderr, result.stderr


def test_validate_names_an_unknown_country_or_subdivision(cli: Cli, weekly: Path) -> None:
    said = ok(cli("workflow", "validate", str(weekly), env={"KAMFLOW_HOLIDAYS": "de-by"}))
    assert "public holidays of DE-BY" in said
    line = failed(cli("workflow", "validate", str(weekly), env={"KAMFLOW_HOLIDAYS": "XY"}))
    assert line.startswith("Error: KAMFLOW_HOLIDAYS='XY': XY is not a country"), line
    line = failed(cli("workflow", "validate", str(weekly), env={"KAMFLOW_HOLIDAYS": "DE-XX"}))
    assert line.startswith("Error: KAMFLOW_HOLIDAYS='DE-XX': DE has no subdivision XX"), line
    assert "BY" in line


def test_the_holidays_setting_is_read_as_documented() -> None:
    assert work_calendar({}) == WorkCalendar()
    found = work_calendar({"KAMFLOW_HOLIDAYS": " us-ca ", "KAMFLOW_TIMEZONE": "America/New_York"})
    assert (found.country, found.subdivision, found.zone.key) == ("US", "CA", "America/New_York")
    with pytest.raises(ConfigError, match="KAMFLOW_HOLIDAYS='-BY'"):
        work_calendar({"KAMFLOW_HOLIDAYS": "-BY"})


# --- through the CLI, on both databases -----------------------------------------------------------


def add_account(cli: Cli, name: str = "Acme") -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", LEADER, "--leader"))
    ok(cli("account", "add", name, "--owner", OWNER, "--workflow", "weekly"))


def status_at(cli: Cli, moment: datetime, env: dict[str, str] | None = None) -> str:
    rows = as_json(
        cli("account", "list", "--json", env={"KAMFLOW_NOW": moment.isoformat(), **(env or {})})
    )
    [row] = rows
    found: str = row["status"]
    return found


def tick_at(
    cli: Cli, moment: datetime, outbox: Path, env: dict[str, str] | None = None
) -> list[str]:
    mail = {"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(outbox)}
    report = as_json(
        cli("tick", "--json", env={"KAMFLOW_NOW": moment.isoformat(), **mail, **(env or {})})
    )
    return [item["subject"] for item in report["queued"] if item["kind"] in STALLS]


def test_a_stage_of_five_business_days_entered_on_a_friday_is_behind_the_next_friday(
    cli: Cli, clock: FixedClock, weekly: Path, tmp_path: Path
) -> None:
    clock.set(utc(2027, 1, 8, 9, 0))  # a Friday
    add_account(cli)
    outbox = tmp_path / "outbox"
    for moment in (utc(2027, 1, 11, 9), utc(2027, 1, 14, 23, 59), utc(2027, 1, 15, 8, 59)):
        assert status_at(cli, moment) == "on_track", moment
        assert tick_at(cli, moment, outbox) == [], moment
    friday = utc(2027, 1, 15, 9, 0)
    assert status_at(cli, friday) == "behind"
    assert tick_at(cli, friday, outbox) == ["Acme has been in Plan for 5 business days"]
    assert tick_at(cli, friday + timedelta(hours=1), outbox) == []

    shown = as_json(cli("account", "show", "Acme", "--json", env={"KAMFLOW_NOW": "2027-01-16"}))
    assert (shown["days_in_stage"], shown["limit_business_days"], shown["limit_days"]) == (
        5,
        5,
        None,
    )
    why = ok(cli("why", "Acme", env={"KAMFLOW_NOW": "2027-01-16"}))
    assert "(day 5 of 5 business days)" in why
    listed = ok(cli("account", "list", env={"KAMFLOW_NOW": "2027-01-18T09:00:00"}))
    assert "6/5 bd" in listed
    [message] = outbox.glob("reminder-*.eml")
    text = message.read_text(encoding="utf-8")
    assert "past the stage's limit of 5 business days" not in text  # day 5: not yet past it
    assert "the stage's limit is 5 business days" in text


def test_a_holiday_pushes_the_reminder_back_a_day(
    cli: Cli, clock: FixedClock, weekly: Path, tmp_path: Path
) -> None:
    clock.set(berlin(2027, 1, 4, 10, 0))  # a Monday; Wednesday is Epiphany, in Bavaria
    add_account(cli)
    outbox = tmp_path / "outbox"
    bavaria = {"KAMFLOW_HOLIDAYS": "DE-BY", "KAMFLOW_TIMEZONE": "Europe/Berlin"}
    germany = {"KAMFLOW_HOLIDAYS": "DE", "KAMFLOW_TIMEZONE": "Europe/Berlin"}
    monday = berlin(2027, 1, 11, 10, 0)
    assert status_at(cli, monday, germany) == "behind"
    assert status_at(cli, monday, bavaria) == "on_track"
    assert tick_at(cli, monday, outbox, bavaria) == []
    tuesday = berlin(2027, 1, 12, 10, 0)
    assert status_at(cli, tuesday - timedelta(seconds=1), bavaria) == "on_track"
    assert tick_at(cli, tuesday, outbox, bavaria) == ["Acme has been in Plan for 5 business days"]
    rows = as_json(cli("outbox", "list", "--json", env={"KAMFLOW_NOW": tuesday.isoformat()}))
    assert [row["kind"] for row in rows if row["kind"] in STALLS] == ["reminder"]


def test_forecast_says_what_each_tick_then_queues(
    cli: Cli, clock: FixedClock, weekly: Path, tmp_path: Path
) -> None:
    clock.set(berlin(2025, 9, 19, 16, 30))  # a Friday; 3 October 2025 is a Friday too
    add_account(cli)
    env = {"KAMFLOW_HOLIDAYS": "DE", "KAMFLOW_TIMEZONE": "Europe/Berlin"}
    outbox = tmp_path / "outbox"
    start = clock.now()
    rows = as_json(cli("forecast", "--days", "38", "--json", env=env))
    stalls = [(row["at"], row["kind"], row["repeat"]) for row in rows if row["kind"] in STALLS]
    # plan: 5 business days, reminders every 2, escalation 4 past the limit and every 3 after.
    expected_days = [
        ("2025-09-26", "reminder", 0),
        ("2025-09-30", "reminder", 1),
        ("2025-10-02", "escalation", 0),
        ("2025-10-08", "escalation", 1),  # 3 October, German Unity Day, does not count
        ("2025-10-13", "escalation", 2),
        ("2025-10-16", "escalation", 3),
        ("2025-10-21", "escalation", 4),
        ("2025-10-24", "escalation", 5),
    ]
    assert [(at[:10], kind, repeat) for at, kind, repeat in stalls] == expected_days
    assert {at[11:19] for at, _, _ in stalls} == {"14:30:00"}  # 16:30 in Berlin, summer time
    assert start.isoformat() < stalls[0][0]
    for at, kind, _ in stalls:
        moment = datetime.fromisoformat(at)
        assert tick_at(cli, moment - timedelta(seconds=1), outbox, env) == [], at
        queued = tick_at(cli, moment, outbox, env)
        assert len(queued) == 1 and queued[0].startswith(
            "Escalation: Acme" if kind == "escalation" else "Acme"
        ), (at, queued)
    assert len(list(outbox.glob("reminder-*.eml"))) == 2
    assert len(list(outbox.glob("escalation-*.eml"))) == 6


def test_the_lite_workflow_counts_business_days(cli: Cli, clock: FixedClock) -> None:
    ok(cli("person", "add", OWNER))
    ok(cli("account", "add", "Lite Ltd", "--owner", OWNER, "--workflow", "kam-lite"))
    monday = clock.now()
    us = {"KAMFLOW_HOLIDAYS": "US"}
    three_weeks = monday + timedelta(days=21)
    assert status_at(cli, three_weeks - timedelta(seconds=1)) == "on_track"
    assert status_at(cli, three_weeks) == "behind"
    # Martin Luther King Day, 18 January 2027, is a US holiday: a day more.
    assert status_at(cli, three_weeks, us) == "on_track"
    assert status_at(cli, three_weeks + timedelta(days=1), us) == "behind"


def test_a_bad_holidays_setting_stops_a_tick_and_changes_nothing(
    cli: Cli, clock: FixedClock, weekly: Path, engine: Engine, tmp_path: Path
) -> None:
    add_account(cli)
    before = snapshot(engine)
    env = {
        "KAMFLOW_HOLIDAYS": "Atlantis",
        "KAMFLOW_NOW": (clock.now() + timedelta(days=30)).isoformat(),
        "KAMFLOW_MAIL_TRANSPORT": "file",
        "KAMFLOW_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    for command in (["tick"], ["forecast"], ["account", "list"], ["why", "Acme"], ["status"]):
        line = failed(cli(*command, env=env))
        assert line.startswith("Error: KAMFLOW_HOLIDAYS='Atlantis': ATLANTIS is not a country"), (
            command,
            line,
        )
    assert snapshot(engine) == before
    assert not (tmp_path / "outbox").exists()
