"""Where workflow definitions are found: the KAMFLOW_WORKFLOWS folders, then the shipped ones;
which of them some account follows."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from kamflow import defaults
from kamflow.definitions.workflow import Workflow, load_workflow
from kamflow.errors import BrokenWorkflow, InvalidWorkflow, KamflowError, NotFound
from kamflow.text import first_line, folder_list, plural

log = logging.getLogger("kamflow.workflow")


def search_path(folders: Sequence[Path] | None = None) -> list[Path]:
    """Where workflows are looked for: the KAMFLOW_WORKFLOWS folders first, then the shipped ones.

    ``folders``: the KAMFLOW_WORKFLOWS folders as the settings read them at start-up; by default
    they are read from the environment now.
    """
    if folders is None:
        folders = folder_list(os.environ.get(defaults.ENV_WORKFLOWS))
    shipped = _shipped()
    return [*folders, shipped] if shipped is not None else list(folders)


@functools.cache
def _shipped() -> Path | None:
    """The workflows shipped with kamflow (looked for once per process)."""
    here = Path(__file__).resolve().parent.parent  # the kamflow package
    # Installed wheel: the definitions ship inside the package; a checkout keeps them at the top.
    for shipped in (here / "workflows", here.parent / "workflows"):
        if shipped.is_dir():
            return shipped
    return None


_STAGES_KEY = re.compile(r"^stages\s*:", re.MULTILINE)


def is_workflow_file(path: Path) -> bool:
    """Workflow files are the YAML files with a top-level ``stages:`` (not question banks etc.)."""
    try:
        return bool(_STAGES_KEY.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return True  # let loading it report the problem


def available(folders: Sequence[Path] | None = None) -> dict[str, Path]:
    """Every workflow name found on the search path, the first folder winning."""
    folders = tuple(search_path(folders))
    return dict(_scan(folders, tuple(_mtime(folder) for folder in folders)))


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


@functools.cache
def _scan(folders: tuple[Path, ...], _mtimes: tuple[int, ...]) -> tuple[tuple[str, Path], ...]:
    """The folders' workflow files (cached until a folder changes)."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            if path.stem not in found and is_workflow_file(path):
                found[path.stem] = path
    return tuple(found.items())


def catalogue(folders: Sequence[Path] | None = None) -> list[dict[str, Any]]:
    """Every available workflow, loaded and validated, by name: its title, file and stages; one
    whose file does not load is left out with a warning."""
    rows = []
    for name, path in sorted(available(folders).items()):
        try:
            definition = load_workflow(path)
        except InvalidWorkflow as error:
            log.warning("workflow %r skipped: %s", name, why_unusable(error))
            continue
        rows.append(
            {
                "name": name,
                "title": definition.spec.title,
                "path": str(path),
                "stages": definition.stage_names,
            }
        )
    return rows


def get_workflow(name: str, folders: Sequence[Path] | None = None) -> Workflow:
    """The workflow called ``name``, validated; NotFound when there is none, BrokenWorkflow
    (one line: its file and first problem) when its file does not load."""
    try:
        return _load(name, folders)
    except InvalidWorkflow as error:
        raise BrokenWorkflow(f"workflow {name!r} cannot be used: {why_unusable(error)}") from None


def _load(name: str, folders: Sequence[Path] | None = None) -> Workflow:
    """The workflow called ``name``; NotFound, or InvalidWorkflow naming every problem."""
    paths = available(folders)
    if name not in paths:
        raise NotFound(f"no workflow {name!r} (available: {', '.join(sorted(paths)) or 'none'})")
    return load_workflow(paths[name])


def why_unusable(error: KamflowError) -> str:
    """Why a workflow does not load, in one line: its file and its first problem, and how to see
    every other one."""
    if not isinstance(error, InvalidWorkflow) or not error.problems:
        return first_line(error)
    first, *others = error.problems
    more = (
        f" (and {plural(len(others), 'more problem')}: kamflow workflow validate {error.source})"
        if others
        else ""
    )
    return f"{error.source} is not valid: {first}{more}"


def workflow_names_in_use(connection: Any) -> list[str]:
    """The names of the workflows some account follows, in order.

    Read as a walk over the account index (one probe per distinct name), not a scan of every
    account: a recursive query that asks for the next name after the last one found.
    """
    from kamflow.models import Account

    table = Account.__table__  # type: ignore[attr-defined]
    walk = sa.select(sa.func.min(table.c.workflow).label("name")).cte("walk", recursive=True)
    following = (
        sa.select(sa.func.min(table.c.workflow))
        .where(table.c.workflow > walk.c.name)
        .scalar_subquery()
    )
    walk = walk.union_all(sa.select(following).where(walk.c.name.is_not(None)))
    rows = connection.execute(sa.select(walk.c.name).where(walk.c.name.is_not(None))).all()
    return [name for (name,) in rows]


def workflows_in_use(
    connection: Session | sa.Connection, *, strict: str | None = None
) -> list[Workflow]:
    """The workflows some account follows, loaded.

    One whose file is missing or broken is left out, with a warning (on the ``kamflow.workflow``
    logger) naming the file and its first problem, so that it holds up only its own accounts:
    the daemon's steps, the listings and the reports go on with every other one. ``strict``:
    why every one of them is needed here; refuse instead, where leaving accounts out would give
    a wrong answer, such as counting them against the key-account cap.
    """
    found = []
    for name in workflow_names_in_use(connection):
        try:
            found.append(_load(name))
        except KamflowError as error:
            if strict:
                raise BrokenWorkflow(
                    f"{strict}, and workflow {name!r} cannot be used: {why_unusable(error)}"
                ) from None
            log.warning("accounts following workflow %r skipped: %s", name, why_unusable(error))
    return found
