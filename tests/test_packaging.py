"""The built wheel, installed outside the checkout, finds its workflows, questions, migrations."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import kamflow

ROOT = Path(__file__).resolve().parents[1]
NOW = "2027-01-04T09:00:00+00:00"
OWNER = "owner@example.com"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kamflow wheel, built once per session from the checkout (hatchling backend)."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("kamflow-*.whl")
    return found


@pytest.fixture(scope="session")
def target(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a folder of its own (dependencies come from the test venv)."""
    folder = tmp_path_factory.mktemp("installed")
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(folder),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder outside the repository, so nothing is found through the checkout."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    return tmp_path


def python(
    code_or_args: list[str], *, target: Path | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``code_or_args``; with ``target``, importing kamflow from there."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KAMFLOW_")}
    env.pop("PYTHONPATH", None)
    if target is not None:
        env["PYTHONPATH"] = str(target)
    env.update({"KAMFLOW_NOW": NOW, "KAMFLOW_USER": OWNER})
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def kamflow_cli(*args: str, target: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m kamflow ARGS` with the installed wheel."""
    result = python(["-m", "kamflow", *args], target=target, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def head_revision(migrations: Path) -> str:
    """The newest revision among the migration scripts in ``migrations/versions``."""
    revisions, parents = set(), set()
    for script in (migrations / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        found = re.search(r'^revision(?:: str)? = "([^"]+)"', text, re.MULTILINE)
        assert found, script
        revisions.add(found.group(1))
        parents.update(re.findall(r'^down_revision[^=]*= "([^"]+)"', text, re.MULTILINE))
    (head,) = revisions - parents
    return head


# --- the installed wheel -------------------------------------------------------------------------


def test_the_installed_package_is_the_one_imported(target: Path, outside: Path) -> None:
    shown = ok(
        python(
            [
                "-c",
                "import json, kamflow, kamflow.db, kamflow.definitions.discovery; "
                "print(json.dumps({"
                "'file': kamflow.__file__, 'migrations': str(kamflow.db.MIGRATIONS), "
                "'search': [str(p) for p in kamflow.definitions.discovery.search_path()]}))",
            ],
            target=target,
            cwd=outside,
        )
    )
    where = json.loads(shown)
    package = target / "kamflow"
    assert Path(where["file"]) == package / "__init__.py"
    assert Path(where["migrations"]) == package / "migrations"
    assert [Path(p) for p in where["search"]] == [package / "workflows"]
    assert (package / "workflows" / "kam.yaml").is_file()
    assert (package / "workflows" / "questions.yaml").is_file()
    assert list((package / "migrations" / "versions").glob("*.py"))


def test_installed_workflow_list_and_show(target: Path, outside: Path) -> None:
    shipped = target / "kamflow" / "workflows" / "kam.yaml"
    listed = ok(kamflow_cli("workflow", "list", "--json", target=target, cwd=outside))
    workflows = {item["name"]: item for item in json.loads(listed)}
    assert sorted(workflows) == ["kam", "kam-lite"]
    kam = workflows["kam"]
    assert Path(kam["path"]) == shipped
    assert kam["stages"] == ["strategy", "research", "action_plan", "execution", "review"]

    shown = ok(kamflow_cli("workflow", "show", "kam", target=target, cwd=outside))
    assert f"file: {shipped}" in shown
    assert "roles_covered" in shown
    assert "Questions: 57 in 8 categories" in shown

    valid = ok(kamflow_cli("workflow", "validate", str(shipped), target=target, cwd=outside))
    assert "is valid: workflow kam, 5 stages" in valid


def test_installed_kamflow_runs_an_account_on_sqlite(target: Path, outside: Path) -> None:
    database = outside / "kamflow.db"
    created = ok(kamflow_cli("init", target=target, cwd=outside))
    head = head_revision(target / "kamflow" / "migrations")
    assert created.strip().endswith(f"(schema {head}).")
    assert database.is_file(), "the default database is ./kamflow.db"
    with sqlite3.connect(database) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == head
    again = ok(kamflow_cli("init", target=target, cwd=outside))
    assert "up to date" in again

    ok(kamflow_cli("person", "add", OWNER, "--name", "Olga Owner", target=target, cwd=outside))
    added = ok(
        kamflow_cli("account", "add", "Acme Corp", "--owner", OWNER, target=target, cwd=outside)
    )
    assert "at strategy" in added

    why = kamflow_cli("why", "Acme Corp", "--json", target=target, cwd=outside)
    report = json.loads(ok(why))
    assert (report["stage"], report["limit_days"]) == ("strategy", 14)
    (move,) = report["moves"]
    assert move["to"] == "research"
    assert [(v["guard"], v["ok"]) for v in move["verdicts"]] == [("strategy_defined", False)]

    text = ok(kamflow_cli("why", "Acme Corp", target=target, cwd=outside))
    assert "the strategy lacks" in text

    questions = ok(
        kamflow_cli("plan", "questions", "Acme Corp", "--json", target=target, cwd=outside)
    )
    assert len(json.loads(questions)) == 57

    refused = kamflow_cli("advance", "Acme Corp", target=target, cwd=outside)
    assert refused.returncode == 3
    assert refused.stderr.startswith("Error: ")
    assert "  - the strategy lacks" in refused.stderr


# --- the command line's start-up -----------------------------------------------------------------

HELP_PROBE = """
import json, sys
from kamflow.cli import app
try:
    app(sys.argv[1:], prog_name="kamflow")
except SystemExit as exit:
    code = exit.code
heavy = ["sqlmodel", "sqlalchemy", "alembic", "transitions"]
print(json.dumps({"code": code, "loaded": [name for name in heavy if name in sys.modules]}))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["workflow", "--help"], ["account", "add", "--help"]],
    ids=" ".join,
)
def test_help_does_not_import_the_database_stack(args: list[str], outside: Path) -> None:
    result = python(["-c", HELP_PROBE, *args], target=None, cwd=outside)
    assert result.returncode == 0, result.stderr
    *shown, last = result.stdout.splitlines()
    assert "Usage: kamflow" in "\n".join(shown)
    assert json.loads(last) == {"code": 0, "loaded": []}


def test_version_prints_the_version(outside: Path) -> None:
    result = python(["-m", "kamflow", "--version"], target=None, cwd=outside)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kamflow, version {kamflow.__version__}"


def test_installed_version_matches_the_project(target: Path, outside: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared
    shown = ok(kamflow_cli("--version", target=target, cwd=outside))
    assert shown.strip() == f"kamflow, version {declared.group(1)}"
