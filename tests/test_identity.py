"""Who is acting: the person linked to the authenticated login, admins acting on someone's behalf,
a permission rule on every change, and PostgreSQL's grants.

On PostgreSQL several real logins connect, each as itself (trust authentication on loopback): two
account managers and a leader. On SQLite the login is the operating-system user running the tests;
the single-user flow (the login that created the database names itself) is what the tour and the
demo rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kamflow import db
from kamflow.clock import FixedClock
from kamflow.grants import ADMINS, USERS
from kamflow.records.identity import os_login
from tests.conftest import (
    PG_URL,
    Cli,
    _require_postgres,
    as_json,
    cli_on,
    failed,
    fresh_schema,
    ok,
    snapshot,
)

ADMIN = "admin@example.com"
ANNA = "anna@example.com"
BEN = "ben@example.com"
LEAD = "lead@example.com"
ACME, GLOBEX = "Acme Corp", "Globex"
NOT_ALLOWED = 5

#: The PostgreSQL logins of the story; roles belong to the whole server, so they are shared by
#: every test (created once, each a member of kamflow's users' group).
LOGINS = {ANNA: "kf_test_anna", BEN: "kf_test_ben", LEAD: "kf_test_lead"}
STRANGER = "kf_test_stranger"


def history(cli: Cli, name: str = ACME) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = as_json(cli("history", name, "--json"))
    return rows


def people(cli: Cli) -> dict[str, dict[str, Any]]:
    return {p["email"]: p for p in as_json(cli("person", "list", "--json"))}


# --- PostgreSQL: several real logins --------------------------------------------------------------


def _login_url(url: str, login: str) -> str:
    """``url`` (a schema of the test database, as the founder) as ``login`` instead."""
    founder = sa.engine.make_url(PG_URL).username
    return url.replace(f"{founder}@", f"{login}@", 1)


def _create_logins() -> None:
    """The test's logins (idempotent: a previous run or a concurrent one may have made them)."""
    admin = sa.create_engine(PG_URL)
    with admin.begin() as connection:
        for login in [*LOGINS.values(), STRANGER]:
            connection.exec_driver_sql(
                f"DO $$ BEGIN CREATE ROLE {login} LOGIN; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
            connection.exec_driver_sql(f"GRANT {USERS} TO {login}")
    admin.dispose()


@pytest.fixture
def team_on_postgres(clock: FixedClock, tmp_path: Path) -> Iterator[dict[str, Cli]]:
    """A kamflow database on PostgreSQL made by the founder's login (the admin), with two
    account managers and a leader, each a CLI that connects as their own login; the
    key-account cap is one per owner."""
    _require_postgres()
    folder = tmp_path / "workflows"
    folder.mkdir()
    shipped = Path(__file__).resolve().parent.parent / "workflows" / "portfolio.yaml"
    text = shipped.read_text().replace("per_owner: 5", "per_owner: 1")
    (folder / "portfolio.yaml").write_text(text.replace("warn_per_owner: 3", "warn_per_owner: 1"))
    env = {"KAMFLOW_WORKFLOWS": str(folder)}
    with fresh_schema() as url:
        founder = cli_on(url, clock)  # `kamflow init`, as the founder: the grants too
        _create_logins()

        def as_login(login: str) -> Cli:
            inner = cli_on(_login_url(url, login), clock, init=False)

            def invoke(*args: str, actor: str = "", env_: dict[str, str] | None = None) -> Any:
                return inner(*args, actor=actor, env={**env, **(env_ or {})})

            return invoke

        def admin(*args: str, actor: str = ADMIN, env_: dict[str, str] | None = None) -> Any:
            return founder(*args, actor=actor, env={**env, **(env_ or {})})

        ok(admin("person", "add", ADMIN, "--name", "The admin"))
        ok(admin("person", "add", ANNA, "--login", LOGINS[ANNA]))
        ok(admin("person", "add", BEN, "--login", LOGINS[BEN]))
        ok(admin("person", "add", LEAD, "--leader", "--login", LOGINS[LEAD]))
        clis = {email: as_login(login) for email, login in LOGINS.items()}
        clis[ADMIN] = admin
        clis["stranger"] = as_login(STRANGER)
        clis["url"] = url  # type: ignore[assignment]
        try:
            yield clis
        finally:
            for login in [*LOGINS.values(), STRANGER]:
                db.engine_for(_login_url(url, login)).dispose()


def test_each_login_acts_as_itself_and_the_history_shows_who(
    team_on_postgres: dict[str, Cli],
) -> None:
    anna, ben, admin = team_on_postgres[ANNA], team_on_postgres[BEN], team_on_postgres[ADMIN]
    assert people(admin)[ADMIN]["admin"] is True  # the founder's login named itself: first admin
    ok(anna("account", "add", ACME, "--owner", ANNA))
    ok(anna("strategy", "set", ACME, "--objective", "Standardise on us"))
    ok(ben("account", "add", GLOBEX, "--owner", BEN))
    rows = history(anna)
    assert [(r["actor"], r["login"], r["acted_by"]) for r in rows] == [
        (ANNA, LOGINS[ANNA], None),
        (ANNA, LOGINS[ANNA], None),
    ]
    # Naming someone else is not for a manager: --as (or KAMFLOW_USER) cannot make Ben Anna.
    line = failed(ben("strategy", "set", ACME, "--why", "x", actor=ANNA), NOT_ALLOWED)
    assert line == (
        f"Error: not allowed: you are {BEN} (login {LOGINS[BEN]}); only an admin may act as "
        f"someone else (--as {ANNA})"
    )


def test_a_manager_cannot_change_anothers_account_unless_on_its_team(
    team_on_postgres: dict[str, Cli],
) -> None:
    anna, ben = team_on_postgres[ANNA], team_on_postgres[BEN]
    ok(anna("account", "add", ACME, "--owner", ANNA))
    url = str(team_on_postgres["url"])
    before = snapshot(db.engine_for(url))
    for command in (
        ("strategy", "set", ACME, "--objective", "Mine now"),
        ("action", "add", ACME, "Call them", "--owner", BEN, "--due", "+2w"),
        ("advance", ACME),
        ("retire", ACME, "--reason", "not mine"),
        ("account", "rename", ACME, "Acme Ltd"),
        ("snooze", ACME, "--days", "3", "--reason", "holiday"),
    ):
        line = failed(ben(*command), NOT_ALLOWED)
        assert line.startswith("Error: not allowed: only "), line
        assert f"you are {BEN}" in line
    assert snapshot(db.engine_for(url)) == before
    # Anna puts Ben on the account team: now he may work on the plan, but not retire it.
    ok(anna("role", "assign", ACME, "technical-expert", BEN))
    ok(ben("strategy", "set", ACME, "--objective", "Standardise on us"))
    assert history(ben)[-1]["actor"] == BEN
    line = failed(ben("retire", ACME, "--reason", "not mine"), NOT_ALLOWED)
    assert "only the owner or a leader may retire Acme Corp" in line


def test_only_the_leader_overrides_the_cap(team_on_postgres: dict[str, Cli]) -> None:
    anna, lead = team_on_postgres[ANNA], team_on_postgres[LEAD]
    ok(anna("account", "add", ACME, "--owner", ANNA))
    # The cap is one key account per owner: a second one is refused by the guard (exit 3) ...
    assert anna("account", "add", GLOBEX, "--owner", ANNA).exit_code == 3
    # ... and Anna may not go over it herself: a permission, with its own exit code.
    line = failed(
        anna("account", "add", GLOBEX, "--owner", ANNA, "--override", "--reason", "big deal"),
        NOT_ALLOWED,
    )
    assert "only a leader may override the key-account cap" in line
    ok(lead("account", "add", GLOBEX, "--owner", ANNA, "--override", "--reason", "big deal"))
    created = history(lead, GLOBEX)[0]
    assert (created["actor"], created["login"]) == (LEAD, LOGINS[LEAD])
    assert "cap override: big deal" in created["note"]


def test_an_admin_acting_for_someone_is_recorded_on_their_behalf(
    team_on_postgres: dict[str, Cli],
) -> None:
    anna, admin = team_on_postgres[ANNA], team_on_postgres[ADMIN]
    ok(anna("account", "add", ACME, "--owner", ANNA))
    ok(admin("strategy", "set", ACME, "--objective", "Fixed a typo", actor=ANNA))
    row = history(anna)[-1]
    founder = sa.engine.make_url(PG_URL).username
    assert (row["actor"], row["acted_by"], row["login"]) == (ANNA, ADMIN, founder)
    shown = ok(anna("history", ACME))
    assert f"{ANNA} (by {ADMIN})" in shown
    # Acting for Anna, the admin has Anna's rights, not more: no override of the cap.
    line = failed(
        admin("account", "add", GLOBEX, "--owner", ANNA, "--override", "--reason", "x", actor=ANNA),
        NOT_ALLOWED,
    )
    assert f"you are {ADMIN}, acting for {ANNA}" in line


def test_a_login_linked_to_nobody_reads_but_changes_nothing(
    team_on_postgres: dict[str, Cli],
) -> None:
    anna, stranger = team_on_postgres[ANNA], team_on_postgres["stranger"]
    ok(anna("account", "add", ACME, "--owner", ANNA))
    assert ACME in ok(stranger("account", "list"))
    line = failed(stranger("strategy", "set", ACME, "--objective", "x"), NOT_ALLOWED)
    assert line == (
        f"Error: not allowed: your login {STRANGER} is not linked to a person, so it may not "
        f"change anything (an admin links it: kamflow person link EMAIL {STRANGER})"
    )
    failed(stranger("person", "add", "me@example.com", "--login", STRANGER), NOT_ALLOWED)
    # An admin links it; from then on it acts as that person.
    ok(team_on_postgres[ADMIN]("person", "add", "sam@example.com", "--login", STRANGER))
    ok(stranger("account", "add", GLOBEX, "--owner", "sam@example.com"))
    ok(team_on_postgres[ADMIN]("person", "unlink", "sam@example.com"))
    failed(stranger("strategy", "set", GLOBEX, "--objective", "x"), NOT_ALLOWED)


def test_people_are_managed_by_admins_only(team_on_postgres: dict[str, Cli]) -> None:
    lead, admin = team_on_postgres[LEAD], team_on_postgres[ADMIN]
    line = failed(lead("person", "add", "new@example.com"), NOT_ALLOWED)
    assert line == (f"Error: not allowed: only an admin may add or change people; you are {LEAD}")
    failed(lead("person", "edit", LEAD, "--admin"), NOT_ALLOWED)
    ok(admin("person", "edit", LEAD, "--admin"))
    assert people(admin)[LEAD]["admin"] is True
    # kamflow lets them now; the database still wants their login in the admins' group.
    line = failed(lead("person", "add", "new@example.com"), NOT_ALLOWED)
    assert "permission denied for table person" in line
    assert f"(GRANT {ADMINS} TO {LOGINS[LEAD]})" in line
    founder = sa.create_engine(PG_URL)
    try:
        with founder.begin() as connection:
            connection.exec_driver_sql(f"GRANT {ADMINS} TO {LOGINS[LEAD]}")
        ok(lead("person", "add", "new@example.com"))
    finally:
        with founder.begin() as connection:
            connection.exec_driver_sql(f"REVOKE {ADMINS} FROM {LOGINS[LEAD]}")
        founder.dispose()
    assert "new@example.com" in people(admin)


def test_the_database_itself_refuses_history_rewrites_and_self_promotion(
    team_on_postgres: dict[str, Cli],
) -> None:
    """Below kamflow, a user's login may append to the history but never change or remove it,
    and may not make itself an admin or a leader."""
    anna = team_on_postgres[ANNA]
    ok(anna("account", "add", ACME, "--owner", ANNA))
    url = _login_url(str(team_on_postgres["url"]), LOGINS[ANNA])
    engine = sa.create_engine(url)
    try:
        for statement in (
            "UPDATE history SET note = 'nothing happened'",
            "DELETE FROM history",
            "TRUNCATE history",
            "UPDATE person SET is_admin = true",
            "UPDATE person SET is_leader = true",
            "INSERT INTO person (email, name, is_leader, active, created_at, is_admin) "
            "VALUES ('x@example.com', '', true, true, now(), true)",
            "UPDATE kamflow_setting SET value = 'someone'",
            "DELETE FROM account",
        ):
            with engine.begin() as connection, pytest.raises(sa.exc.ProgrammingError) as error:
                connection.exec_driver_sql(statement)
            assert "permission denied" in str(error.value), statement
        with engine.connect() as connection:  # reading is what every user does
            assert connection.exec_driver_sql("SELECT count(*) FROM history").scalar() == 1
    finally:
        engine.dispose()


def test_init_grants_again_and_the_grants_still_hold(team_on_postgres: dict[str, Cli]) -> None:
    assert "up to date" in ok(team_on_postgres[ADMIN]("init"))
    anna = team_on_postgres[ANNA]
    ok(anna("account", "add", ACME, "--owner", ANNA))  # a user still writes what kamflow changes
    engine = sa.create_engine(_login_url(str(team_on_postgres["url"]), LOGINS[ANNA]))
    try:
        with engine.begin() as connection, pytest.raises(sa.exc.ProgrammingError) as error:
            connection.exec_driver_sql("DELETE FROM history")
        assert "permission denied" in str(error.value)
    finally:
        engine.dispose()


def test_the_daemons_login_needs_no_person_and_the_grants_suffice(
    team_on_postgres: dict[str, Cli], clock: FixedClock, tmp_path: Path
) -> None:
    """A tick changes no account: a login of its own in kamflow's users' group, linked to
    nobody, queues and delivers with the grants `kamflow init` gave."""
    anna = team_on_postgres[ANNA]
    ok(anna("account", "add", ACME, "--owner", ANNA))
    clock.set(clock.now() + timedelta(days=30))  # far past Strategy's limit
    outbox = tmp_path / "outbox"
    env = {"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(outbox)}
    daemon = team_on_postgres["stranger"]
    done = as_json(daemon("tick", "--json", env_=env))
    kinds = [q["kind"] for q in done["queued"]]
    assert "escalation" in kinds
    assert len(list(outbox.glob("*.eml"))) == len(kinds)  # every one delivered


# --- both databases: the founder, admins, the permission table ------------------------------------


def founder_team(cli: Cli) -> None:
    """The single-user start, as in the tour: the founder's login names itself (KAMFLOW_USER)
    and adds itself first; then a leader, a colleague and someone else."""
    ok(cli("person", "add", ANNA, actor=ANNA))
    ok(cli("person", "add", LEAD, "--leader", actor=ANNA))
    ok(cli("person", "add", BEN, actor=ANNA))
    ok(cli("person", "add", "carl@example.com", actor=ANNA))


def test_the_login_that_created_the_database_becomes_the_first_admin(cli: Cli) -> None:
    founder_team(cli)
    me = people(cli)[ANNA]
    assert me["admin"] is True and me["login"]  # root on SQLite, postgres on PostgreSQL
    assert [p for p, v in people(cli).items() if v["admin"]] == [ANNA]
    ok(cli("account", "add", ACME, "--owner", ANNA, actor=ANNA))
    rows = history(cli)
    assert (rows[0]["actor"], rows[0]["acted_by"], rows[0]["login"]) == (ANNA, None, me["login"])
    # Without --as it still acts as Anna: the login is linked now.
    ok(cli("strategy", "set", ACME, "--objective", "x", actor=""))
    assert history(cli)[-1]["actor"] == ANNA


def test_the_login_that_created_the_database_is_told_to_link_itself(cli: Cli) -> None:
    ok(cli("person", "add", ANNA, actor=""))  # an admin until linked: it may add people
    ok(cli("account", "add", ACME, "--owner", ANNA, actor=""))
    line = failed(cli("strategy", "set", ACME, "--objective", "x", actor=""), NOT_ALLOWED)
    assert "linked to no person yet (kamflow person add YOUR-EMAIL --login " in line
    assert not people(cli)[ANNA]["login"]


def test_the_last_admin_who_can_sign_in_stays(cli: Cli) -> None:
    founder_team(cli)
    line = failed(cli("person", "edit", ANNA, "--no-admin", actor=ANNA))
    assert "last admin who can sign in" in line
    failed(cli("person", "deactivate", ANNA, actor=ANNA))
    failed(cli("person", "unlink", ANNA, actor=ANNA))
    ok(cli("person", "add", "it@example.com", "--admin", "--login", "it-desk", actor=ANNA))
    ok(cli("person", "edit", ANNA, "--no-admin", actor=ANNA))
    # Anna is no admin any more: she may no longer act as anyone else.
    line = failed(cli("person", "add", "z@example.com", actor=ANNA), NOT_ALLOWED)
    assert "only an admin may add or change people" in line
    line = failed(cli("account", "add", ACME, "--owner", BEN, actor=BEN), NOT_ALLOWED)
    assert "only an admin may act as someone else (--as ben@example.com)" in line


def test_a_login_is_linked_to_one_person(cli: Cli) -> None:
    founder_team(cli)
    ok(cli("person", "link", BEN, "ben-login", actor=ANNA))
    line = failed(cli("person", "link", "carl@example.com", "ben-login", actor=ANNA))
    assert line == (
        "Error: login ben-login is linked to ben@example.com already "
        "(kamflow person unlink ben@example.com first)"
    )
    failed(cli("person", "link", "carl@example.com", "bad login", actor=ANNA))
    assert people(cli)[BEN]["login"] == "ben-login"


def test_the_default_permissions(cli: Cli) -> None:
    """Plan: owner, team, leaders; scoring and promotion: owner and leaders; the cap's override
    and reinstatement: leaders; people: admins. The admin acts for each person in turn."""
    founder_team(cli)
    carl = "carl@example.com"
    ok(cli("account", "add", ACME, "--owner", BEN, actor=BEN))
    ok(cli("account", "add", "Initech", "--owner", BEN, "--candidate", actor=BEN))
    ok(cli("role", "assign", ACME, "innovator", carl, actor=BEN))
    # The team member works on the plan ...
    ok(cli("strategy", "set", ACME, "--objective", "x", actor=carl))
    ok(cli("kpi", "add", ACME, "Revenue", "--target", "10", actor=carl))
    # ... a leader too ...
    ok(cli("plan", "answer", ACME, "our-team.exec-sponsor", "The COO", actor=LEAD))
    # ... someone else does not.
    failed(cli("kpi", "add", ACME, "Margin", "--target", "10", actor=ANNA), NOT_ALLOWED)
    # Scoring: the owner and leaders, not the team.
    factors = [f"--{f}=3" for f in ("revenue", "growth", "renewal", "fit")]
    factors += [f"--{f}=3" for f in ("relationship", "win-now", "effort", "logo")]
    failed(cli("account", "score", "Initech", *factors, actor=carl), NOT_ALLOWED)
    ok(cli("account", "score", "Initech", *factors, actor=LEAD))
    # Retire: the owner; reinstate: leaders only.
    ok(cli("retire", ACME, "--reason", "lost the tender", actor=BEN))
    line = failed(cli("reinstate", ACME, "--reason", "back", actor=BEN), NOT_ALLOWED)
    assert "only a leader may reinstate Acme Corp" in line
    ok(cli("reinstate", ACME, "--reason", "back", actor=LEAD))


def test_refused_by_permission_changes_nothing(cli: Cli, engine: Engine) -> None:
    founder_team(cli)
    ok(cli("account", "add", ACME, "--owner", BEN, actor=BEN))
    before = snapshot(engine)
    for command in (
        ("strategy", "set", ACME, "--objective", "x"),
        ("advance", ACME),
        ("advance", ACME, "--dry-run"),
        ("account", "reassign", ACME, "carl@example.com"),
        ("account", "add", GLOBEX, "--owner", BEN),
    ):
        failed(cli(*command, actor="carl@example.com"), NOT_ALLOWED)
    assert snapshot(engine) == before


@pytest.fixture
def rules_folder(tmp_path: Path) -> Path:
    """A workflow folder whose kam workflow lets only the owner plan, and whose portfolio lets
    leaders manage people too."""
    shipped = Path(__file__).resolve().parent.parent / "workflows"
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "questions.yaml").write_text((shipped / "questions.yaml").read_text())
    (folder / "kam.yaml").write_text(
        (shipped / "kam.yaml").read_text() + "\npermissions:\n  plan: [owner]\n"
    )
    (folder / "portfolio.yaml").write_text(
        (shipped / "portfolio.yaml").read_text() + "\npermissions:\n  people: [admin, leader]\n"
    )
    return folder


def test_rules_are_changed_in_the_workflow_and_portfolio_files(
    cli: Cli, rules_folder: Path
) -> None:
    env = {"KAMFLOW_WORKFLOWS": str(rules_folder)}
    ok(cli("person", "add", ANNA, actor=ANNA, env=env))
    ok(cli("person", "add", LEAD, "--leader", actor=ANNA, env=env))
    ok(cli("person", "add", BEN, actor=LEAD, env=env))  # a leader manages people here
    ok(cli("account", "add", ACME, "--owner", BEN, actor=BEN, env=env))
    ok(cli("role", "assign", ACME, "innovator", ANNA, actor=BEN, env=env))
    line = failed(cli("strategy", "set", ACME, "--objective", "x", actor=LEAD, env=env), 5)
    assert line.endswith(
        f"only the owner may change the plan of Acme Corp; you are {ANNA}, acting for {LEAD}"
    )
    failed(cli("strategy", "set", ACME, "--objective", "x", actor=ANNA, env=env), NOT_ALLOWED)
    ok(cli("strategy", "set", ACME, "--objective", "x", actor=BEN, env=env))


def test_a_rule_naming_an_unknown_right_or_subject_is_a_validation_problem(
    cli: Cli, tmp_path: Path
) -> None:
    shipped = Path(__file__).resolve().parent.parent / "workflows"
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "questions.yaml").write_text((shipped / "questions.yaml").read_text())
    bad = folder / "kam.yaml"
    bad.write_text((shipped / "kam.yaml").read_text() + "\npermissions:\n  people: [owner]\n")
    result = cli("workflow", "validate", str(bad))
    assert result.exit_code == 1
    assert "unknown right 'people' here (rights: plan, advance, score, account)" in result.stderr
    bad.write_text((shipped / "kam.yaml").read_text() + "\npermissions:\n  plan: [boss]\n")
    result = cli("workflow", "validate", str(bad))
    assert "'boss' is not owner, team, leader, admin or role:ROLE" in result.stderr


# --- SQLite: a second operating-system user ------------------------------------------------------


def test_on_sqlite_the_login_is_the_operating_system_user(
    sqlite_url: str, clock: FixedClock
) -> None:
    cli = cli_on(sqlite_url, clock)
    ok(cli("person", "add", ANNA, actor=ANNA))
    assert people(cli)[ANNA]["login"] == os_login()
    # The database was made by someone else: this user's login is linked to nobody.
    engine = db.engine_for(sqlite_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE person SET login = 'someone-else'"))
        connection.execute(sa.text("UPDATE kamflow_setting SET value = 'someone-else'"))
    line = failed(cli("account", "add", ACME, "--owner", ANNA, actor=ANNA), NOT_ALLOWED)
    assert f"your login {os_login()} is not linked to a person" in line
    assert "$USER" not in line
    # The environment does not make anyone someone else.
    result = cli("account", "add", ACME, "--owner", ANNA, actor=ANNA, env={"USER": "someone-else"})
    assert result.exit_code == NOT_ALLOWED
