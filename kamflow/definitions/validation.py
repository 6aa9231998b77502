"""Checking a workflow beyond its fields: names, references, guards and reachability, each
problem placed so that the file's line can be named."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kamflow.definitions import specfile
from kamflow.definitions.guardspecs import SPECS
from kamflow.definitions.questions import QuestionBank, load_bank
from kamflow.definitions.spec import (
    EVERY_STAGE,
    GuardSpec,
    TransitionSpec,
    WorkflowSpec,
    subject_problem,
)
from kamflow.definitions.specfile import Problem


def check(data: Mapping[str, Any], path: Path) -> list[Problem]:
    """Every problem of a workflow file that its fields' types do not catch, each placed in the
    file: the name against the file's, places defined twice, each stage's one limit (calendar or
    business days), the initial stage, transitions that
    name unknown places, leave an exit for anything but a stage, or clash with another, unknown
    guards and bad guard parameters, who may act, the question bank (a file in the workflow's own
    folder) and the questions named, and places that no transition reaches.

    It reads the parsed file itself, not the validated model, so that it runs whatever the
    fields' own problems are (a negative limit never hides an unknown guard): a part of the wrong
    shape is left to the model's problems, and whatever can be read is checked. Names are
    checked against the places only when the places can be read, and reachability only when
    every move names places the file defines.
    """
    problems: list[Problem] = []
    name = data.get("name")
    if isinstance(name, str) and name != path.stem:
        problems.append((("name",), f"must match the file name {path.stem!r}"))
    groups = {group: _place_names(data, group) for group in ("intake", "stages", "exits")}
    intake, stages, exits = ([n for n in names or [] if n] for names in groups.values())
    # The places can be judged only when every group of them reads as a list, with a stage.
    places_read = all(names is not None for names in groups.values()) and bool(groups["stages"])
    active = intake + stages
    known_places = active + exits
    seen: set[str] = set()
    for group, names in groups.items():
        for index, place in enumerate(names or []):
            if place is None:
                continue
            if place in seen:
                problems.append(((group, index, "name"), f"{place!r} is defined twice"))
            seen.add(place)
    problems += _limits(data.get("stages"))
    first_stage = (groups["stages"] or [None])[0]
    initial = data.get("initial") if data.get("initial") is not None else first_stage
    moves_read = places_read and isinstance(initial, str) and initial in stages
    if places_read and isinstance(initial, str) and initial not in stages:
        problems.append((("initial",), f"unknown stage {initial!r} ({_known(stages)})"))

    moves: list[tuple[str, list[str], str]] = []
    pairs: dict[tuple[str, str], int] = {}
    transitions = data.get("transitions")
    for index, transition in enumerate(transitions if isinstance(transitions, list) else []):
        if not isinstance(transition, Mapping):
            moves_read = False
            continue
        at: tuple[str | int, ...] = ("transitions", index)
        sources = _strings(TransitionSpec.one_or_many(transition.get("from")))
        dest = transition.get("to")
        if sources is None or not isinstance(dest, str):
            moves_read = False
        if places_read:
            for position, source in enumerate(sources or []):
                if source != EVERY_STAGE and source not in known_places:
                    moves_read = False
                    problems.append(
                        (
                            (*at, "from", position),
                            f"unknown stage {source!r} ({_known(known_places)})",
                        )
                    )
                elif source in exits and dest not in stages:
                    # The one way out of an exit is back into the cycle (reinstate, say).
                    problems.append(
                        (
                            (*at, "from", position),
                            f"{source!r} is an exit: a move out of it must lead back to a stage",
                        )
                    )
            if isinstance(dest, str) and dest not in known_places:
                moves_read = False
                problems.append(((*at, "to"), f"unknown stage {dest!r} ({_known(known_places)})"))
        move = transition.get("name")
        if places_read and isinstance(move, str) and sources is not None and isinstance(dest, str):
            leaving = active if EVERY_STAGE in sources else sources
            moves.append((move, leaving, dest))
            problems += _clashes(at, index, move, leaving, dest, exits, pairs)
        for position, guard_spec in _guards(transition):
            problems += _check_guard(
                guard_spec, (*at, "guards", position), known_places if places_read else None
            )
        allowed = transition.get("allowed")
        for position, who in enumerate(allowed if isinstance(allowed, list) else []):
            problem = subject_problem(who)
            if problem:
                problems.append(((*at, "allowed", position), problem))
    questions = data.get("questions", WorkflowSpec.model_fields["questions"].default)
    if isinstance(questions, str):
        bank_path = path.parent / questions
        outside = specfile.outside_folder(path.parent, questions)
        if outside is not None:  # never opened: a definition reads only its own folder
            problems.append((("questions",), outside))
        elif not bank_path.is_file():
            problems.append((("questions",), f"no question bank at {specfile.describe(bank_path)}"))
        else:
            problems += _check_question_refs(data, questions, load_bank(bank_path))
    if moves_read and isinstance(transitions, list) and isinstance(initial, str):
        starts = [initial, *(place for place in intake if place)]
        problems += _unreachable(groups, moves, starts)
    return problems


def _limits(stages: Any) -> list[Problem]:
    """Each stage gives exactly one limit: ``limit_days`` or ``limit_business_days``."""
    problems: list[Problem] = []
    for index, stage in enumerate(stages if isinstance(stages, list) else []):
        if not isinstance(stage, Mapping):
            continue  # the model names a stage of the wrong shape
        given = [key for key in ("limit_days", "limit_business_days") if key in stage]
        if not given:
            problems.append(
                (("stages", index), "needs limit_days (calendar days) or limit_business_days")
            )
        elif len(given) == 2:
            problems.append(
                (("stages", index), "gives both limit_days and limit_business_days: keep one")
            )
    return problems


def _place_names(data: Mapping[str, Any], group: str) -> list[str | None] | None:
    """The names of a group of places by position (None where an item has no name to read);
    None when the group is there but is not a list."""
    items = data.get(group, [])
    if not isinstance(items, list):
        return None
    return [
        item["name"] if isinstance(item, Mapping) and isinstance(item.get("name"), str) else None
        for item in items
    ]


def _strings(value: Any) -> list[str] | None:
    """A list of texts as it is, or None when the value is not one."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _clashes(
    at: tuple[str | int, ...],
    index: int,
    name: str,
    sources: list[str],
    dest: str,
    exits: list[str],
    pairs: dict[tuple[str, str], int],
) -> list[Problem]:
    """A move that leaves a place by the same name or to the same target as an earlier one (a
    move to an exit, such as retire from "*", may share its target); ``pairs`` records where
    each name and target leaves from, for the moves after this one."""
    problems: list[Problem] = []
    for source in sources:
        clash: tuple[int, str] | None = None
        for key, what in (((name, source), "name"), ((f"->{dest}", source), "target")):
            if clash is None and key in pairs and dest not in exits:
                clash = (pairs[key], what)
            pairs.setdefault(key, index)
        if clash is not None:
            problems.append(
                (
                    (*at, "name"),
                    f"transitions[{clash[0]}] already leaves {source!r} with the same "
                    f"{clash[1]}: a move must be unambiguous",
                )
            )
    return problems


