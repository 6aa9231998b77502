"""What `kamflow kpi record` and `kamflow kpi review` accept: a period in a documented form, and a
review only in a stage from which a move needs it. Through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from kamflow.clock import FixedClock
from tests.account_steps import ACCOUNT, KPI, OWNER, add_kpi, new_account, reach
from tests.conftest import Cli, Runner, as_json, ok, refused, snapshot

#: A period as typed, and as it is recorded.
GOOD_PERIODS = {
    "2027": "2027",
    "2027-H2": "2027-H2",
    "2027-h1": "2027-H1",
    "2027-Q4": "2027-Q4",
    " 2027-q1 ": "2027-Q1",
    "2027-05": "2027-05",
    "2027-12": "2027-12",
    "2028-02-29": "2028-02-29",
}
BAD_PERIODS = [
    "2027-Q5",
    "2027-Q0",
    "2027-13",
    "2027-00",
    "Q1 2027",
    "2027-H3",
    "2027-02-29",
    "2027-04-31",
    "27-Q1",
    "2027/05",
    "2027-Q1-extra",
    "",
]


def test_kpi_record_takes_a_period_in_a_documented_form(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    new_account(engine, clock, run)
    add_kpi(run)

    for period, recorded in GOOD_PERIODS.items():
        output = ok(cli("kpi", "record", ACCOUNT, KPI, "10", "--period", period))

        assert f"for {recorded} on {ACCOUNT}" in output
        [kpi] = as_json(cli("account", "show", ACCOUNT, "--json"))["kpis"]
        assert kpi["period"] == recorded


def test_kpi_record_refuses_any_other_period_naming_the_forms(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    new_account(engine, clock, run)
    add_kpi(run)
    before = snapshot(engine)

    for period in BAD_PERIODS:
        error = refused(cli("kpi", "record", ACCOUNT, KPI, "10", "--period", period), 1)

        assert len(error.splitlines()) == 1, error
        assert repr(period) in error
        for form in ("YYYY", "YYYY-Q1", "YYYY-MM", "YYYY-MM-DD"):
            assert form in error, error
        assert snapshot(engine) == before


@pytest.mark.parametrize("stage", ["strategy", "action_plan", "execution"])
def test_kpi_review_outside_review_is_refused_naming_where_it_counts(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli, stage: str
) -> None:
    """No move from these stages is guarded by kpis_reviewed: a review there would never count."""
    new_account(engine, clock, run)
    reach(run, clock, stage)
    before = snapshot(engine)

    error = refused(cli("kpi", "review", ACCOUNT, "--conclusion", "On track"), 1)

    assert len(error.splitlines()) == 1, error
    assert ACCOUNT in error and "Review" in error, error
    assert "adjust" in error and "replan" in error, error
    assert snapshot(engine) == before


def test_kpi_review_in_review_is_written_and_lets_the_account_adjust(
    engine: Engine, clock: FixedClock, run: Runner, cli: Cli
) -> None:
    new_account(engine, clock, run)
    reach(run, clock, "review")

    assert ok(cli("kpi", "review", ACCOUNT, "--conclusion", "On track")).strip() == (
        f"Review of {ACCOUNT} written."
    )
    assert "review -> action_plan (adjust)" in ok(cli("advance", ACCOUNT, actor=OWNER))
