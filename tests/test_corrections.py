"""Correcting an account plan through the CLI, on SQLite and PostgreSQL: actions rescheduled,
reassigned and cancelled (and what that does to their reminders), due dates in the past, KPIs
edited, removed and brought back, a strategy set a part at a time, long answers from a file, the
account team listed, and one queued message shown in full.

Every correction is recorded in the account's history; every refusal is one `Error:` line and
leaves the database as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.cli import app
from kamflow.clock import FixedClock
from kamflow.config import Schedule
from kamflow.definitions.discovery import get_workflow
from kamflow.steps.actions import queue_action_reminders
from kamflow.steps.base import StepRun
from kamflow.steps.leader_digests import leader_view
from tests.conftest import Cli, as_json, failed, ok, snapshot

OWNER = "owner@example.com"
DOER = "doer@example.com"
OTHER = "other@example.com"
ACME = "Acme Corp"
SENDER = "kamflow@example.com"
KAM = get_workflow("kam")


# --- helpers -------------------------------------------------------------------------------------


def team(cli: Cli) -> None:
    """Three people and ACME, owned by OWNER, in Strategy since the clock's start (2027-01-04)."""
    ok(cli("person", "add", OWNER))
    ok(cli("person", "add", DOER))
    ok(cli("person", "add", OTHER))
    ok(cli("account", "add", ACME, "--owner", OWNER))


def add_action(cli: Cli, title: str = "Run a workshop", due: str = "2027-01-10") -> int:
    """An action of ACME owned by DOER; its id."""
    ok(cli("action", "add", ACME, title, "--owner", DOER, "--due", due))
    return int(actions(cli)[-1]["id"])


def actions(cli: Cli) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = as_json(cli("action", "list", ACME, "--json"))
    return rows


def notes(cli: Cli) -> list[str]:
    """The notes of ACME's history, oldest first."""
    return [row["note"] for row in as_json(cli("history", ACME, "--json"))]


def verdict(cli: Cli, guard: str) -> dict[str, Any]:
    """The verdict of ``guard`` on ACME's move forward, as `why --json` gives it."""
    moves = as_json(cli("why", ACME, "--json"))["moves"]
    found: dict[str, Any] = next(v for m in moves for v in m["verdicts"] if v["guard"] == guard)
    return found


def to_action_plan(cli: Cli) -> None:
    """ACME through Strategy and Research, with every required question answered."""
    ok(cli("strategy", "set", ACME, "--objective", "Grow", "--who", "The COO", "--why", "Fit"))
    ok(cli("advance", ACME))
    for role in ("relationship-lead", "technical-expert", "collaborator"):
        ok(cli("role", "assign", ACME, role, OWNER))
    for role in ("project-manager", "innovator", "result-driver"):
        ok(cli("role", "assign", ACME, role, DOER))
    answered = set()
    for question in KAM.questions.questions:
        if question.id in KAM.required_questions or question.category not in answered:
            ok(cli("plan", "answer", ACME, question.id, f"About {question.id}."))
            answered.add(question.category)
    ok(cli("advance", ACME))


def queue_reminders(engine: Engine, clock: FixedClock) -> list[str]:
    """Run the overdue-actions step once at the clock's time; the subjects it queued."""
    report = queue_action_reminders(StepRun(engine, clock.now(), Schedule.load({})))
    return [item["subject"] for item in report.queued]


def file_mail(folder: Path) -> dict[str, str]:
    return {
        "KAMFLOW_MAIL_TRANSPORT": "file",
        "KAMFLOW_OUTBOX_DIR": str(folder),
        "KAMFLOW_MAIL_FROM": SENDER,
    }


