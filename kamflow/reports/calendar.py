"""`kamflow calendar`: the deadlines of the key accounts as an iCalendar (RFC 5545) file.

Three kinds of all-day event, each with a UID made of ids, so that importing a newer file
updates the events it imported before instead of adding them again:

- a key account's stage deadline, the day its stage's limit runs out (as the reminder ladder
  counts it, in calendar or business days: `businessdays.deadline`),
  ``stage-<account>-<stage>-<entered>@kamflow``: a new stay in a stage is a new event;
- its next review, ``review-<account>@kamflow``: the day it is due in the review stage (the
  stage whose moves need a review conclusion), counting each stage before it at its full limit
  from the current stage's deadline; for an account in that stage, the day it entered it. One
  event per account that moves as the account does;
- each open action's due date, ``action-<id>@kamflow``: rescheduling moves it.

The accounts and the actions are each read by one statement, a batch at a time, and the events
written as they are read: a million accounts take the memory of a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from kamflow import __version__
from kamflow.definitions.businessdays import UTC_CALENDAR, WorkCalendar, deadline
from kamflow.definitions.discovery import workflows_in_use
from kamflow.definitions.guardspecs import KPIS_REVIEWED
from kamflow.definitions.spec import StageSpec
from kamflow.definitions.workflow import Workflow
from kamflow.models import Account, Action, ActionStatus, Person
from kamflow.records.accounts import find_account
from kamflow.records.people import get_person
from kamflow.reports.listing import STAGE, Places, rows_of
from kamflow.text import plural, shell_quote

#: The domain part of every UID: the events are kamflow's.
UID_DOMAIN = "kamflow"
#: Events written to the output at a time.
EVENTS_PER_CHUNK = 500


@dataclass(frozen=True)
class StageFacts:
    """What a stage of a workflow says about the dates of an account in it."""

    title: str
    stage: StageSpec
    #: The stages an account passes before it is due in review, in order; None when the default
    #: moves from this stage never lead there; empty for the stage just before.
    to_review: tuple[StageSpec, ...] | None
    #: Whether this is the stage where the review is written.
    is_review: bool
    review_title: str


def stage_facts(definition: Workflow) -> dict[str, StageFacts]:
    """Each stage of ``definition`` with its limit and the way to the next review: the stages
    that the default move (the first one listed) passes through until it reaches a stage guarded
    by ``kpis_reviewed``."""
    reviews = definition.stages_guarded_by(KPIS_REVIEWED)
    review_title = definition.title_of(reviews[0]) if reviews else "Review"
    found = {}
    for stage in definition.spec.stages:
        path: list[StageSpec] = []
        here = stage.name
        reached = False
        for _ in definition.spec.stages:  # at most once round the cycle
            moves = definition.moves_from(here)
            if not moves:
                break
            here = moves[0].dest
            if here in reviews:
                reached = True
                break
            following = definition.stage(here)
            if following is None:
                break
            path.append(following)
        found[stage.name] = StageFacts(
            title=definition.title_of(stage.name),
            stage=stage,
            to_review=tuple(path) if reached else None,
            is_review=stage.name in reviews,
            review_title=review_title,
        )
    return found


def _uid(*parts: object) -> str:
    return "-".join(str(part) for part in parts) + f"@{UID_DOMAIN}"


def _stamp(moment: datetime) -> str:
    """A moment in UTC as a UID part: ``20270104T090000Z`` (microseconds when it has them)."""
    utc = moment.astimezone(ZoneInfo("UTC"))
    micro = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return f"{utc:%Y%m%dT%H%M%S}{micro}Z"


class CalendarFile:
    """The iCalendar file of the key accounts (all, one owner's, or one account's), written a
    chunk of events at a time by chunks(); ``events`` counts what was written.

    With ``owner``: the deadlines and reviews of the accounts that person owns, and the open
    actions that person owns on any key account. With ``account``: that account's deadline,
    review and open actions. NotFound for an unknown person or account, raised here, before
    anything is written.
    """

    def __init__(
        self,
        session: Session,
        *,
        now: datetime,
        timezone: ZoneInfo,
        calendar: WorkCalendar = UTC_CALENDAR,
        owner: str | None = None,
        account: str | None = None,
    ) -> None:
        self.session, self.now, self.timezone = session, now, timezone
        self.calendar = calendar
        self.definitions = workflows_in_use(session)
        self.places = Places(self.definitions)
        self.facts = {d.name: stage_facts(d) for d in self.definitions}
        self.name = "kamflow deadlines"
        self.accounts_where: Any = sa.true()
        self.actions_where: Any = sa.true()
        if account is not None:
            found = find_account(session, account)
            self.accounts_where = col(Account.id) == found.id
            self.actions_where = col(Action.account_id) == found.id
            self.name = f"kamflow: {found.name}"
        elif owner is not None:
            person = get_person(session, owner)
            self.accounts_where = col(Account.owner_id) == person.id
            self.actions_where = col(Action.owner_id) == person.id
            self.name = f"kamflow: {person.email}"
        self.events = 0

    def chunks(self) -> Iterator[bytes]:
        """The file: its header, the events a chunk at a time, its end."""
        from icalendar import Calendar

        head = Calendar()
        head.add("prodid", f"-//kamflow//kamflow {__version__}//EN")
        head.add("version", "2.0")
        head.add("calscale", "GREGORIAN")
        head.add("method", "PUBLISH")
        head.add("x-wr-calname", self.name)
        end = b"END:VCALENDAR\r\n"
        whole = head.to_ical()
        assert whole.endswith(end)
        yield whole[: -len(end)]
        batch: list[bytes] = []
        for event in self._events():
            batch.append(event)
            if len(batch) >= EVENTS_PER_CHUNK:
                yield b"".join(batch)
                batch = []
        if batch:
            yield b"".join(batch)
        yield end

    def _events(self) -> Iterator[bytes]:
        yield from self._account_events()
        yield from self._action_events()

    def _event(self, uid: str, day: date, summary: str, description: str) -> bytes:
        from icalendar import Event

        event = Event()
        event.add("uid", uid)
        event.add("dtstamp", self.now.astimezone(ZoneInfo("UTC")))
        event.add("dtstart", day)
        event.add("dtend", day + timedelta(days=1))
        event.add("summary", summary)
        event.add("description", description)
        # A deadline marks a day; it does not make anyone busy for all of it.
        event.add("transp", "TRANSPARENT")
        self.events += 1
        written: bytes = event.to_ical()
        return written

    def _day(self, moment: datetime) -> date:
        """The day ``moment`` falls on in KAMFLOW_TIMEZONE."""
        return moment.astimezone(self.timezone).date()

    def _account_events(self) -> Iterator[bytes]:
        """Each key account's stage deadline and next review."""
        key = self.places.where(Account, STAGE)
        statement = (
            sa.select(
                col(Account.id),
                col(Account.name),
                col(Account.workflow),
                col(Account.stage),
                col(Account.stage_entered_at),
                col(Person.email),
            )
            .join(Person, col(Person.id) == col(Account.owner_id))
            .where(key, self.accounts_where)
            .order_by(col(Account.id))
        )
        for row in rows_of(self.session, statement):
            facts = self.facts[row.workflow].get(row.stage)
            if facts is None:
                continue
            name, quoted = row.name, shell_quote(row.name)
            entered = row.stage_entered_at
            limit = facts.stage
            runs_out = deadline(entered, limit, self.calendar)
            unit = "business day" if limit.business_days else "day"
            yield self._event(
                _uid("stage", row.id, row.stage, _stamp(entered)),
                self._day(runs_out),
                f"{name}: {facts.title} deadline",
                f"{name} entered {facts.title} on {self._day(entered).isoformat()}; its limit "
                f"of {plural(limit.limit, unit)} runs out on this day, and from then on "
                f"its owner is reminded.\nOwner: {row.email}\n"
                f"What the next move needs: kamflow why {quoted}",
            )
            review = self._review(entered, runs_out, facts)
            if review is not None:
                day, text = review
                yield self._event(
                    _uid("review", row.id),
                    day,
                    f"{name}: {facts.review_title} due",
                    f"{text}\nOwner: {row.email}\n"
                    f"Write the conclusion: kamflow kpi review {quoted} --conclusion TEXT",
                )

    def _review(
        self, entered: datetime, runs_out: datetime, facts: StageFacts
    ) -> tuple[date, str] | None:
        """The day the account's next review is due, and what the event says of it."""
        if facts.is_review:
            return (
                self._day(entered),
                f"In {facts.review_title} since this day: review the KPIs and write the "
                f"conclusion before its limit runs out.",
            )
        if facts.to_review is None:
            return None
        due = runs_out
        for stage in facts.to_review:
            due = deadline(due, stage, self.calendar)
        return (
            self._day(due),
            f"The next {facts.review_title}, where the KPIs are reviewed and a conclusion "
            f"written: expected on this day when each stage until then takes its full limit.",
        )

    def _action_events(self) -> Iterator[bytes]:
        """Each open action's due date (of key accounts only, as its reminders)."""
        key = self.places.where(Account, STAGE)
        statement: Any = (
            sa.select(
                col(Action.id),
                col(Action.title),
                col(Action.due),
                col(Action.resources),
                col(Account.name).label("account"),
                col(Person.email),
            )
            .join(Account, col(Account.id) == col(Action.account_id))
            .outerjoin(Person, col(Person.id) == col(Action.owner_id))
            .where(
                col(Action.status) == ActionStatus.OPEN.value,
                col(Action.due).is_not(None),
                key,
                self.actions_where,
            )
            .order_by(col(Action.id))
        )
        for row in rows_of(self.session, statement):
            quoted = shell_quote(row.account)
            resources = f"\nResources: {row.resources}" if row.resources else ""
            yield self._event(
                _uid("action", row.id),
                row.due,
                f"Due: {row.title} ({row.account})",
                f"Action #{row.id} of {row.account}, owned by {row.email or 'nobody'}."
                f"{resources}\nWhen it is done: kamflow action done {quoted} {row.id}",
            )
