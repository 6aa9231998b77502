"""Correcting mistakes about people and accounts, through the CLI, on SQLite and PostgreSQL.

People: edit, deactivate (with or without passing on what they own), activate; a deactivated
person gets no mail, neither queued nor delivered. Accounts: rename, reassign (within the cap),
reinstate (a workflow transition out of an exit), unsnooze, and the list by owner.
"""

from __future__ import annotations

import json
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from kamflow.clock import FixedClock
from kamflow.config import Schedule
from kamflow.steps.actions import queue_action_reminders
from kamflow.steps.base import StepRun
from kamflow.steps.stalls import queue_stalls
from tests.conftest import START, Cli, as_json, failed, ok, snapshot

OWNER = "owner@example.com"
LEADER = "lead@example.com"
CHIEF = "chief@example.com"
DOER = "doer@example.com"
OTHER = "other@example.com"
ACME = "Acme Corp"
SENDER = "kamflow@example.com"
ADMIN = "admin@example.com"


# --- helpers -------------------------------------------------------------------------------------


def team(cli: Cli) -> None:
    """An admin (the login running the tests, who acts for each of the others), an owner, two
    leaders, someone who does actions, and another colleague."""
    ok(cli("person", "add", ADMIN, "--name", "The admin", actor=ADMIN))
    ok(cli("person", "add", OWNER, "--name", "Olga Owner"))
    ok(cli("person", "add", LEADER, "--name", "Lea Leader", "--leader"))
    ok(cli("person", "add", CHIEF, "--leader"))
    ok(cli("person", "add", DOER))
    ok(cli("person", "add", OTHER))


def people(cli: Cli) -> dict[str, dict[str, Any]]:
    return {p["email"]: p for p in as_json(cli("person", "list", "--json"))}


def history(cli: Cli, name: str = ACME) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = as_json(cli("history", name, "--json"))
    return rows


def show(cli: Cli, name: str = ACME) -> dict[str, Any]:
    details: dict[str, Any] = as_json(cli("account", "show", name, "--json"))
    return details


def on_day(clock: FixedClock, days: float) -> None:
    clock.set(START + timedelta(days=days))


def file_mail(folder: Path) -> dict[str, str]:
    return {
        "KAMFLOW_MAIL_TRANSPORT": "file",
        "KAMFLOW_OUTBOX_DIR": str(folder),
        "KAMFLOW_MAIL_FROM": SENDER,
    }


def queued(cli: Cli, env: dict[str, str]) -> list[dict[str, Any]]:
    """What a real tick queued (it delivers too)."""
    found: list[dict[str, Any]] = as_json(cli("tick", "--json", env=env))["queued"]
    return found


