"""Loading YAML definitions whole or not at all; problems name the file, the line and the field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kamflow.errors import InvalidWorkflow

#: libyaml's parser when PyYAML was built with it (about ten times faster), else the pure one.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
SpecT = TypeVar("SpecT", bound=BaseModel)


class Spec(BaseModel):
    """A part of a definition file: unknown fields are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def stamp(*paths: Path) -> tuple[tuple[str, int], ...]:
    """When each file last changed: part of a cache key, so an edited definition is re-read."""
    found = []
    for path in paths:
        try:
            found.append((str(path), path.stat().st_mtime_ns))
        except OSError:
            found.append((str(path), 0))
    return tuple(found)


def outside_folder(folder: Path, reference: str) -> str | None:
    """Why the file a definition names as ``reference`` is not one of ``folder``'s, or None
    when it is: an absolute path, or one that leads out of the folder by ``..`` or a symbolic
    link, is refused (a definition reads only its own folder, and nothing outside is opened)."""
    if Path(reference).is_absolute():
        return f"{reference!r} is an absolute path: name a file in the workflow's own folder"
    try:
        home = folder.resolve()
        target = (folder / reference).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte: not a file at all
        return None  # left to the check that the file is there, which names it
    if not target.is_relative_to(home):
        return (
            f"{reference!r} leads outside the workflow's folder {describe(folder)}: "
            "name a file in that folder"
        )
    return None


def describe(path: Path) -> str:
    """The file's path as a user would recognise it (relative to the current folder if inside)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def place(loc: Loc) -> str:
    """``('transitions', 3, 'to')`` -> ``transitions[3].to``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the file"


def line_of(node: yaml.Node | None, loc: Loc) -> int:
    """The line (1-based) of the deepest part of ``loc`` that exists in the YAML node tree."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "missing field"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])[:1].lower() + str(error["msg"])[1:]


def validation_problems(error: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """Pydantic's errors as (place, message) pairs."""
    return [((*prefix, *err["loc"]), _message(err)) for err in error.errors()]


def load(
    path: Path,
    model: type[SpecT],
    check: Callable[[SpecT], Sequence[Problem]] | None = None,
    *,
    check_data: Callable[[dict[str, Any]], Sequence[Problem]] | None = None,
) -> SpecT:
    """Parse and validate ``path`` as ``model``, then ``check`` it; raise naming every problem,
    in the order of their lines.

    ``check`` judges a valid model only; ``check_data`` judges the parsed file whatever the
    model's problems, so that those and its own are reported together, in one pass.
    """
    source = describe(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise InvalidWorkflow(source, [f"cannot read the file: {reason}"]) from None
    data = _parse(text, source)
    if not isinstance(data, dict):
        raise InvalidWorkflow(source, ["line 1: expected a mapping of fields at the top"])
    try:
        spec = model.model_validate(data)
    except ValidationError as error:
        problems = validation_problems(error)
    else:
        problems = list(check(spec)) if check else []
    if check_data is not None:
        problems += check_data(data)
    if problems:
        # Only a file with problems is read a second time, for the line of each problem.
        try:
            node = yaml.compose(text, Loader=LOADER)
        except RecursionError:  # the pure parser, on a file nested very deep
            node = None
        lines = [line_of(node, loc) for loc, _ in problems]
        order = sorted(range(len(problems)), key=lines.__getitem__)
        raise InvalidWorkflow(
            source,
            [f"line {lines[i]}, {place(problems[i][0])}: {problems[i][1]}" for i in order],
        )
    return spec


def _parse(text: str, source: str) -> Any:
    """The YAML of a definition file; InvalidWorkflow naming the line of bad YAML."""
    try:
        try:
            return yaml.load(text, Loader=LOADER)
        except yaml.YAMLError as error:
            # The pure parser words its errors best: let it say what is wrong. It recurses
            # once per level of nesting, though: past Python's limit, libyaml's words do.
            try:
                return yaml.load(text, Loader=yaml.SafeLoader)
            except RecursionError:
                raise error from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise InvalidWorkflow(source, [f"line {line}: bad YAML: {error.problem}"]) from None
    except yaml.YAMLError as error:
        raise InvalidWorkflow(source, [f"bad YAML: {error}"]) from None
    except RecursionError:  # without libyaml, the pure parser is the only one
        raise InvalidWorkflow(
            source, ["bad YAML: nested too deeply to read (lists or mappings inside each other)"]
        ) from None
