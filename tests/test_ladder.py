"""The reminder ladder as pure functions: where an account stands, which rungs fall in a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kamflow.definitions.discovery import get_workflow
from kamflow.definitions.ladder import Position, Rung, Status, position, schedule, stall_key
from kamflow.definitions.spec import LadderSpec

ENTERED = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
LIMIT = 14  # Strategy's limit in the shipped workflow
DEFAULT = LadderSpec()  # remind every 3 days, escalate 7 days past the limit, then every 7
SECOND = timedelta(seconds=1)


def at(days: float) -> datetime:
    return ENTERED + timedelta(days=days)


def where(days: float, *, limit: int = LIMIT, ladder: LadderSpec = DEFAULT) -> Position:
    return position(ENTERED, limit, ladder, at(days))


def test_the_default_ladder_is_the_one_kam_md_describes() -> None:
    assert (
        DEFAULT.remind_every_days,
        DEFAULT.escalate_after_days,
        DEFAULT.escalate_every_days,
    ) == (
        3,
        7,
        7,
    )


# --- position ---------------------------------------------------------------------------------


def test_inside_the_limit_an_account_is_on_track_with_nothing_due() -> None:
    for moment in (ENTERED, at(1), at(13.5), at(LIMIT) - SECOND):
        found = position(ENTERED, LIMIT, DEFAULT, moment)
        assert found.status == Status.ON_TRACK
        assert found.rung is None
        assert found.due_at is None
        assert found.days_over == 0
    assert where(0).days_in_stage == 0
    assert position(ENTERED, LIMIT, DEFAULT, at(LIMIT) - SECOND).days_in_stage == 13


def test_exactly_at_the_limit_the_owner_is_due_the_first_reminder() -> None:
    found = where(LIMIT)
    assert found == Position(
        status=Status.BEHIND,
        days_in_stage=14,
        days_over=0,
        rung=Rung.REMIND,
        repeat=0,
        due_at=at(LIMIT),
    )


@pytest.mark.parametrize(
    ("days", "status", "rung", "repeat", "due_day"),
    [
        # behind: a reminder at the limit and every 3 days
        (14, Status.BEHIND, Rung.REMIND, 0, 14),
        (16.99, Status.BEHIND, Rung.REMIND, 0, 14),
        (17, Status.BEHIND, Rung.REMIND, 1, 17),
        (19.5, Status.BEHIND, Rung.REMIND, 1, 17),
        (20, Status.BEHIND, Rung.REMIND, 2, 20),
        (20.99, Status.BEHIND, Rung.REMIND, 2, 20),
        # stuck from limit + 7: escalations replace the reminders, every 7 days
        (21, Status.STUCK, Rung.ESCALATE, 0, 21),
        (23, Status.STUCK, Rung.ESCALATE, 0, 21),
        (27.99, Status.STUCK, Rung.ESCALATE, 0, 21),
        (28, Status.STUCK, Rung.ESCALATE, 1, 28),
        (35, Status.STUCK, Rung.ESCALATE, 2, 35),
        (100, Status.STUCK, Rung.ESCALATE, 11, 98),
    ],
)
def test_the_default_ladder_at_each_moment(
    days: float, status: Status, rung: Rung, repeat: int, due_day: int
) -> None:
    found = where(days)
    assert (found.status, found.rung, found.repeat, found.due_at) == (
        status,
        rung,
        repeat,
        at(due_day),
    )
    assert found.days_in_stage == int(days)
    assert found.days_over == int(days) - LIMIT


def test_the_boundaries_are_exact_to_the_second() -> None:
    assert where(17).repeat == 1
    assert position(ENTERED, LIMIT, DEFAULT, at(17) - SECOND).repeat == 0
    assert position(ENTERED, LIMIT, DEFAULT, at(21) - SECOND).status == Status.BEHIND
    assert where(21).status == Status.STUCK
    assert position(ENTERED, LIMIT, DEFAULT, at(28) - SECOND).repeat == 0
    assert where(28).repeat == 1


def test_execution_reminds_weekly_and_keeps_the_workflow_escalation() -> None:
    kam = get_workflow("kam")
    execution = kam.stage("execution")
    strategy = kam.stage("strategy")
    assert execution is not None and strategy is not None
    weekly = kam.ladder_for(execution)
    assert weekly == LadderSpec(remind_every_days=7, escalate_after_days=7, escalate_every_days=7)
    assert kam.ladder_for(strategy) == DEFAULT

    limit = execution.limit_days
    assert limit == 90
    assert where(90, limit=limit, ladder=weekly).rung == Rung.REMIND
    # Strategy would remind again after 3 days; Execution does not.
    assert where(93, limit=limit, ladder=weekly).repeat == 0
    assert where(96.99, limit=limit, ladder=weekly).status == Status.BEHIND
    stuck = where(97, limit=limit, ladder=weekly)
    assert (stuck.status, stuck.rung, stuck.repeat) == (Status.STUCK, Rung.ESCALATE, 0)


def test_a_stage_override_changes_only_what_it_names() -> None:
    ladder = LadderSpec(remind_every_days=2, escalate_after_days=5, escalate_every_days=3)
    # limit 10: reminders at 10, 12, 14; escalations at 15, 18, 21 ...
    assert [where(d, limit=10, ladder=ladder).repeat for d in (10, 11, 12, 14, 14.9)] == [
        0,
        0,
        1,
        2,
        2,
    ]
    assert where(15, limit=10, ladder=ladder).rung == Rung.ESCALATE
    assert where(17.9, limit=10, ladder=ladder).repeat == 0
    assert where(18, limit=10, ladder=ladder).repeat == 1
    assert where(21, limit=10, ladder=ladder).due_at == at(21)


# --- schedule ---------------------------------------------------------------------------------


def test_schedule_lists_every_rung_in_order() -> None:
    rungs = schedule(ENTERED, LIMIT, DEFAULT, ENTERED, at(35))
    assert rungs == [
        (at(14), Rung.REMIND, 0),
        (at(17), Rung.REMIND, 1),
        (at(20), Rung.REMIND, 2),
        (at(21), Rung.ESCALATE, 0),
        (at(28), Rung.ESCALATE, 1),
        (at(35), Rung.ESCALATE, 2),
    ]


def test_schedule_window_excludes_its_start_and_includes_its_end() -> None:
    assert schedule(ENTERED, LIMIT, DEFAULT, at(17), at(28)) == [
        (at(20), Rung.REMIND, 2),
        (at(21), Rung.ESCALATE, 0),
        (at(28), Rung.ESCALATE, 1),
    ]
    assert schedule(ENTERED, LIMIT, DEFAULT, at(17) - SECOND, at(17)) == [(at(17), Rung.REMIND, 1)]
    assert schedule(ENTERED, LIMIT, DEFAULT, at(28) - SECOND, at(28) - SECOND) == []


def test_schedule_is_empty_before_the_limit() -> None:
    assert schedule(ENTERED, LIMIT, DEFAULT, ENTERED, at(LIMIT) - SECOND) == []


def test_schedule_for_execution_has_one_reminder_then_escalations() -> None:
    kam = get_workflow("kam")
    execution = kam.stage("execution")
    assert execution is not None
    weekly = kam.ladder_for(execution)
    assert schedule(ENTERED, 90, weekly, ENTERED, at(111)) == [
        (at(90), Rung.REMIND, 0),
        (at(97), Rung.ESCALATE, 0),
        (at(104), Rung.ESCALATE, 1),
        (at(111), Rung.ESCALATE, 2),
    ]


@pytest.mark.parametrize(
    ("limit", "ladder"),
    [
        (14, DEFAULT),
        (90, LadderSpec(remind_every_days=7)),
        (10, LadderSpec(remind_every_days=2, escalate_after_days=5, escalate_every_days=3)),
        (1, LadderSpec(remind_every_days=1, escalate_after_days=1, escalate_every_days=1)),
        (21, LadderSpec(remind_every_days=5, escalate_after_days=12, escalate_every_days=10)),
    ],
)
def test_position_and_schedule_agree_hour_by_hour(limit: int, ladder: LadderSpec) -> None:
    """Sweep a long stay: the rung position() names changes exactly when schedule() says."""
    end = at(limit + 60)
    expected = {
        (rung, repeat): due for due, rung, repeat in schedule(ENTERED, limit, ladder, ENTERED, end)
    }
    seen: dict[tuple[Rung, int], datetime] = {}
    moment = ENTERED
    while moment <= end:
        found = position(ENTERED, limit, ladder, moment)
        if found.rung is not None:
            assert found.due_at is not None and found.due_at <= moment
            seen.setdefault((found.rung, found.repeat), found.due_at)
            # Every rung due at or before now is in the schedule up to now.
            due_by_now = schedule(ENTERED, limit, ladder, ENTERED, moment)
            assert due_by_now[-1] == (found.due_at, found.rung, found.repeat)
        else:
            assert schedule(ENTERED, limit, ladder, ENTERED, moment) == []
        moment += timedelta(hours=1)
    assert seen == expected


# --- keys ---------------------------------------------------------------------------------------


def test_each_stay_rung_and_repeat_has_its_own_key() -> None:
    keys = {
        stall_key(1, "strategy", ENTERED, Rung.REMIND, 0),
        stall_key(1, "strategy", ENTERED, Rung.REMIND, 1),
        stall_key(1, "strategy", ENTERED, Rung.ESCALATE, 0),
        stall_key(1, "strategy", at(30), Rung.REMIND, 0),  # a later stay in the same stage
        stall_key(1, "research", ENTERED, Rung.REMIND, 0),
        stall_key(2, "strategy", ENTERED, Rung.REMIND, 0),
    }
    assert len(keys) == 6
    assert stall_key(1, "strategy", ENTERED, Rung.REMIND, 0) == stall_key(
        1, "strategy", ENTERED, Rung.REMIND, 0
    )
    assert where(17).key(1, "strategy", ENTERED) == stall_key(
        1, "strategy", ENTERED, Rung.REMIND, 1
    )