def stall_messages(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The reminders and escalations among what a tick queued: (kind, subject)."""
    return [(q["kind"], q["subject"]) for q in found if q["kind"] in ("reminder", "escalation")]


def eml_files(folder: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    found = []
    for path in sorted(folder.glob("*.eml")):
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


# --- person edit, deactivate, activate -----------------------------------------------------------


def test_person_edit_corrects_the_name_and_leadership(cli: Cli, engine: Engine) -> None:
    team(cli)

    assert ok(cli("person", "edit", OWNER.upper(), "--name", "Olga Ownerova")) == (
        f"{OWNER}: name 'Olga Owner' -> 'Olga Ownerova'.\n"
    )
    ok(cli("person", "edit", DOER, "--leader"))
    ok(cli("person", "edit", CHIEF, "--no-leader", "--name", "Carl Chief"))

    found = people(cli)
    assert found[OWNER]["name"] == "Olga Ownerova"
    assert found[DOER]["leader"] is True
    assert (found[CHIEF]["name"], found[CHIEF]["leader"]) == ("Carl Chief", False)

    before = snapshot(engine)
    assert "nothing to change" in failed(cli("person", "edit", OWNER))
    assert "nothing to change" in failed(cli("person", "edit", DOER, "--leader"))
    assert "no person" in failed(cli("person", "edit", "nobody@example.com", "--leader"))
    assert "control character" in failed(cli("person", "edit", OWNER, "--name", "Olga\x07"))
    assert snapshot(engine) == before


def test_person_deactivate_shows_in_the_list_and_activate_undoes_it(
    cli: Cli, engine: Engine
) -> None:
    team(cli)

    done = ok(cli("person", "deactivate", DOER))

    assert "doer@example.com is deactivated" in done
    assert people(cli)[DOER]["active"] is False
    assert people(cli)[OWNER]["active"] is True
    row = next(line for line in ok(cli("person", "list")).splitlines() if DOER in line)
    assert row.split()[-1] == "no"
    before = snapshot(engine)
    assert failed(cli("person", "deactivate", DOER)) == (
        "Error: doer@example.com is already deactivated"
    )
    assert snapshot(engine) == before

    assert "active again" in ok(cli("person", "activate", DOER))
    assert people(cli)[DOER]["active"] is True
    assert failed(cli("person", "activate", DOER)) == "Error: doer@example.com is already active"


def test_a_deactivated_person_cannot_be_made_owner_or_role_holder(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("person", "deactivate", DOER))
    before = snapshot(engine)

    refusals = [
        failed(cli("account", "add", "Northwind", "--owner", DOER)),
        failed(cli("account", "reassign", ACME, DOER, actor=LEADER)),
        failed(cli("role", "assign", ACME, "collaborator", DOER)),
        failed(cli("action", "add", ACME, "Workshop", "--owner", DOER, "--due", "2027-03-01")),
        failed(cli("person", "deactivate", OWNER, "--reassign-to", DOER)),
    ]

    for refusal in refusals:
        assert "doer@example.com is deactivated and cannot" in refusal, refusal
    assert snapshot(engine) == before


def test_deactivate_with_reassign_passes_accounts_and_open_actions_on(
    cli: Cli, engine: Engine
) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", "Northwind", "--owner", OWNER, "--candidate"))
    ok(cli("account", "add", "Globex", "--owner", OTHER, actor=OTHER))
    ok(cli("retire", "Globex", "--reason", "Lost the tender", actor=OTHER))
    ok(cli("account", "reassign", "Globex", OWNER, actor=LEADER))
    # The owner's open actions, on an account of theirs and on someone else's; one done.
    ok(cli("account", "add", "Initech", "--owner", OTHER, actor=OTHER))
    ok(cli("action", "add", ACME, "Workshop", "--owner", OWNER, "--due", "2027-03-01"))
    site_visit = ("Site visit", "--owner", OWNER, "--due", "2027-02-01")
    ok(cli("action", "add", "Initech", *site_visit, actor=OTHER))
    ok(
        cli(
            "action",
            "add",
            "Initech",
            "Old call",
            "--owner",
            OWNER,
            "--due",
            "2027-01-05",
            actor=OTHER,
        )
    )
    ok(cli("action", "done", "Initech", "3", actor=OTHER))
    initech_before = len(history(cli, "Initech"))

    result = as_json(
        cli("person", "deactivate", OWNER, "--reassign-to", DOER, "--json", actor=LEADER)
    )

    assert result["reassigned_to"] == DOER
    assert (result["accounts_passed"], result["actions_passed"]) == (3, 2)
    assert (result["accounts_kept"], result["actions_kept"]) == (0, 0)
    assert people(cli)[OWNER]["active"] is False
    owners = {r["name"]: r["owner"] for r in as_json(cli("account", "list", "--json"))}
    assert owners == {ACME: DOER, "Northwind": DOER, "Globex": DOER, "Initech": OTHER}
    actions = {
        a["title"]: (a["owner"], a["status"])
        for name in (ACME, "Initech")
        for a in as_json(cli("action", "list", name, "--json"))
    }
    assert actions == {
        "Workshop": (DOER, "open"),
        "Site visit": (DOER, "open"),
        "Old call": (OWNER, "done"),  # what was done stays to their name
    }
    for name in (ACME, "Northwind", "Globex"):
        moved = [row for row in history(cli, name) if row["kind"] == "owner"][-1]
        assert (moved["actor"], moved["note"]) == (LEADER, f"owner {OWNER} -> {DOER}")
    assert history(cli)[-1]["note"] == f"open actions of {OWNER} passed to {DOER}"
    initech = history(cli, "Initech")
    assert len(initech) == initech_before + 1  # one row for the account, not one per action
    assert initech[-1]["kind"] == "action"
    assert initech[-1]["note"] == f"open actions of {OWNER} passed to {DOER}"
    status = as_json(cli("status", "--json"))
    assert status["deactivated_owners"] == []


def test_deactivate_with_reassign_stays_within_the_new_owners_cap(cli: Cli, engine: Engine) -> None:
    team(cli)
    for index in range(3):
        ok(cli("account", "add", f"Mine {index}", "--owner", OWNER))
    for index in range(3):
        ok(cli("account", "add", f"Theirs {index}", "--owner", DOER, actor=DOER))
    ok(cli("account", "add", "A candidate", "--owner", OWNER, "--candidate"))
    before = snapshot(engine)

    refusal = failed(cli("person", "deactivate", OWNER, "--reassign-to", DOER), 3)
    assert refusal.startswith(
        f"Error: the key accounts of {OWNER} cannot pass to {DOER}: {DOER} already owns "
        "3 key accounts and would get 3 more, the cap is 5"
    )
    not_a_leader = cli(
        "person", "deactivate", OWNER, "--reassign-to", DOER, "--override", "--reason", "Leave"
    )
    assert "only a leader may override" in failed(not_a_leader, 5)
    assert snapshot(engine) == before

    done = cli(
        "person",
        "deactivate",
        OWNER,
        "--reassign-to",
        DOER,
        "--override",
        "--reason",
        "Covering a parental leave",
        actor=LEADER,
    )

    assert "4 accounts and 0 open actions passed to doer@example.com" in ok(done)
    assert "over the cap by leader override" in done.stderr
    assert history(cli, "Mine 0")[-1]["note"] == (
        f"owner {OWNER} -> {DOER}; cap override: Covering a parental leave"
    )
    assert len(as_json(cli("account", "list", "--owner", DOER, "--json"))) == 7


def test_what_a_deactivated_person_still_owns_is_a_warning(cli: Cli) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", "Globex", "--owner", OWNER))
    ok(cli("action", "add", ACME, "Workshop", "--owner", DOER, "--due", "2027-03-01"))

    done = cli("person", "deactivate", OWNER)
    ok(cli("person", "deactivate", DOER))

    assert "still owns 2 accounts and 0 open actions" in ok(done) + done.stderr
    status = as_json(cli("status", "--json"))
    assert status["deactivated_owners"] == [
        {"email": DOER, "accounts": 0, "open_actions": 1},
        {"email": OWNER, "accounts": 2, "open_actions": 0},
    ]
    text = ok(cli("status"))
    assert f"Warning: {OWNER} is deactivated but still owns 2 accounts" in text
    assert f"Warning: {DOER} is deactivated but still owns 1 open action" in text
    details = show(cli)
    assert details["owner_active"] is False
    assert len(details["warnings"]) == 2
    assert OWNER in details["warnings"][0] and DOER in details["warnings"][1]
    shown = ok(cli("account", "show", ACME))
    assert f"owner:    {OWNER} (deactivated)" in shown
    assert f"Warning: the owner {OWNER} is deactivated" in shown

    # Passing on what is left clears the warnings.
    ok(cli("person", "deactivate", OWNER, "--reassign-to", OTHER))
    ok(cli("person", "deactivate", DOER, "--reassign-to", OTHER))
    assert as_json(cli("status", "--json"))["deactivated_owners"] == []
    assert show(cli)["warnings"] == []
    assert "Warning" not in ok(cli("status"))


# --- no mail for a deactivated person ------------------------------------------------------------


def test_the_steps_queue_nothing_for_a_deactivated_person(
    cli: Cli, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("action", "add", ACME, "Workshop", "--owner", DOER, "--due", "2027-01-10"))
    for email in (OWNER, DOER, CHIEF):
        ok(cli("person", "deactivate", email))
    env = file_mail(tmp_path / "mail")

    on_day(clock, 15)  # behind: a reminder is due; the action is overdue; a digest morning
    found = queued(cli, env)
    assert [(q["kind"], q["to"]) for q in found] == [("leader_digest", [LEADER])]
    forecast = as_json(cli("forecast", "--days", "14", "--json"))
    assert {row["kind"] for row in forecast} == {"escalation"}

    on_day(clock, 22)  # stuck: the escalation goes to the active leader, with no Cc
    found = queued(cli, env)
    assert [(q["kind"], q["to"], q["cc"]) for q in found] == [
        ("escalation", [LEADER], []),
        ("leader_digest", [LEADER], []),
    ]

    # Once the owner is back, they are reminded again (and copied on escalations).
    ok(cli("person", "activate", OWNER))
    on_day(clock, 29)
    kinds = {(q["kind"], tuple(q["to"]), tuple(q["cc"])) for q in queued(cli, env)}
    assert ("escalation", (LEADER,), (OWNER,)) in kinds
    assert ("owner_digest", (OWNER,), ()) not in kinds  # reminded of it today already


def test_delivery_leaves_deactivated_people_out_of_queued_messages(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("action", "add", ACME, "Workshop", "--owner", DOER, "--due", "2027-01-10"))
    on_day(clock, 22)
    run = StepRun(engine, clock.now(), Schedule.load({}))
    assert len(queue_stalls(run).queued) == 1  # to both leaders, the owner in Cc
    assert len(queue_action_reminders(run).queued) == 1  # to the action's owner
    ok(cli("person", "deactivate", CHIEF))
    ok(cli("person", "deactivate", OWNER))
    ok(cli("person", "deactivate", DOER))
    folder = tmp_path / "mail"

    ok(cli("tick", env=file_mail(folder)))

    sent = {message["X-Kamflow-Kind"]: message for message in eml_files(folder)}
    assert set(sent) == {"escalation", "leader_digest"}
    assert sent["escalation"]["To"] == LEADER
    assert sent["escalation"]["Cc"] is None
    listed = {m["kind"]: m for m in as_json(cli("outbox", "list", "--json"))}
    assert listed["action"]["status"] == "obsolete"
    assert listed["action"]["last_error"] == f"{DOER} is deactivated"
    assert listed["escalation"]["status"] == "sent"


# --- account rename, reassign, list by owner -----------------------------------------------------


def test_account_rename(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", "Northwind", "--owner", OWNER))

    assert ok(cli("account", "rename", ACME, "  Acme  Industries ")) == (
        "Acme Corp is now called Acme Industries.\n"
    )
    ok(cli("account", "rename", "acme industries", "ACME Industries"))  # a change of case

    assert show(cli, "acme industries")["name"] == "ACME Industries"
    last = history(cli, "ACME Industries")[-1]
    assert (last["kind"], last["actor"], last["note"]) == (
        "name",
        OWNER,
        "Acme Industries -> ACME Industries",
    )
    before = snapshot(engine)
    assert failed(cli("account", "rename", "ACME Industries", "northWIND")) == (
        "Error: there is already an account named 'Northwind'"
    )
    assert "already called that" in failed(cli("account", "rename", "Northwind", "Northwind"))
    assert "account id" in failed(cli("account", "rename", "Northwind", "42"))
    assert "must not be empty" in failed(cli("account", "rename", "Northwind", " "))
    assert "no account" in failed(cli("account", "rename", "Nowhere", "Somewhere"))
    assert failed(cli("account", "rename", "Northwind", "North", actor=DOER), 5) == (
        "Error: not allowed: only the owner, a leader or an admin may rename Northwind; "
        f"you are {ADMIN}, acting for {DOER}"
    )
    assert snapshot(engine) == before
    ok(cli("account", "rename", "Northwind", "North", actor=LEADER))


def test_account_reassign_within_the_new_owners_cap(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    for index in range(5):
        ok(cli("account", "add", f"Theirs {index}", "--owner", DOER, actor=DOER))
    ok(cli("account", "add", "A candidate", "--owner", OWNER, "--candidate"))
    before = snapshot(engine)

    refusal = failed(cli("account", "reassign", ACME, DOER), 3)
    assert refusal.startswith(
        f"Error: {ACME} cannot pass to {DOER}: {DOER} already owns 5 key accounts, the cap is 5"
    )
    assert "only the owner, a leader or an admin may reassign" in failed(
        cli("account", "reassign", ACME, OTHER, actor=DOER), 5
    )
    assert "only a leader may override" in failed(
        cli("account", "reassign", ACME, DOER, "--override", "--reason", "Urgent"), 5
    )
    assert "already owns" in failed(cli("account", "reassign", ACME, OWNER))
    assert "no person" in failed(cli("account", "reassign", ACME, "nobody@example.com"))
    assert "no cap to override" in failed(
        cli("account", "reassign", "A candidate", OTHER, "--override", "--reason", "x")
    )
    assert snapshot(engine) == before

    # A candidate is not a key account: no cap; a leader may go over it with a reason.
    assert ok(cli("account", "reassign", "A candidate", DOER)) == (
        f"A candidate passed from {OWNER} to {DOER}.\n"
    )
    over = cli("account", "reassign", ACME, DOER, "--override", "--reason", "Merger", actor=LEADER)
    ok(over)
    assert over.stdout == f"{ACME} passed from {OWNER} to {DOER}.\n"
    assert "over the cap by leader override" in over.stderr
    last = history(cli)[-1]
    assert (last["kind"], last["actor"]) == ("owner", LEADER)
    assert last["note"] == f"owner {OWNER} -> {DOER}; cap override: Merger"
    assert [v["guard"] for v in last["verdicts"]] == ["within_cap"]
    assert show(cli)["owner"] == DOER

    # Within the cap, near it: a warning.
    ok(cli("account", "add", "Initech", "--owner", OTHER, actor=OTHER))
    ok(cli("account", "add", "Globex", "--owner", OTHER, actor=OTHER))
    moved = cli("account", "reassign", "Initech", OWNER, actor=OTHER)
    ok(moved)
    assert moved.stderr == ""
    ok(cli("account", "add", "Hooli", "--owner", OWNER))
    warned = cli("account", "reassign", "Globex", OWNER, actor=OTHER)
    ok(warned)
    assert f"Warning: {OWNER} will own 3 key accounts" in warned.stderr


def test_account_list_by_owner_and_mine(cli: Cli) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", "Northwind", "--owner", DOER, actor=DOER))
    ok(cli("account", "add", "Globex", "--owner", OWNER, "--candidate"))

    def names(*args: str, actor: str = OWNER) -> list[str]:
        return [r["name"] for r in as_json(cli("account", "list", *args, "--json", actor=actor))]

    assert names("--owner", OWNER.upper()) == [ACME, "Globex"]
    assert names("--owner", DOER) == ["Northwind"]
    assert names("--mine") == [ACME, "Globex"]
    assert names("--mine", actor=DOER) == ["Northwind"]
    assert names("--mine", "--stage", "candidate") == ["Globex"]
    assert names("--owner", OTHER) == []
    text = ok(cli("account", "list", "--mine"))
    assert ACME in text and "Northwind" not in text
    assert "no person" in failed(cli("account", "list", "--owner", "nobody@example.com"))
    assert "no person" in failed(cli("account", "list", "--mine", actor="nobody@example.com"))
    mixed = cli("account", "list", "--mine", "--owner", OWNER)
    assert mixed.exit_code == 2 and "cannot go together" in mixed.stderr


# --- reinstate -----------------------------------------------------------------------------------


def test_a_leader_reinstates_a_retired_or_disqualified_account_to_strategy(
    cli: Cli, engine: Engine, clock: FixedClock
) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("account", "add", "Northwind", "--owner", OWNER, "--workflow", "kam-lite"))
    ok(cli("retire", ACME, "--reason", "Lost the tender"))
    ok(cli("disqualify", "Northwind", "--reason", "No budget"))
    on_day(clock, 30)
    before = snapshot(engine)

    assert failed(cli("reinstate", ACME, "--reason", "Tender reopened"), 5) == (
        f"Error: not allowed: only a leader may reinstate {ACME}; "
        f"you are {ADMIN}, acting for {OWNER}"
    )
    assert "only a leader" in failed(
        cli("reinstate", ACME, "--reason", "Tender reopened", actor="nobody@example.com"), 5
    )
    assert "--reason" in failed(cli("reinstate", ACME, "--reason", "  ", actor=LEADER))
    assert snapshot(engine) == before
    why = as_json(cli("why", ACME, "--json", actor=LEADER))
    assert [(m["transition"], m["to"]) for m in why["moves"]] == [("reinstate", "strategy")]

    done = ok(cli("reinstate", ACME, "--reason", "Tender reopened", actor=LEADER))

    assert done == f"{ACME}: retired -> strategy (reinstate).\n"
    details = show(cli)
    assert (details["stage"], details["days_in_stage"]) == ("strategy", 0)
    last = history(cli)[-1]
    assert (last["kind"], last["transition"], last["from"], last["to"]) == (
        "transition",
        "reinstate",
        "retired",
        "strategy",
    )
    assert (last["actor"], last["note"]) == (LEADER, "Tender reopened")
    assert [v["guard"] for v in last["verdicts"]] == ["allowed", "within_cap"]
    outcome = as_json(
        cli("reinstate", "Northwind", "--reason", "Budget found", "--json", actor=LEADER)
    )
    assert (outcome["from"], outcome["to"], outcome["allowed"]) == (
        "disqualified",
        "strategy",
        True,
    )
    assert show(cli, "Northwind")["workflow"] == "kam-lite"
    assert "only an account that left the programme" in failed(
        cli("reinstate", ACME, "--reason", "Again", actor=LEADER)
    )


def test_reinstate_stays_within_the_owners_cap(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("retire", ACME, "--reason", "Lost the tender"))
    for index in range(5):
        ok(cli("account", "add", f"Mine {index}", "--owner", OWNER))
    before = snapshot(engine)

    refusal = failed(cli("reinstate", ACME, "--reason", "Tender reopened", actor=LEADER), 3)
    assert refusal.startswith(
        f"Error: {ACME} cannot be reinstated: {OWNER} already owns 5 key accounts, the cap is 5"
    )
    dry = cli("reinstate", ACME, "--reason", "Tender reopened", "--dry-run", actor=LEADER)
    assert dry.exit_code == 3 and "would not reinstate" in dry.output
    assert snapshot(engine) == before

    over = cli("reinstate", ACME, "--reason", "Board decision", "--override", actor=LEADER)
    ok(over)
    assert over.stdout == f"{ACME}: retired -> strategy (reinstate).\n"
    assert "over the cap by leader override" in over.stderr
    assert history(cli)[-1]["note"] == "Board decision; cap overridden"


def test_reinstate_is_refused_in_one_line_when_it_cannot_be_done(
    cli: Cli, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team(cli)
    shipped = Path(__file__).resolve().parent.parent / "workflows"
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "questions.yaml").write_text(
        (shipped / "questions.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    kam = (shipped / "kam.yaml").read_text(encoding="utf-8")
    (folder / "strict.yaml").write_text(
        kam.replace("name: kam\n", "name: strict\n").split("  # The way back")[0],
        encoding="utf-8",
    )
    monkeypatch.setenv("KAMFLOW_WORKFLOWS", str(folder))
    ok(cli("account", "add", ACME, "--owner", OWNER, "--workflow", "strict"))
    ok(cli("retire", ACME, "--reason", "Lost the tender"))
    ok(cli("account", "add", "Northwind", "--owner", OWNER))
    ok(cli("retire", "Northwind", "--reason", "Lost the tender"))
    ok(cli("person", "deactivate", OWNER))
    before = snapshot(engine)

    assert failed(cli("reinstate", ACME, "--reason", "Back", actor=LEADER)) == (
        "Error: workflow strict has no reinstate transition from Retired: add one to the "
        "workflow file to bring accounts back"
    )
    assert f"owner {OWNER} is deactivated" in failed(
        cli("reinstate", "Northwind", "--reason", "Back", actor=LEADER)
    )
    assert "no account" in failed(cli("reinstate", "Nowhere", "--reason", "Back", actor=LEADER))
    assert snapshot(engine) == before


def test_the_shipped_workflows_have_a_leaders_way_back_from_their_exits(cli: Cli) -> None:
    for name in ("kam", "kam-lite"):
        data = json.loads(ok(cli("workflow", "show", name, "--format", "json")))
        [back] = [t for t in data["transitions"] if t["name"] == "reinstate"]
        assert (back["from"], back["to"]) == (["disqualified", "retired"], "strategy")
        assert (back["allowed"], back["reason_required"]) == (["leader"], True)
        assert [g["name"] for g in back["guards"]] == ["within_cap"]
        mermaid = ok(cli("workflow", "show", name, "--format", "mermaid"))
        assert "retired --> strategy: reinstate" in mermaid
        assert "disqualified --> strategy: reinstate" in mermaid


# --- unsnooze ------------------------------------------------------------------------------------


def test_unsnooze_ends_the_snooze_and_the_reminders_resume(
    cli: Cli, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    env = file_mail(tmp_path / "mail")
    before = snapshot(engine)
    assert failed(cli("unsnooze", ACME)) == (
        f"Error: {ACME} is not snoozed: its reminders are already running"
    )
    assert snapshot(engine) == before
    assert show(cli)["snooze"] is None

    on_day(clock, 13)
    ok(cli("snooze", ACME, "--days", "10", "--reason", "Their buying centre reorganises"))
    details = show(cli)
    assert details["snooze"] == {
        "until": (START + timedelta(days=23)).isoformat(),
        "reason": "Their buying centre reorganises",
        "by": OWNER,
        "at": (START + timedelta(days=13)).isoformat(),
    }
    assert f"snoozed:  until 2027-01-27 by {OWNER}: Their buying centre reorganises" in ok(
        cli("account", "show", ACME)
    )
    on_day(clock, 15)
    assert stall_messages(queued(cli, env)) == []  # behind, but snoozed
    before = snapshot(engine)
    assert failed(cli("unsnooze", ACME, actor=DOER), 5) == (
        "Error: not allowed: only the owner, a leader or an admin may unsnooze "
        f"{ACME}; you are {ADMIN}, acting for {DOER}"
    )
    assert snapshot(engine) == before

    assert ok(cli("unsnooze", ACME, actor=LEADER)) == (
        f"Reminders for {ACME} resume now (it was snoozed until 2027-01-27).\n"
    )

    assert show(cli)["snooze"] is None
    last = history(cli)[-1]
    assert (last["kind"], last["actor"]) == ("snooze", LEADER)
    assert "ended early" in last["note"]
    # The ladder stands where it would have: the reminder due since day 14 goes out now.
    assert stall_messages(queued(cli, env)) == [
        ("reminder", f"{ACME} has been in Strategy for 15 days")
    ]
    assert failed(cli("unsnooze", ACME)).endswith(
        "is not snoozed: its reminders are already running"
    )


def test_a_deactivated_person_keeps_no_authority(cli: Cli, engine: Engine) -> None:
    team(cli)
    ok(cli("account", "add", ACME, "--owner", OWNER))
    ok(cli("retire", ACME, "--reason", "Lost the tender"))
    ok(cli("account", "add", "Northwind", "--owner", DOER, actor=DOER))
    ok(cli("person", "deactivate", LEADER))
    ok(cli("person", "deactivate", DOER))
    before = snapshot(engine)

    assert failed(cli("reinstate", ACME, "--reason", "Back", actor=LEADER), 5) == (
        f"Error: not allowed: only a leader may reinstate {ACME}; "
        f"you are {ADMIN}, acting for {LEADER} (deactivated)"
    )
    assert failed(cli("account", "rename", "Northwind", "North", actor=DOER), 5) == (
        "Error: not allowed: only the owner, a leader or an admin may rename Northwind; "
        f"you are {ADMIN}, acting for {DOER} (deactivated)"
    )
    overriding = cli(
        "account", "reassign", "Northwind", OWNER, "--override", "--reason", "x", actor=LEADER
    )
    assert failed(overriding, 5) == (
        "Error: not allowed: only the owner, a leader or an admin may reassign Northwind; "
        f"you are {ADMIN}, acting for {LEADER} (deactivated)"
    )
    assert snapshot(engine) == before
    ok(cli("reinstate", ACME, "--reason", "Back", actor=CHIEF))
