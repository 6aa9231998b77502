"""Checking a workflow beyond its fields: names, references, guards and reachability, each
problem placed so that the file's line can be named."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from kamflow import defaults
from kamflow.definitions import specfile
from kamflow.definitions.guardspecs import SPECS
from kamflow.definitions.questions import QuestionBank, load_bank
from kamflow.definitions.spec import (
    EVERY_STAGE,
    LEADER,
    OWNER,
    ROLE_PREFIX,
    GuardSpec,
    PlaceSpec,
    WorkflowSpec,
    sources_of,
)
from kamflow.definitions.specfile import Problem


def check(spec: WorkflowSpec, path: Path) -> list[Problem]:
    """Every problem of a workflow file that its fields' types do not catch, each placed in the
    file: the name against the file's, places defined twice, the initial stage, transitions that
    name unknown places, leave an exit for anything but a stage, or clash with another, unknown
    guards and bad guard parameters, who may act, the question bank and the questions named, and
    (when there is no other problem) places that no transition reaches."""
    problems: list[Problem] = []
    if spec.name != path.stem:
        problems.append((("name",), f"must match the file name {path.stem!r}"))
    stages = [stage.name for stage in spec.stages]
    intake = [place.name for place in spec.intake]
    exits = [exit_.name for exit_ in spec.exits]
    active = spec.active
    known = active + exits
    seen: set[str] = set()
    for group, names in (("intake", intake), ("stages", stages), ("exits", exits)):
        for index, name in enumerate(names):
            if name in seen:
                problems.append(((group, index, "name"), f"{name!r} is defined twice"))
            seen.add(name)
    initial = spec.initial or stages[0]
    if initial not in stages:
        problems.append((("initial",), f"unknown stage {initial!r} ({_known(stages)})"))

    pairs: dict[tuple[str, str], int] = {}
    for index, transition in enumerate(spec.transitions):
        at: tuple[str | int, ...] = ("transitions", index)
        for position, source in enumerate(transition.source):
            if source != EVERY_STAGE and source not in known:
                problems.append(
                    ((*at, "from", position), f"unknown stage {source!r} ({_known(known)})")
                )
            elif source in exits and transition.dest not in stages:
                # The one way out of an exit is back into the cycle (reinstate, say).
                problems.append(
                    (
                        (*at, "from", position),
                        f"{source!r} is an exit: a move out of it must lead back to a stage",
                    )
                )
        if transition.dest not in known:
            problems.append(((*at, "to"), f"unknown stage {transition.dest!r} ({_known(known)})"))
        for source in sources_of(transition, active):
            clash: tuple[int, str] | None = None
            for key, what in (
                ((transition.name, source), "name"),
                ((f"->{transition.dest}", source), "target"),
            ):
                if clash is None and key in pairs and transition.dest not in exits:
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
        for position, guard_spec in enumerate(transition.guards):
            problems += _check_guard(guard_spec, (*at, "guards", position), known)
        for position, who in enumerate(transition.allowed):
            role = who.removeprefix(ROLE_PREFIX)
            if who not in (OWNER, LEADER) and not (
                who.startswith(ROLE_PREFIX) and role in defaults.ROLES
            ):
                problems.append(
                    (
                        (*at, "allowed", position),
                        f"{who!r} is not owner, leader or role:ROLE "
                        f"(roles: {', '.join(defaults.ROLES)})",
                    )
                )
    bank_path = path.parent / spec.questions
    if not bank_path.is_file():
        problems.append((("questions",), f"no question bank at {specfile.describe(bank_path)}"))
    else:
        problems += _check_question_refs(spec, load_bank(bank_path))
    if not problems:
        problems += _unreachable(spec, [initial, *intake], active)
    return problems


def _check_question_refs(spec: WorkflowSpec, bank: QuestionBank) -> list[Problem]:
    """Guard parameters that name questions must name questions of the bank."""
    known = {question.id for question in bank.questions}
    problems: list[Problem] = []
    for index, transition in enumerate(spec.transitions):
        for position, guard_spec in enumerate(transition.guards):
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
                    problems.append((at, f"no question {question!r} in {spec.questions}"))
    return problems


def _known(names: Iterable[str]) -> str:
    return "known: " + ", ".join(names)


def _check_guard(
    guard_spec: GuardSpec, at: tuple[str | int, ...], known: list[str]
) -> list[Problem]:
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
        if stage not in known
    ]


def _unreachable(spec: WorkflowSpec, starts: list[str], active: list[str]) -> list[Problem]:
    edges: dict[str, set[str]] = {}
    for transition in spec.transitions:
        for source in sources_of(transition, active):
            edges.setdefault(source, set()).add(transition.dest)
    reached, queue = set(starts), deque(starts)
    while queue:
        for target in edges.get(queue.popleft(), ()):
            if target not in reached:
                reached.add(target)
                queue.append(target)
    problems: list[Problem] = []
    groups: list[tuple[str, Sequence[PlaceSpec]]] = [("stages", spec.stages), ("exits", spec.exits)]
    for group, items in groups:
        for index, item in enumerate(items):
            if item.name not in reached:
                problems.append(((group, index, "name"), f"no transition reaches {item.name!r}"))
    return problems
