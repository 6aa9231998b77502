"""The README's tour runs as written: every command line of its shell blocks, in order, in an
empty folder, with the exit code its comment announces (0 when it announces none)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
#: A line's comment that announces a refusal: "# refused (exit 3): ...".
EXPECTED = re.compile(r"#.*\(exit (\d+)\)")


def tour_lines() -> list[tuple[str, int]]:
    """The tour's command lines (continuations joined) with the exit code each should give."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## A tour of the CLI\n", 1)[1].split("\n## ", 1)[0]
    lines: list[tuple[str, int]] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        logical = ""
        for raw in block.splitlines():
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            logical += raw
            if logical.strip():
                found = EXPECTED.search(logical)
                lines.append((logical, int(found.group(1)) if found else 0))
            logical = ""
    return lines


def script(lines: list[tuple[str, int]]) -> str:
    """One bash script that runs every line in the same shell (so `export` carries on) and stops
    at the first line whose exit code is not the announced one."""
    out = []
    for number, (line, expected) in enumerate(lines, 1):
        out.append(f"{{ {line}\n}}; code=$?")
        out.append(
            f'[ "$code" -eq {expected} ] || {{ echo "tour line {number} exited $code, not '
            f'{expected}: "{shlex.quote(line)} >&2; exit 99; }}'
        )
    return "\n".join(out) + "\n"


def test_the_readme_tour_runs_as_written_in_an_empty_folder(tmp_path: Path) -> None:
    lines = tour_lines()
    assert len(lines) > 30 and any(code == 3 for _, code in lines)
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAMFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    run = subprocess.run(
        ["bash", "-c", script(lines)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    shown = subprocess.run(
        ["kamflow", "--db", "sqlite:///tour.db", "account", "show", "Acme Corp", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    account = json.loads(shown.stdout)
    assert account["stage"] == "action_plan"  # once round: adjusted back to the action plan
    assert not (tmp_path / "kamflow.db").exists()  # everything went to the tour's database
