"""Workflow definitions: YAML validated on load, one shared transitions.Machine per definition."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import Field, ValidationError, field_validator
from sqlmodel import Session
from transitions import Machine

from kamflow import defaults
from kamflow.definitions import specfile
from kamflow.definitions.questions import QuestionBank, load_bank
from kamflow.definitions.specfile import Problem, Spec
from kamflow.errors import KamflowError, NotFound
from kamflow.guards import REGISTRY, NoParams, RequiredParams
from kamflow.text import first_line

log = logging.getLogger("kamflow.workflow")

NAME = r"^[a-z][a-z0-9_]*$"
EVERY_STAGE = "*"
OWNER, LEADER, ROLE_PREFIX = "owner", "leader", "role:"


class PlaceSpec(Spec):
    """Somewhere an account can be: a stage of the cycle or an exit."""

    name: str = Field(pattern=NAME)
    title: str = ""
    description: str = ""


class LadderOverride(Spec):
    """A stage's own reminder and escalation timing; what it leaves out comes from the workflow."""

    remind_every_days: int | None = Field(default=None, gt=0)
    escalate_after_days: int | None = Field(default=None, gt=0)
    escalate_every_days: int | None = Field(default=None, gt=0)


class LadderSpec(Spec):
    """When an account over its stage's limit reminds its owner and escalates to leadership."""

    remind_every_days: int = Field(default=defaults.REMIND_EVERY_DAYS, gt=0)
    escalate_after_days: int = Field(default=defaults.ESCALATE_AFTER_DAYS, gt=0)
    escalate_every_days: int = Field(default=defaults.ESCALATE_EVERY_DAYS, gt=0)

    def merged(self, override: LadderOverride | None) -> LadderSpec:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class StageSpec(PlaceSpec):
    limit_days: int = Field(gt=0)
    ladder: LadderOverride | None = None


class ExitSpec(PlaceSpec):
    pass


class GuardSpec(Spec):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class TransitionSpec(Spec):
    name: str = Field(pattern=NAME)
    source: list[str] = Field(alias="from", min_length=1)
    dest: str = Field(alias="to")
    guards: list[GuardSpec] = Field(default_factory=list)
    allowed: list[str] = Field(default_factory=list)
    reason_required: bool = False
    description: str = ""

    @field_validator("source", mode="before")
    @classmethod
    def one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("guards", mode="before")
    @classmethod
    def guard_shorthand(cls, value: Any) -> Any:
        """Accept ``- name`` and ``- name: {param: value}`` as well as the long form."""
        if not isinstance(value, list):
            return value
        expanded = []
        for item in value:
            if isinstance(item, str):
                item = {"name": item}
            elif isinstance(item, dict) and len(item) == 1 and "name" not in item:
                ((name, params),) = item.items()
                item = {"name": name, "params": params or {}}
            expanded.append(item)
        return expanded


class WorkflowSpec(Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    title: str = Field(min_length=1)
    description: str = ""
    questions: str = "questions.yaml"
    initial: str | None = None
    ladder: LadderSpec = Field(default_factory=LadderSpec)
    intake: list[PlaceSpec] = Field(default_factory=list)
    stages: list[StageSpec] = Field(min_length=1)
    exits: list[ExitSpec] = Field(default_factory=list)
    transitions: list[TransitionSpec] = Field(min_length=1)

    @property
    def active(self) -> list[str]:
        """Where an account can be and move on from: the intake places and the stages."""
        return [place.name for place in self.intake] + [stage.name for stage in self.stages]


def _check(spec: WorkflowSpec, path: Path) -> list[Problem]:
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
            elif source in exits:
                problems.append(
                    ((*at, "from", position), f"{source!r} is an exit: nothing leaves it")
                )
        if transition.dest not in known:
            problems.append(((*at, "to"), f"unknown stage {transition.dest!r} ({_known(known)})"))
        for source in _sources(transition, active):
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
            found = REGISTRY.get(guard_spec.name)
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


def _sources(transition: TransitionSpec, active: list[str]) -> list[str]:
    """The places a transition leaves from; ``*`` means every stage and intake place."""
    return active if EVERY_STAGE in transition.source else transition.source


def _check_guard(
    guard_spec: GuardSpec, at: tuple[str | int, ...], known: list[str]
) -> list[Problem]:
    found = REGISTRY.get(guard_spec.name)
    if found is None:
        return [((*at,), f"unknown guard {guard_spec.name!r} ({_known(sorted(REGISTRY))})")]
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
        for source in _sources(transition, active):
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


@dataclass(frozen=True)
class BoundGuard:
    """A guard of a transition with its validated parameters."""

    name: str
    params: NoParams


class _Position:
    """What transitions moves: just a stage name, so no table row is ever a machine model."""

    def __init__(self, stage: str) -> None:
        self.stage = stage


@dataclass(frozen=True)
class Workflow:
    """A validated definition and the one Machine shared by every account that follows it."""

    spec: WorkflowSpec
    path: Path
    questions: QuestionBank
    machine: Machine = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def initial(self) -> str:
        return self.spec.initial or self.spec.stages[0].name

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.spec.stages]

    @property
    def exit_names(self) -> list[str]:
        return [exit_.name for exit_ in self.spec.exits]

    def is_exit(self, name: str) -> bool:
        return name in self.exit_names

    def stage(self, name: str) -> StageSpec | None:
        return next((stage for stage in self.spec.stages if stage.name == name), None)

    def ladder_for(self, stage: StageSpec) -> LadderSpec:
        return self.spec.ladder.merged(stage.ladder)

    @property
    def intake_names(self) -> list[str]:
        return [place.name for place in self.spec.intake]

    def is_intake(self, name: str) -> bool:
        return name in self.intake_names

    @property
    def places(self) -> list[str]:
        """Every place an account can be, in order: intake, stages, exits."""
        return [*self.intake_names, *self.stage_names, *self.exit_names]

    def title_of(self, name: str) -> str:
        places: list[PlaceSpec] = [*self.spec.intake, *self.spec.stages, *self.spec.exits]
        for item in places:
            if item.name == name:
                return item.title or name.replace("_", " ").capitalize()
        return name

    def resolve_stage(self, text: str) -> str:
        """A stage or exit by name or title, in any case (``Action plan``, ``action-plan``)."""
        wanted = text.strip().lower().replace("-", "_").replace(" ", "_")
        for name in self.places:
            if wanted in (name, self.title_of(name).lower().replace(" ", "_")):
                return name
        raise NotFound(
            f"no stage {text!r} in workflow {self.name} (stages: {', '.join(self.places)})"
        )

    def sources(self, transition: TransitionSpec) -> list[str]:
        """Where ``transition`` leaves from, with ``*`` spelled out."""
        return _sources(transition, self.spec.active)

    def transitions_from(self, stage: str) -> list[TransitionSpec]:
        return [t for t in self.spec.transitions if stage in _sources(t, self.spec.active)]

    def moves_from(self, stage: str) -> list[TransitionSpec]:
        """Transitions to another stage of the cycle (not to an exit), in file order."""
        return [t for t in self.transitions_from(stage) if not self.is_exit(t.dest)]

    @functools.cached_property
    def required_questions(self) -> tuple[str, ...]:
        """The questions this workflow requires: plan_complete's ``required``, else the bank's."""
        for transition in self.spec.transitions:
            for bound in self.bound_guards(transition):
                if isinstance(bound.params, RequiredParams) and bound.params.required is not None:
                    return tuple(bound.params.required)
        return tuple(question.id for question in self.questions.required)

    def bound_guards(self, transition: TransitionSpec) -> list[BoundGuard]:
        """The transition's guards with their parameters validated (once per definition)."""
        found = self._bound.get(id(transition))
        return found if found is not None else _bind(transition)

    @functools.cached_property
    def _bound(self) -> dict[int, list[BoundGuard]]:
        return {id(transition): _bind(transition) for transition in self.spec.transitions}

    def fire(self, transition: TransitionSpec, stage: str) -> str:
        """Let the shared machine perform the move from ``stage``; returns the new stage."""
        position = _Position(stage)
        self.machine.events[transition.name].trigger(position)
        return position.stage


