"""Workflow definitions as data: the models a workflow file is validated against."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from kamflow import defaults
from kamflow.definitions.specfile import Spec
from kamflow.text import plural

NAME = r"^[a-z][a-z0-9_]*$"
EVERY_STAGE = "*"
OWNER, LEADER, ROLE_PREFIX = "owner", "leader", "role:"
#: Who else a rule may name: anyone holding a role on the account's team, and an admin.
TEAM, ADMIN = "team", "admin"


class Right(StrEnum):
    """What a rule of ``permissions:`` grants (see kamflow.permissions for the defaults)."""

    #: The strategy, the account team's roles, answers, actions, KPIs and reviews.
    PLAN = "plan"
    #: Stage moves whose transition names no ``allowed:`` of its own.
    ADVANCE = "advance"
    #: Scoring a candidate, promoting it, swapping key accounts.
    SCORE = "score"
    #: Adding, importing, renaming, reassigning an account; its workflow; snoozing it.
    ACCOUNT = "account"
    #: Going over the key-account cap.
    OVERRIDE = "override"
    #: Adding and correcting people, their logins and who is an admin.
    PEOPLE = "people"
    #: Sending a dead message again.
    OUTBOX = "outbox"


#: The rights a workflow file may set for the accounts that follow it; the others are set for
#: the whole organisation, in portfolio.yaml.
ACCOUNT_RIGHTS = (Right.PLAN, Right.ADVANCE, Right.SCORE, Right.ACCOUNT)


def subject_problem(who: Any) -> str | None:
    """Why ``who`` cannot be named by a rule (owner, team, leader, admin, role:ROLE), or None."""
    if isinstance(who, str):
        if who in (OWNER, TEAM, LEADER, ADMIN):
            return None
        if who.startswith(ROLE_PREFIX) and who.removeprefix(ROLE_PREFIX) in defaults.ROLES:
            return None
    return (
        f"{who!r} is not owner, team, leader, admin or role:ROLE "
        f"(roles: {', '.join(defaults.ROLES)})"
    )


def checked_rules(value: Any, rights: tuple[Right, ...]) -> Any:
    """``permissions:`` as a validator sees it: a mapping of rights to lists of subjects."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of rights to lists (e.g. plan: [owner, team, leader])")
    for right, subjects in value.items():
        if right not in [r.value for r in rights]:
            raise ValueError(
                f"unknown right {right!r} here (rights: {', '.join(r.value for r in rights)})"
            )
        if not isinstance(subjects, list) or not subjects:
            raise ValueError(f"{right}: must be a non-empty list (e.g. [owner, leader])")
        for who in subjects:
            problem = subject_problem(who)
            if problem:
                raise ValueError(f"{right}: {problem}")
    return value


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
        """This ladder with a stage's own timings put over it (itself when the stage has none)."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class StageSpec(PlaceSpec):
    """A stage of the cycle: how many days an account may stay in it before its owner is reminded
    (calendar days, ``limit_days``, or business days, ``limit_business_days``: one of the two),
    and the stage's own ladder timings, if any. A stage that counts business days counts its
    ladder's days in business days too. That a stage gives exactly one limit is checked with the
    file (validation.check), where the problem can be named whatever else is wrong."""

    limit_days: int | None = Field(default=None, gt=0)
    limit_business_days: int | None = Field(default=None, gt=0)
    ladder: LadderOverride | None = None

    @property
    def business_days(self) -> bool:
        """Whether the stage counts business days (weekends and public holidays left out)."""
        return self.limit_business_days is not None

    @property
    def limit(self) -> int:
        """The stage's limit, in its own days (business days or calendar days)."""
        found = self.limit_business_days if self.business_days else self.limit_days
        assert found is not None
        return found

    @property
    def limit_text(self) -> str:
        """The stage's limit in words: ``14 days``, ``5 business days``."""
        return plural(self.limit, "business day" if self.business_days else "day")


class ExitSpec(PlaceSpec):
    """A place where an account leaves the cycle (disqualified, retired): only a transition that
    names it in ``from`` leads out of it, back to a stage (``reinstate``); ``*`` never does."""

    pass


class GuardSpec(Spec):
    """A guard as a transition names it, with the parameters given to it."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class TransitionSpec(Spec):
    """A move of the workflow: its name (moves from different places may share one, such as
    ``advance``), the places it leaves from (``from``: one, a list, or ``*`` for every stage and
    intake place), the place it goes to (``to``), its guards, who may make it, and whether it needs
    a reason."""

    name: str = Field(pattern=NAME)
    source: list[str] = Field(alias="from", min_length=1)
    dest: str = Field(alias="to")
    guards: list[GuardSpec] = Field(default_factory=list)
    #: Who may make the move: ``owner``, ``team``, ``leader``, ``admin``, ``role:ROLE``; when
    #: empty, who the workflow's ``advance`` rule names.
    allowed: list[str] = Field(default_factory=list)
    #: The move needs a reason (``--reason``), kept in the history.
    reason_required: bool = False
    description: str = ""

    @field_validator("source", mode="before")
    @classmethod
    def one_or_many(cls, value: Any) -> Any:
        """Accept a single place as ``from`` as well as a list of them."""
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
    """A workflow file: its name (the file's name without ``.yaml``), its title, its question bank
    (a file beside it), the stage new key accounts start in (the first stage unless ``initial``
    says otherwise), its default ladder, its places (intake, stages, exits) and its transitions."""

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
    #: Who may do what to the accounts that follow this workflow (ACCOUNT_RIGHTS), over
    #: portfolio.yaml's rules and kamflow's defaults.
    permissions: dict[Right, list[str]] = Field(default_factory=dict)

    @field_validator("permissions", mode="before")
    @classmethod
    def account_rights(cls, value: Any) -> Any:
        """Only the rights about one account, naming known subjects."""
        return checked_rules(value, ACCOUNT_RIGHTS)

    @property
    def active(self) -> list[str]:
        """Where an account can be and move on from: the intake places and the stages."""
        return [place.name for place in self.intake] + [stage.name for stage in self.stages]


def sources_of(transition: TransitionSpec, active: list[str]) -> list[str]:
    """The places a transition leaves from; ``*`` means every stage and intake place."""
    return active if EVERY_STAGE in transition.source else transition.source
