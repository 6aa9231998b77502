"""Text tables as a terminal shows them: East Asian names line up, long texts are cut.

Every table is read through the CLI on SQLite and on PostgreSQL, by display column (a wide
character such as 株 takes two); --json and the CSV export keep every text whole.
"""

from __future__ import annotations

import csv
import io

import pytest

from kamflow import defaults
from kamflow.clock import FixedClock
from tests.conftest import Cli, as_json, ok
from tests.tables import cells, misaligned

OWNER = "owner@example.com"
ENGINEER = "engineer@example.com"
WIDE = "株式会社サンプル"
WIDE_PERSON = "山田太郎"
WIDE_KPI = "売上高"
WIDE_ACTION = "見積もりを送る"
#: Every table command, with what it must show whole.
TABLES = {
    "account list": (["account", "list"], [WIDE, "Ünïcode GmbH"]),
    "portfolio": (["portfolio"], [WIDE, "Ünïcode GmbH"]),
    "account rank": (["account", "rank"], [WIDE]),
    "coverage": (["coverage"], [WIDE]),
    "kpis": (["kpis"], [WIDE, WIDE_KPI]),
    "forecast": (["forecast", "--days", "30"], [WIDE, WIDE_ACTION]),
    "person list": (["person", "list"], [WIDE_PERSON]),
    "action list": (["action", "list", WIDE], [WIDE_ACTION]),
    "history": (["history", WIDE], []),
}


def build(cli: Cli) -> None:
    """Accounts with plain, accented and East Asian names, a team, a KPI and an action."""
    ok(cli("person", "add", OWNER, "--name", WIDE_PERSON))
    ok(cli("person", "add", ENGINEER, "--name", "Zoë Engineer"))
    for name in ("Acme Corp", "Blue Harbor", WIDE, "Ünïcode GmbH"):
        ok(cli("account", "add", name, "--owner", OWNER))
    ok(cli("role", "assign", WIDE, "innovator", ENGINEER))
    ok(cli("role", "assign", "Acme Corp", "innovator", OWNER))
    ok(cli("kpi", "add", WIDE, WIDE_KPI, "--target", "1000000", "--unit", "円"))
    ok(cli("kpi", "record", WIDE, WIDE_KPI, "750000"))
    ok(cli("kpi", "add", "Acme Corp", "Revenue", "--target", "100", "--unit", "EUR"))
    ok(cli("action", "add", WIDE, WIDE_ACTION, "--owner", ENGINEER, "--due", "2027-01-20"))


@pytest.mark.parametrize("batch", [defaults.LISTING_BATCH, 1], ids=["one-batch", "batches-of-one"])
def test_every_table_with_east_asian_names_lines_up(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Every row's columns start at the same display column, whether the widths come from the
    rows themselves or (past the first batch) from the database; no name is cut."""
    build(cli)
    monkeypatch.setattr(defaults, "LISTING_BATCH", batch)

    for command, (args, whole) in TABLES.items():
        text = ok(cli(*args))

        assert misaligned(text) == [], f"{command}:\n{text}"
        shown = {cell for row in cells(text) for cell in row}
        for name in whole:
            assert name in shown, f"{command}:\n{text}"


def test_a_long_name_is_cut_with_an_ellipsis_in_tables_and_whole_in_json_and_csv(
    cli: Cli, clock: FixedClock
) -> None:
    long_name = ("Internationale Handelsgesellschaft für Maschinenbau und Anlagentechnik " * 3)[
        :199
    ].strip()
    long_person = "Maximiliane " * 12
    ok(cli("person", "add", OWNER, "--name", long_person))
    ok(cli("account", "add", long_name, "--owner", OWNER))
    ok(cli("account", "add", "Acme Corp", "--owner", OWNER))
    limit = defaults.TABLE_CELL_WIDTH

    for args in (["account", "list"], ["portfolio"], ["account", "rank"], ["person", "list"]):
        text = ok(cli(*args))
        assert misaligned(text) == [], text
        found = [cell for row in cells(text) for cell in row if cell.endswith("\u2026")]
        assert len(found) == 1, text
        [cut] = found
        assert limit - 2 <= len(cut) <= limit, cut
        assert long_name.startswith(cut[:-1]) or long_person.startswith(cut[:-1]), cut
        assert max(len(line) for line in text.splitlines()) < 2 * limit + 60, text

    assert {row["name"] for row in as_json(cli("account", "list", "--json"))} == {
        long_name,
        "Acme Corp",
    }
    assert {row["name"] for row in as_json(cli("portfolio", "--json"))} >= {long_name}
    assert [person["name"] for person in as_json(cli("person", "list", "--json"))] == [
        long_person.strip()
    ]
    exported = list(csv.DictReader(io.StringIO(ok(cli("account", "export")))))
    assert {row["name"] for row in exported} == {long_name, "Acme Corp"}