def _guards(transition: Mapping[str, Any]) -> list[tuple[int, GuardSpec]]:
    """The guards of a transition that read as guards, with their positions (the others are the
    model's problems)."""
    written = transition.get("guards")
    if not isinstance(written, list):
        return []
    found = []
    for position, item in enumerate(TransitionSpec.guard_shorthand(written)):
        try:
            found.append((position, GuardSpec.model_validate(item)))
        except ValidationError:
            continue
    return found


def _check_question_refs(
    data: Mapping[str, Any], bank_name: str, bank: QuestionBank
) -> list[Problem]:
    """Guard parameters that name questions must name questions of the bank."""
    known = {question.id for question in bank.questions}
    problems: list[Problem] = []
    transitions = data.get("transitions")
    for index, transition in enumerate(transitions if isinstance(transitions, list) else []):
        if not isinstance(transition, Mapping):
            continue
        for position, guard_spec in _guards(transition):
            found = SPECS.get(guard_spec.name)
            if found is None:
                continue
            try:
                params = found.params.model_validate(guard_spec.params)
            except ValidationError:
                continue
            for name, question in params.question_refs():
                if question not in known:
                    at = ("transitions", index, "guards", position, guard_spec.name, name)
                    problems.append((at, f"no question {question!r} in {bank_name}"))
    return problems


def _known(names: Iterable[str]) -> str:
    return "known: " + ", ".join(names)


def _check_guard(
    guard_spec: GuardSpec, at: tuple[str | int, ...], known: list[str] | None
) -> list[Problem]:
    """An unknown guard, bad parameters, or (when ``known`` places can be read) a parameter
    naming a place the workflow lacks."""
    found = SPECS.get(guard_spec.name)
    if found is None:
        return [((*at,), f"unknown guard {guard_spec.name!r} ({_known(sorted(SPECS))})")]
    try:
        params = found.params.model_validate(guard_spec.params)
    except ValidationError as error:
        return specfile.validation_problems(error, (*at, guard_spec.name))
    return [
        ((*at, guard_spec.name, name), f"unknown stage {stage!r} ({_known(known)})")
        for name, stage in params.stage_refs()
        if known is not None and stage not in known
    ]


def _unreachable(
    groups: Mapping[str, list[str | None] | None],
    moves: list[tuple[str, list[str], str]],
    starts: list[str],
) -> list[Problem]:
    """The stages and exits that no chain of moves reaches from the starting places."""
    edges: dict[str, set[str]] = {}
    for _, sources, dest in moves:
        for source in sources:
            edges.setdefault(source, set()).add(dest)
    reached, queue = set(starts), deque(starts)
    while queue:
        for target in edges.get(queue.popleft(), ()):
            if target not in reached:
                reached.add(target)
                queue.append(target)
    problems: list[Problem] = []
    for group in ("stages", "exits"):
        for index, place in enumerate(groups[group] or []):
            if place is not None and place not in reached:
                problems.append(((group, index, "name"), f"no transition reaches {place!r}"))
    return problems
