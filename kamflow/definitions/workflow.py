"""A loaded workflow: its validated definition, its question bank, and the one transitions
Machine shared by every account that follows it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from transitions import Machine

from kamflow.definitions import specfile
from kamflow.definitions.guardspecs import SPECS, NoParams, RequiredParams
from kamflow.definitions.questions import QuestionBank, load_bank
from kamflow.definitions.spec import (
    LadderSpec,
    PlaceSpec,
    StageSpec,
    TransitionSpec,
    WorkflowSpec,
    sources_of,
)
from kamflow.definitions.validation import check
from kamflow.errors import NotFound


@dataclass(frozen=True)
class BoundGuard:
    """A guard of a transition with its validated parameters."""

    name: str
    params: NoParams


#: The callbacks the Machine calls on the object it moves (the engine's `Move`): the names are
#: the contract between a definition and the engine that carries its moves out.
JUDGE, ALLOWED, WRITE = "judge", "allowed", "write"


@dataclass(frozen=True)
class Workflow:
    """A validated definition and the one Machine shared by every account that follows it."""

    spec: WorkflowSpec
    path: Path
    questions: QuestionBank
    machine: Machine = field(compare=False, repr=False)

    @property
    def bank_path(self) -> Path:
        """The question bank's file, beside the workflow's."""
        return self.path.parent / self.spec.questions

    @property
    def name(self) -> str:
        """The workflow's name (its file's name without ``.yaml``)."""
        return self.spec.name

    @property
    def initial(self) -> str:
        """The stage a new key account starts in: ``initial``, else the first stage."""
        return self.spec.initial or self.spec.stages[0].name

    @property
    def stage_names(self) -> list[str]:
        """The stages of the cycle, in order."""
        return [stage.name for stage in self.spec.stages]

    @property
    def exit_names(self) -> list[str]:
        """The exits, in file order."""
        return [exit_.name for exit_ in self.spec.exits]

    def is_exit(self, name: str) -> bool:
        """Whether ``name`` is one of the exits."""
        return name in self.exit_names

    def stage(self, name: str) -> StageSpec | None:
        """The stage called ``name``; None for an intake place, an exit or a name the workflow
        lacks."""
        return next((stage for stage in self.spec.stages if stage.name == name), None)

    def ladder_for(self, stage: StageSpec) -> LadderSpec:
        """The ladder of ``stage``: the workflow's, with the stage's own timings put over it."""
        return self.spec.ladder.merged(stage.ladder)

    @property
    def intake_names(self) -> list[str]:
        """The places before the cycle, where candidates wait, in order."""
        return [place.name for place in self.spec.intake]

    def is_intake(self, name: str) -> bool:
        """Whether ``name`` is one of the intake places."""
        return name in self.intake_names

    @property
    def places(self) -> list[str]:
        """Every place an account can be, in order: intake, stages, exits."""
        return [*self.intake_names, *self.stage_names, *self.exit_names]

    def title_of(self, name: str) -> str:
        """The title of the place ``name``; when it has none, its name made readable
        (``action_plan`` becomes ``Action plan``); ``name`` itself for a place the workflow
        lacks."""
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
        return sources_of(transition, self.spec.active)

    def transitions_from(self, stage: str) -> list[TransitionSpec]:
        """Every move the Machine knows from ``stage``, in the order of the workflow file."""
        known = []
        for trigger in self.machine.get_triggers(stage):
            for found in self.machine.events[trigger].transitions.get(stage, []):
                known.append(self._specs[(trigger, stage, str(found.dest))])
        return sorted(known, key=lambda t: self._order[id(t)])

    def stages_guarded_by(self, guard: str) -> list[str]:
        """The places, in order, from which some transition is guarded by ``guard``."""
        leaving = {
            source
            for transition in self.spec.transitions
            if any(found.name == guard for found in transition.guards)
            for source in self.sources(transition)
        }
        return [place for place in self.places if place in leaving]

    def moves_from(self, stage: str) -> list[TransitionSpec]:
        """The moves to another stage of the cycle (not to an exit), in file order."""
        return [t for t in self.transitions_from(stage) if not self.is_exit(t.dest)]

    def transition_spec(self, trigger: str, source: str, dest: str) -> TransitionSpec:
        """The definition of the move the Machine is making."""
        return self._specs[(trigger, source, dest)]

    @functools.cached_property
    def _specs(self) -> dict[tuple[str, str, str], TransitionSpec]:
        return {
            (t.name, source, t.dest): t
            for t in self.spec.transitions
            for source in sources_of(t, self.spec.active)
        }

    @functools.cached_property
    def _order(self) -> dict[int, int]:
        return {id(t): index for index, t in enumerate(self.spec.transitions)}

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


def _bind(transition: TransitionSpec) -> list[BoundGuard]:
    return [
        BoundGuard(g.name, SPECS[g.name].params.model_validate(g.params)) for g in transition.guards
    ]


def _machine(spec: WorkflowSpec, initial: str) -> Machine:
    """The one Machine of a workflow: no model of its own (each move brings one for a moment),
    no ``to_<stage>`` shortcuts past the guards, and every transition judged before it moves."""
    return Machine(
        model=None,
        states=spec.active + [exit_.name for exit_ in spec.exits],
        initial=initial,
        transitions=[
            {
                "trigger": t.name,
                "source": sources_of(t, spec.active),
                "dest": t.dest,
                "prepare": JUDGE,
                "conditions": ALLOWED,
                "after": WRITE,
            }
            for t in spec.transitions
        ],
        auto_transitions=False,
        model_attribute="stage",
        send_event=True,
    )


def load_workflow(path: Path) -> Workflow:
    """Load and validate one workflow file and its question bank; nothing is half loaded.

    Loaded once per process, and again when the file or its question bank changes (a running
    daemon sees edits): a check costs two ``stat`` calls, not a parse.
    """
    cached = _LOADED.get(path)
    if cached is not None and specfile.stamp(path, cached[1].bank_path) == cached[0]:
        return cached[1]
    before = specfile.stamp(path)  # taken before reading: an edit meanwhile loads again
    spec = specfile.load(path, WorkflowSpec, check_data=lambda data: check(data, path))
    bank_path = path.parent / spec.questions
    stamp = before + specfile.stamp(bank_path)
    bank = load_bank(bank_path)
    initial = spec.initial or spec.stages[0].name
    found = Workflow(spec, path, bank, _machine(spec, initial))
    _LOADED[path] = (stamp, found)
    return found


#: The workflows this process loaded, with the files' change times they were loaded at.
_LOADED: dict[Path, tuple[tuple[tuple[str, int], ...], Workflow]] = {}
