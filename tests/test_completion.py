"""Shell completion: what a user gets on Tab, from the database they point at."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner

from kamflow.cli import app
from tests.conftest import Cli, ok


def complete(url: str, line: str) -> list[str]:
    """The completions bash would offer for ``line`` (ending where the cursor is)."""
    words = f"kamflow --db {url} {line}"
    current = len(shlex.split(words)) - (0 if line.endswith(" ") else 1)
    result = CliRunner().invoke(
        app,
        [],
        prog_name="kamflow",
        env={"_KAMFLOW_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(current)},
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return [line.split(",", 1)[1] for line in result.output.splitlines() if line]


def portfolio(cli: Cli) -> None:
    ok(cli("person", "add", "kam@example.com"))
    ok(cli("person", "add", "kim@example.com"))
    ok(cli("person", "add", "cso@example.com", "--leader"))
    kam = "kam@example.com"  # the owner adds and plans their accounts
    for name in ("Acme Corp", "acorn ltd", "Globex"):
        ok(cli("account", "add", name, "--owner", kam, actor=kam))
    ok(cli("kpi", "add", "Acme Corp", "Annual revenue", "--target", "1800000", actor=kam))
    ok(cli("kpi", "add", "Acme Corp", "Order lead time", "--target", "3", actor=kam))


def test_account_names_complete_in_any_case_from_the_database(database_url: str, cli: Cli) -> None:
    portfolio(cli)

    assert complete(database_url, "account show AC") == ["Acme Corp", "acorn ltd"]
    assert complete(database_url, "advance glo") == ["Globex"]
    assert complete(database_url, "history X") == []


def test_people_roles_kpis_and_stages_complete_from_what_the_account_has(
    database_url: str, cli: Cli
) -> None:
    portfolio(cli)

    assert complete(database_url, "role assign 'Acme Corp' relationship-lead k") == [
        "kam@example.com",
        "kim@example.com",
    ]
    assert complete(database_url, "role assign 'Acme Corp' re") == [
        "relationship-lead",
        "result-driver",
    ]
    assert complete(database_url, "kpi record 'Acme Corp' ") == [
        "Annual revenue",
        "Order lead time",
    ]
    assert complete(database_url, "kpi record Globex ") == []
    assert complete(database_url, "advance 'Acme Corp' --to re") == [
        "research",
        "review",
        "retired",
    ]
    assert "needs.top-business-needs" in complete(database_url, "plan answer 'Acme Corp' needs.")


def test_completion_on_a_missing_database_offers_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "kamflow-dmo.db"

    assert complete(f"sqlite:///{missing}", "account show A") == []
    assert not missing.exists()