def _bind(transition: TransitionSpec) -> list[BoundGuard]:
    return [
        BoundGuard(g.name, REGISTRY[g.name].params.model_validate(g.params))
        for g in transition.guards
    ]


def _machine(spec: WorkflowSpec, initial: str) -> Machine:
    return Machine(
        model=None,
        states=spec.active + [exit_.name for exit_ in spec.exits],
        initial=initial,
        transitions=[
            {"trigger": t.name, "source": _sources(t, spec.active), "dest": t.dest}
            for t in spec.transitions
        ],
        auto_transitions=False,
        model_attribute="stage",
    )


def load_workflow(path: Path) -> Workflow:
    """Load and validate one workflow file and its question bank; nothing is half loaded.

    Loaded once, and again when a definition beside it changes (a running daemon sees edits).
    """
    return _load_workflow(path, specfile.stamp(*sorted(path.parent.glob("*.yaml"))))


@functools.lru_cache(maxsize=64)
def _load_workflow(path: Path, _stamp: tuple[tuple[str, int], ...]) -> Workflow:
    spec = specfile.load(path, WorkflowSpec, lambda s: _check(s, path))
    bank = load_bank(path.parent / spec.questions)
    initial = spec.initial or spec.stages[0].name
    return Workflow(spec, path, bank, _machine(spec, initial))


def search_path() -> list[Path]:
    """Where workflows are looked for: KAMFLOW_WORKFLOWS folders first, then the shipped ones."""
    folders = [Path(p) for p in os.environ.get(defaults.ENV_WORKFLOWS, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent  # the kamflow package
    # Installed wheel: the definitions ship inside the package; a checkout keeps them at the top.
    for shipped in (here / "workflows", here.parent / "workflows"):
        if shipped.is_dir():
            folders.append(shipped)
            break
    return folders


_STAGES_KEY = re.compile(r"^stages\s*:", re.MULTILINE)


def is_workflow_file(path: Path) -> bool:
    """Workflow files are the YAML files with a top-level ``stages:`` (not question banks etc.)."""
    try:
        return bool(_STAGES_KEY.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return True  # let loading it report the problem


def available() -> dict[str, Path]:
    """Every workflow name found on the search path, the first folder winning."""
    folders = tuple(search_path())
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


def get_workflow(name: str) -> Workflow:
    """The workflow called ``name``, validated."""
    paths = available()
    if name not in paths:
        raise NotFound(f"no workflow {name!r} (available: {', '.join(sorted(paths)) or 'none'})")
    return load_workflow(paths[name])


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


def workflows_in_use(session: Session, *, strict: bool = False) -> list[Workflow]:
    """The workflows some account follows, loaded; one whose file is missing or broken is left
    out with a warning, so that it holds up only its own accounts (``strict``: raise instead,
    where leaving accounts out would give a wrong answer, such as counting against the cap)."""
    found = []
    for name in workflow_names_in_use(session):
        try:
            found.append(get_workflow(name))
        except KamflowError as error:
            if strict:
                raise
            log.warning("accounts following workflow %r skipped: %s", name, first_line(error))
    return found
