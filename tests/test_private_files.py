"""Files that hold names and email addresses are private, and a workflow reads only its own
folder.

Each test sets a permissive umask (0o022, under which new files come out 0644) to prove that the
modes come from kamflow, not from the umask.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from kamflow.clock import FixedClock
from tests.conftest import START, Cli, cli_on, ok
from tests.test_cli import ACME, setup_people
from tests.test_workflow import BANK, SMALL, edit, invoke, write


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """A umask that lets everyone read new files, as many systems have."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_sqlite_database_and_its_wal_and_shm_files_private(
    sqlite_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    database = tmp_path / "kamflow.db"
    cli = cli_on(sqlite_url, clock, init=False)
    ok(cli("init"))
    setup_people(cli)
    ok(cli("account", "add", ACME, "--owner", "owner@example.com"))
    # The engine keeps its connections open, so the write-ahead log and shared memory are there.
    for name in ("kamflow.db", "kamflow.db-wal", "kamflow.db-shm"):
        assert mode(tmp_path / name) == 0o600, name
    assert database.stat().st_size > 0


def test_init_leaves_the_mode_of_an_existing_database_file_alone(
    sqlite_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    database = tmp_path / "kamflow.db"
    database.touch(mode=0o640)  # made by its owner, say for a group that backs it up
    os.chmod(database, 0o640)
    ok(cli_on(sqlite_url, clock, init=False)("init"))
    assert mode(database) == 0o640


def test_reports_exports_and_outbox_messages_are_private_even_when_written_again(
    cli: Cli, clock: FixedClock, tmp_path: Path
) -> None:
    setup_people(cli)
    ok(cli("account", "add", ACME, "--owner", "owner@example.com"))
    report = tmp_path / "report.html"
    export = tmp_path / "accounts.csv"
    for kept in (report, export):  # files of an earlier run, made under the umask
        kept.write_text("old", encoding="utf-8")
        assert mode(kept) == 0o644
    ok(cli("report", "--html", str(report)))
    ok(cli("account", "export", str(export)))
    assert "owner@example.com" in export.read_text(encoding="utf-8-sig")
    for written in (report, export):
        assert mode(written) == 0o600, written
    # A new file is private too.
    ok(cli("report", "--html", str(tmp_path / "new.html")))
    ok(cli("account", "export", str(tmp_path / "new.csv")))
    assert mode(tmp_path / "new.html") == mode(tmp_path / "new.csv") == 0o600

    outbox = tmp_path / "mail" / "outbox"
    mail = {"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(outbox)}
    clock.set(START + timedelta(days=21))  # past the Strategy stage's limit: mail goes out
    ok(cli("tick", env=mail))
    messages = list(outbox.glob("*.eml"))
    assert messages
    assert mode(outbox) == 0o700
    assert all(mode(message) == 0o600 for message in messages), messages
    assert not [p for p in outbox.iterdir() if p.suffix != ".eml"]  # no half-written file left


def test_an_outbox_folder_that_is_there_already_keeps_its_mode(
    cli: Cli, clock: FixedClock, tmp_path: Path
) -> None:
    setup_people(cli)
    ok(cli("account", "add", ACME, "--owner", "owner@example.com"))
    outbox = tmp_path / "shared-outbox"
    outbox.mkdir(mode=0o750)
    os.chmod(outbox, 0o750)
    clock.set(START + timedelta(days=21))
    ok(cli("tick", env={"KAMFLOW_MAIL_TRANSPORT": "file", "KAMFLOW_OUTBOX_DIR": str(outbox)}))
    assert mode(outbox) == 0o750
    messages = list(outbox.glob("*.eml"))
    assert messages and all(mode(message) == 0o600 for message in messages)


# --- a workflow reads only its own folder ---------------------------------------------------------


def test_validate_refuses_a_question_bank_outside_the_workflow_folder_without_reading_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "flows"
    # Outside the folder: a file that fails loudly (bad YAML) if anything ever parses it.
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: Olga Owner\nemail: [unclosed\n", encoding="utf-8")
    write(folder, SMALL)  # the workflow, with a good bank of its own beside it
    (folder / "escape.yaml").symlink_to(secret)
    (folder / "up").symlink_to(tmp_path, target_is_directory=True)
    escaping = {
        "../secret.yaml": "leads outside",
        "../../../../../../../../etc/passwd": "leads outside",
        "sub/../../secret.yaml": "leads outside",
        "escape.yaml": "leads outside",  # a symbolic link to the file outside
        "up/secret.yaml": "leads outside",  # through a linked folder
        str(secret): "is an absolute path",
        "/etc/passwd": "is an absolute path",
    }
    for reference, reason in escaping.items():
        path = write(
            folder, edit(SMALL, 'title: "Small"\n', f'title: "Small"\nquestions: "{reference}"\n')
        )
        result = invoke("workflow", "validate", str(path))
        assert result.exit_code == 1, reference
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"Error: {path} is not valid (1 problem):",
            f"  line 3, questions: {reference!r} {reason}"
            + (
                f" the workflow's folder {folder}: name a file in that folder"
                if reason == "leads outside"
                else ": name a file in the workflow's own folder"
            ),
        ], reference
        assert "YAML" not in result.stderr and "secret" not in result.stderr.replace(reference, "")


def test_a_question_bank_inside_the_folder_is_accepted_through_a_subfolder_or_a_link(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "flows"
    write(folder, SMALL)
    (folder / "banks").mkdir()
    shutil.copy(BANK, folder / "banks" / "questions.yaml")
    (folder / "linked.yaml").symlink_to(folder / "banks" / "questions.yaml")
    for reference in ("banks/questions.yaml", "linked.yaml", "banks/../questions.yaml"):
        path = write(
            folder, edit(SMALL, 'title: "Small"\n', f'title: "Small"\nquestions: "{reference}"\n')
        )
        result = invoke("workflow", "validate", str(path))
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(f"{path} is valid: workflow small, "), reference