def sent_mail(folder: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def outbox(cli: Cli) -> list[dict[str, Any]]:
    """Every queued message, oldest first."""
    rows: list[dict[str, Any]] = as_json(cli("outbox", "list", "--json"))
    return rows[::-1]


def at(clock: FixedClock, day: int) -> None:
    """9:00 UTC on ``day`` January 2027."""
    clock.set(datetime(2027, 1, day, 9, 0, tzinfo=UTC))


# --- actions: reschedule, assign, cancel ---------------------------------------------------------


def test_reschedule_gives_an_action_a_new_due_date_on_record(cli: Cli) -> None:
    team(cli)
    action_id = add_action(cli)

    out = ok(cli("action", "reschedule", ACME, str(action_id), "--due", "2027-02-15"))

    assert f"#{action_id} rescheduled from 2027-01-10 to 2027-02-15" in out
    [row] = actions(cli)
    assert (row["due"], row["status"]) == ("2027-02-15", "open")
    assert f"action #{action_id} rescheduled from 2027-01-10 to 2027-02-15" in notes(cli)[-1]


def test_rescheduling_makes_the_old_reminder_obsolete_and_reminds_on_the_new_date(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    action_id = add_action(cli, due="2027-01-10")
    at(clock, 10)
    assert queue_reminders(engine, clock) == [f"Action due today for {ACME}: Run a workshop"]
    ok(cli("action", "reschedule", ACME, str(action_id), "--due", "2027-01-14"))
    mail = tmp_path / "mail"

    ok(cli("tick", env=file_mail(mail)))  # the reminder for the 10th is not sent

    assert sent_mail(mail) == []
    [old] = outbox(cli)
    assert old["status"] == "obsolete"
    assert f"action {action_id} is now due 2027-01-14" in old["last_error"]
    # Nothing is due between the dates: the old date's reminder does not count as this one's.
    at(clock, 13)
    assert queue_reminders(engine, clock) == []
    at(clock, 14)
    done = ok(cli("tick", env=file_mail(mail)))
    assert f"queued: Action due today for {ACME}: Run a workshop" in done
    [message] = sent_mail(mail)
    assert message["To"] == DOER
    at(clock, 17)
    assert queue_reminders(engine, clock) == [f"Action 3 days overdue for {ACME}: Run a workshop"]


def test_assign_gives_an_action_to_another_person_and_the_old_owner_is_not_reminded(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    action_id = add_action(cli)
    at(clock, 10)
    assert len(queue_reminders(engine, clock)) == 1  # for DOER, not delivered yet

    out = ok(cli("action", "assign", ACME, f"#{action_id}", OTHER.upper()))

    assert f"#{action_id} assigned from {DOER} to {OTHER}" in out
    assert actions(cli)[0]["owner"] == OTHER
    assert f"action #{action_id} assigned from {DOER} to {OTHER}" in notes(cli)[-1]
    mail = tmp_path / "mail"
    ok(cli("tick", env=file_mail(mail)))
    old = outbox(cli)[0]
    assert (old["status"], old["to"]) == ("obsolete", DOER)
    assert old["last_error"] == f"action {action_id} has another owner now"
    # The new owner hears of it in their morning digest, then in its reminders.
    assert [(m["To"], m["X-Kamflow-Kind"]) for m in sent_mail(mail)] == [(OTHER, "owner_digest")]
    at(clock, 13)
    ok(cli("tick", env=file_mail(mail)))
    sent = sorted((m["To"], m["X-Kamflow-Kind"]) for m in sent_mail(mail))
    assert sent == [(OTHER, "action"), (OTHER, "owner_digest")]


def test_a_cancelled_action_is_listed_as_such_and_never_reminded(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    action_id = add_action(cli)
    at(clock, 10)
    assert len(queue_reminders(engine, clock)) == 1

    out = ok(cli("action", "cancel", ACME, str(action_id), "--reason", "The plant closed"))

    assert f"#{action_id} cancelled" in out
    [row] = actions(cli)
    assert (row["status"], row["overdue"]) == ("cancelled", False)
    assert "cancelled" in ok(cli("action", "list", ACME))
    assert (
        notes(cli)[-1]
        == f"action #{action_id} cancelled: Run a workshop (reason: The plant closed)"
    )
    mail = tmp_path / "mail"
    ok(cli("tick", env=file_mail(mail)))
    assert sent_mail(mail) == []
    [old] = outbox(cli)
    assert (old["status"], old["last_error"]) == ("obsolete", f"action {action_id} is cancelled")
    for day in (13, 16, 25):
        at(clock, day)
        assert queue_reminders(engine, clock) == [], day
    forecast = as_json(cli("forecast", "--days", "30", "--json"))
    assert [row for row in forecast if row["kind"] == "action"] == []


def test_a_cancelled_action_does_not_count_for_the_plan(cli: Cli) -> None:
    team(cli)
    to_action_plan(cli)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    action_id = add_action(cli, due="2027-03-01")
    assert verdict(cli, "plan_complete")["ok"] is True

    ok(cli("action", "cancel", ACME, str(action_id), "--reason", "Merged into the pilot"))

    refused = verdict(cli, "plan_complete")
    assert refused["ok"] is False
    assert "no action left (all are cancelled)" in refused["message"]
    add_action(cli, "Run the pilot", due="2027-03-15")
    assert verdict(cli, "plan_complete")["ok"] is True
    assert "has 1 action" in verdict(cli, "plan_complete")["message"]


def test_refused_action_corrections_are_one_line_and_change_nothing(
    cli: Cli, engine: Engine
) -> None:
    team(cli)
    done = add_action(cli, "Call the COO")
    ok(cli("action", "done", ACME, str(done)))
    dropped = add_action(cli, "Visit the plant")
    ok(cli("action", "cancel", ACME, str(dropped), "--reason", "No budget"))
    live = add_action(cli, "Send the proposal", due="2027-02-01")
    ok(cli("person", "add", "gone@example.com"))
    ok(cli("person", "deactivate", "gone@example.com"))
    before = snapshot(engine)
    cases = [
        (["action", "assign", ACME, str(live), "gone@example.com"], ["deactivated"]),
        (["action", "cancel", ACME, str(done), "--reason", "x"], ["is done already"]),
        (["action", "cancel", ACME, str(dropped), "--reason", "x"], ["is cancelled already"]),
        (["action", "reschedule", ACME, str(dropped), "--due", "2027-03-01"], ["cancelled"]),
        (["action", "assign", ACME, str(dropped), OTHER], ["cancelled"]),
        (["action", "done", ACME, str(dropped)], ["cancelled"]),
        (["action", "assign", ACME, str(live), "nobody@example.com"], ["nobody@example.com"]),
        (["action", "assign", ACME, str(live), DOER], ["already", DOER]),
        (["action", "reschedule", ACME, str(live), "--due", "2027-02-01"], ["already due"]),
        (["action", "reschedule", ACME, str(live), "--due", "2027-02-30"], ["2027-02-30"]),
        (["action", "reschedule", ACME, str(live), "--due", "2027-01-03"], ["in the past"]),
        (["action", "reschedule", ACME, "999", "--due", "2027-03-01"], ["999"]),
        (["action", "cancel", ACME, str(live), "--reason", "  "], ["--reason"]),
        (["action", "cancel", "Nowhere Inc", str(live), "--reason", "x"], ["Nowhere Inc"]),
    ]
    for arguments, fragments in cases:
        line = failed(cli(*arguments))
        for fragment in fragments:
            assert fragment in line, (arguments, line)
    assert snapshot(engine) == before


# --- due dates in the past -----------------------------------------------------------------------


def test_a_due_date_in_the_past_is_refused_unless_past_is_given(cli: Cli, engine: Engine) -> None:
    team(cli)
    before = snapshot(engine)

    line = failed(cli("action", "add", ACME, "Call", "--owner", DOER, "--due", "2020-01-01"))

    assert "2020-01-01 is in the past (today is 2027-01-04)" in line
    assert "--past" in line
    assert snapshot(engine) == before
    out = ok(cli("action", "add", ACME, "Call", "--owner", DOER, "--due", "2020-01-01", "--past"))
    assert "(due 2020-01-01, a date in the past)" in out
    assert "a date in the past" in notes(cli)[-1]
    assert actions(cli)[0]["overdue"] is True
    # Today is not in the past.
    out = ok(cli("action", "add", ACME, "Plan", "--owner", DOER, "--due", "2027-01-04"))
    assert "in the past" not in out

    action_id = str(actions(cli)[-1]["id"])
    out = ok(cli("action", "reschedule", ACME, action_id, "--due", "2026-12-31", "--past"))
    assert "a date in the past" in out
    assert "a date in the past" in notes(cli)[-1]


def test_today_is_judged_in_the_configured_time_zone(cli: Cli, clock: FixedClock) -> None:
    team(cli)
    clock.set(datetime(2027, 1, 4, 3, 0, tzinfo=UTC))  # still the 3rd in New York
    new_york = {"KAMFLOW_TIMEZONE": "America/New_York"}

    ok(cli("action", "add", ACME, "Call", "--owner", DOER, "--due", "2027-01-03", env=new_york))

    assert "in the past" in failed(
        cli("action", "add", ACME, "Call", "--owner", DOER, "--due", "2027-01-03")
    )


def test_a_due_date_can_be_given_in_days_or_weeks_from_today(cli: Cli, engine: Engine) -> None:
    team(cli)  # today is 2027-01-04

    out = ok(cli("action", "add", ACME, "Call", "--owner", DOER, "--due", "+14d"))
    assert "(due 2027-01-18)" in out
    ok(cli("action", "add", ACME, "Visit", "--owner", DOER, "--due", "+3"))
    assert {a["title"]: a["due"] for a in actions(cli)} == {
        "Call": "2027-01-18",
        "Visit": "2027-01-07",
    }
    visit = next(str(a["id"]) for a in actions(cli) if a["title"] == "Visit")
    ok(cli("action", "reschedule", ACME, visit, "--due", "+3W"))
    assert {a["title"]: a["due"] for a in actions(cli)}["Visit"] == "2027-01-25"

    before = snapshot(engine)
    for wrong in ("+99999w", "+2m", "-3d", "+"):
        line = failed(cli("action", "add", ACME, "Call", "--owner", DOER, "--due", wrong))
        assert wrong in line, line
    assert snapshot(engine) == before


# --- KPIs: edit, remove, bring back --------------------------------------------------------------


def kpis_shown(cli: Cli) -> dict[str, dict[str, Any]]:
    return {k["name"]: k for k in as_json(cli("account", "show", ACME, "--json"))["kpis"]}


def test_kpi_edit_changes_what_is_given_and_keeps_the_values(cli: Cli) -> None:
    team(cli)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100", "--unit", "EUR"))
    ok(cli("kpi", "record", ACME, "Revenue", "90"))

    out = ok(cli("kpi", "edit", ACME, "revenue", "--target", "120", "--rename", "Sales"))

    assert "target 100 -> 120" in out
    assert "renamed to Sales" in out
    sales = kpis_shown(cli)["Sales"]
    assert (sales["target"], sales["unit"], sales["latest"]) == (120, "EUR", 90)
    assert sales["on_target"] is False
    assert notes(cli)[-1] == "KPI Revenue edited: renamed to Sales; target 100 -> 120"

    ok(cli("kpi", "edit", ACME, "Sales", "--unit", "", "--lower-is-better"))
    sales = kpis_shown(cli)["Sales"]
    assert (sales["unit"], sales["lower_is_better"], sales["on_target"]) == ("", True, True)
    assert notes(cli)[-1] == "KPI Sales edited: unit EUR -> (none); now lower is better"
    ok(cli("kpi", "edit", ACME, "Sales", "--higher-is-better"))
    assert kpis_shown(cli)["Sales"]["lower_is_better"] is False


def test_refused_kpi_edits_are_one_line_and_change_nothing(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    ok(cli("kpi", "add", ACME, "NPS", "--target", "40"))
    ok(cli("kpi", "add", ACME, "Churn", "--target", "5"))
    ok(cli("kpi", "remove", ACME, "Churn", "--reason", "Not measurable"))
    before = snapshot(engine)
    cases = [
        (["kpi", "edit", ACME, "Revenue"], ["nothing to change"]),
        (["kpi", "edit", ACME, "Revenue", "--target", "100"], ["nothing to change"]),
        (["kpi", "edit", ACME, "Revenue", "--rename", "nps"], ["already has a KPI", "NPS"]),
        (["kpi", "edit", ACME, "Revenue", "--rename", "CHURN"], ["Churn", "removed"]),
        (["kpi", "edit", ACME, "Revenue", "--target", "lots"], ["lots"]),
        (["kpi", "edit", ACME, "Margin", "--target", "3"], ["Margin"]),
        (["kpi", "edit", ACME, "Churn", "--target", "3"], ["Churn", "removed"]),
        (["kpi", "remove", ACME, "Churn", "--reason", "again"], ["Churn", "removed"]),
        (["kpi", "remove", ACME, "Revenue", "--reason", ""], ["--reason"]),
    ]
    for arguments, fragments in cases:
        line = failed(cli(*arguments))
        for fragment in fragments:
            assert fragment in line, (arguments, line)
    assert snapshot(engine) == before


def test_a_removed_kpi_stops_counting_and_comes_back_with_its_values(cli: Cli) -> None:
    team(cli)
    to_action_plan(cli)
    add_action(cli, due="2027-03-01")
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100", "--unit", "EUR"))
    ok(cli("kpi", "add", ACME, "Wallet share", "--target", "30"))
    ok(cli("advance", ACME))  # to Execution
    ok(cli("kpi", "record", ACME, "Revenue", "90"))
    assert verdict(cli, "kpis_recorded")["ok"] is False  # Wallet share has no value

    out = ok(cli("kpi", "remove", ACME, "wallet share", "--reason", "They will not share it"))

    assert "KPI Wallet share removed: They will not share it (no value recorded)" in out
    assert verdict(cli, "kpis_recorded")["ok"] is True
    assert list(kpis_shown(cli)) == ["Revenue"]
    assert [k["name"] for k in as_json(cli("kpis", "--json"))] == ["Revenue"]

    out = ok(cli("kpi", "remove", ACME, "Revenue", "--reason", "Measured by finance"))
    assert "(its 1 recorded value kept)" in out
    assert "Revenue = 90 for 2027-Q1" in notes(cli)  # the value stays on record
    assert kpis_shown(cli) == {}
    assert as_json(cli("kpis", "--json")) == []
    assert "the account has no KPI" in verdict(cli, "kpis_recorded")["message"]
    error = failed(cli("kpi", "record", ACME, "Revenue", "95"), 1)
    assert "was removed from the plan" in error and "kpi add" in error

    out = ok(cli("kpi", "add", ACME, "REVENUE", "--target", "150", "--unit", "USD"))

    assert "back in the plan" in out
    assert "brought back" in notes(cli)[-1]
    revenue = kpis_shown(cli)["REVENUE"]
    assert (revenue["target"], revenue["unit"], revenue["latest"]) == (150, "USD", 90)
    assert verdict(cli, "kpis_recorded")["ok"] is True


def test_a_removed_kpi_is_off_no_report_and_no_leaders_digest(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    ok(cli("kpi", "add", ACME, "Margin", "--target", "30"))
    ok(cli("kpi", "record", ACME, "Revenue", "90"))
    ok(cli("kpi", "record", ACME, "Margin", "20"))

    ok(cli("kpi", "remove", ACME, "Margin", "--reason", "Finance reports it"))

    page = as_json(cli("report", "--html", str(tmp_path / "report.html"), "--json"))
    assert page["kpi_counts"] == {"kpis": 1, "off_target": 1, "no_value": 0}
    assert [k["name"] for k in page["kpis"]] == ["Revenue"]
    with db.session_scope(engine) as session:
        view = leader_view(session, clock.now())
    assert view["kpis_off_target_count"] == 1
    assert [k["kpi"] for k in view["kpis_off_target"]] == ["Revenue"]


def test_removing_kpis_leaves_too_few_for_the_plan(cli: Cli) -> None:
    team(cli)
    to_action_plan(cli)
    add_action(cli, due="2027-03-01")
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "100"))
    assert verdict(cli, "kpis_defined")["ok"] is True

    ok(cli("kpi", "remove", ACME, "Revenue", "--reason", "Wrong measure"))

    assert verdict(cli, "kpis_defined")["ok"] is False
    assert "0 KPIs defined" in verdict(cli, "kpis_defined")["message"]


# --- strategy, answers, the team -----------------------------------------------------------------


def test_strategy_set_changes_only_the_parts_given(cli: Cli, engine: Engine) -> None:
    team(cli)

    ok(cli("strategy", "set", ACME, "--objective", "Become their standard supplier"))

    shown = as_json(cli("account", "show", ACME, "--json"))["strategy"]
    assert shown == {"objective": "Become their standard supplier", "who": "", "why": ""}
    message = verdict(cli, "strategy_defined")["message"]
    assert "--who ... --why ..." in message
    assert "--objective" not in message
    ok(cli("strategy", "set", ACME, "--why", "Largest growth potential", "--who", "The COO"))
    shown = as_json(cli("account", "show", ACME, "--json"))["strategy"]
    assert shown == {
        "objective": "Become their standard supplier",
        "who": "The COO",
        "why": "Largest growth potential",
    }
    assert notes(cli)[-2:] == ["strategy set: objective", "strategy set: who, why"]
    assert verdict(cli, "strategy_defined")["ok"] is True

    before = snapshot(engine)
    assert "nothing to set" in failed(cli("strategy", "set", ACME))
    assert "--who must not be empty" in failed(cli("strategy", "set", ACME, "--who", " "))
    assert snapshot(engine) == before


ANSWER = "First, lead times.\r\n\r\nSecond, emissions reporting:\r\n\t- per plant\r\n"


def test_plan_answer_takes_a_long_answer_from_a_file_or_standard_input(
    cli: Cli, database_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    question = "needs.top-business-needs"
    answer_file = tmp_path / "answer.txt"
    answer_file.write_bytes(b"\xef\xbb\xbf" + ANSWER.encode())

    out = ok(cli("plan", "answer", ACME, question, "--file", str(answer_file)))

    assert f"Answered {question}" in out
    expected = "First, lead times.\n\nSecond, emissions reporting:\n\t- per plant"
    [row] = [q for q in as_json(cli("plan", "questions", ACME, "--json")) if q["id"] == question]
    assert row["answer"] == expected

    runner_input = "Standard input, too.\nOn two lines.\n"
    result = cli_with_input(
        database_url, clock, runner_input, "plan", "answer", ACME, question, "--file", "-"
    )
    ok(result)
    [row] = [q for q in as_json(cli("plan", "questions", ACME, "--json")) if q["id"] == question]
    assert row["answer"] == "Standard input, too.\nOn two lines."


def cli_with_input(database_url: str, clock: FixedClock, text: str, *args: str) -> Result:
    """A command line run as the cli fixture runs it, with ``text`` on its standard input."""
    environment = {"KAMFLOW_NOW": clock.now().isoformat(), "KAMFLOW_USER": OWNER}
    return CliRunner().invoke(
        app, ["--db", database_url, *args], input=text, env=environment, catch_exceptions=False
    )


def test_plan_answer_refusals_are_one_line_and_change_nothing(
    cli: Cli, engine: Engine, tmp_path: Path
) -> None:
    team(cli)
    question = "needs.top-business-needs"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Bedürfnisse".encode("latin-1"))
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"one\x00two")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    before = snapshot(engine)

    both = failed(cli("plan", "answer", ACME, question, "Text", "--file", str(empty)), 2)
    assert "either as TEXT or with --file" in both
    assert "either as TEXT or with --file" in failed(cli("plan", "answer", ACME, question), 2)
    missing = tmp_path / "missing.txt"
    assert str(missing) in failed(cli("plan", "answer", ACME, question, "--file", str(missing)))
    assert "not UTF-8" in failed(cli("plan", "answer", ACME, question, "--file", str(latin1)))
    assert "control character" in failed(cli("plan", "answer", ACME, question, "--file", str(nul)))
    assert "empty" in failed(cli("plan", "answer", ACME, question, "--file", str(empty)))
    assert snapshot(engine) == before


def test_role_list_shows_each_role_its_holders_and_the_gaps(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("role", "assign", ACME, "relationship-lead", OWNER))
    ok(cli("role", "assign", ACME, "innovator", DOER))
    ok(cli("role", "assign", ACME, "innovator", OTHER))

    listed = as_json(cli("role", "list", ACME, "--json"))

    assert listed["account"] == ACME
    assert listed["roles"] == [
        {"role": "relationship-lead", "holders": [OWNER]},
        {"role": "technical-expert", "holders": []},
        {"role": "collaborator", "holders": []},
        {"role": "project-manager", "holders": []},
        {"role": "innovator", "holders": [DOER, OTHER]},
        {"role": "result-driver", "holders": []},
    ]
    assert listed["gaps"] == [
        "technical-expert",
        "collaborator",
        "project-manager",
        "result-driver",
    ]
    text = ok(cli("role", "list", ACME))
    assert f"innovator          {DOER}, {OTHER}" in text
    assert "-- nobody --" in text
    assert "4 of 6 roles held by nobody" in text
    assert "Nowhere Inc" in failed(cli("role", "list", "Nowhere Inc"))


# --- one queued message in full ------------------------------------------------------------------


def test_outbox_show_prints_a_message_as_it_will_be_sent(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    action_id = add_action(cli)
    at(clock, 10)
    queue_reminders(engine, clock)
    [queued] = outbox(cli)

    shown = as_json(cli("outbox", "show", str(queued["id"]), "--json"))

    assert shown["kind"] == "action"
    assert shown["account"] == ACME
    assert (shown["to"], shown["status"], shown["attempts"]) == (DOER, "pending", 0)
    assert shown["subject"] == f"Action due today for {ACME}: Run a workshop"
    assert f"kamflow action done '{ACME}' {action_id}" in shown["body"]
    text = ok(cli("outbox", "show", str(queued["id"])))
    assert f"to:           {DOER}" in text
    assert shown["body"].strip() in text

    mail = tmp_path / "mail"
    ok(cli("tick", env=file_mail(mail)))
    [message] = sent_mail(mail)
    plain = message.get_body(preferencelist=("plain",))
    assert isinstance(plain, EmailMessage)
    assert plain.get_content() == shown["body"]
    assert as_json(cli("outbox", "show", str(queued["id"]), "--json"))["status"] == "sent"
    assert "'42'" in failed(cli("outbox", "show", "42"))
    assert "'x'" in failed(cli("outbox", "show", "x"))
