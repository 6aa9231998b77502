from __future__ import annotations

from click.testing import Result

from tests.conftest import snapshot


def test_account_walks_to_research(cli, engine) -> None:  # type: ignore[no-untyped-def]
    assert cli("person", "add", "owner@example.com").exit_code == 0
    assert cli("account", "add", "Acme Corp", "--owner", "owner@example.com").exit_code == 0
    before = snapshot(engine)
    refused: Result = cli("advance", "Acme Corp")
    assert refused.exit_code == 3, refused.output
    assert "strategy lacks" in refused.stderr
    assert snapshot(engine) == before
