"""Named guards: each checks one condition of a stage change and explains itself in a sentence.

A guard judges what its context holds: the account as read, its workflow, the time, and the facts
about the account that the caller loaded (for one account, or for a batch of them). A guard never
reads the database, takes a lock or decides who may act: the engine does those, before it asks the
guards. What guards exist, and the parameters each takes, is part of the definitions
(`kamflow.definitions.guardspecs`); a workflow names them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from kamflow.definitions.guardspecs import (
    SPECS,
    WITHIN_CAP,
    CountParams,
    NoParams,
    RequiredParams,
    RolesParams,
    SinceParams,
    ThresholdParams,
)
from kamflow.definitions.questions import QuestionBank
from kamflow.definitions.selection import portfolio_config
from kamflow.text import plural, shell_quote
from kamflow.verdict import Verdict

#: An open action and a cancelled one (as the facts give an action's status).
OPEN = "open"
CANCELLED = "cancelled"


class AccountLike(Protocol):
    """What guards read of an account: a row of the table, or a plain copy of its columns.

    ``id`` is None for an account not yet written; ``owner_id`` is the id of the person who owns
    it; ``workflow`` names the workflow it follows; ``stage`` is the place it is in (a stage, an
    intake place or an exit) and ``stage_entered_at`` when it entered that place, in UTC.
    """

    @property
    def id(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def owner_id(self) -> int: ...
    @property
    def workflow(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def stage_entered_at(self) -> datetime: ...


@dataclass(frozen=True)
class AccountRow:
    """An account's columns as a scan read them (cheaper than a table object for a batch)."""

    id: int
    name: str
    owner_id: int
    workflow: str
    stage: str
    stage_entered_at: datetime


class WorkflowLike(Protocol):
    """What guards read of the account's workflow.

    ``questions`` is its question bank; ``required_questions`` the ids of the questions it
    requires answered; ``stage_names`` its stages of the cycle, in order.
    """

    @property
    def questions(self) -> QuestionBank: ...
    @property
    def required_questions(self) -> tuple[str, ...]: ...
    @property
    def stage_names(self) -> list[str]: ...
    def title_of(self, name: str) -> str:
        """The title of the place ``name``, as messages name it."""
        ...


class StrategyLike(Protocol):
    """What guards read of an account's strategy: the objective (what), the stakeholders and buying
    centres (with whom) and the rationale (why); a blank one counts as missing."""

    @property
    def objective(self) -> str: ...
    @property
    def stakeholders(self) -> str: ...
    @property
    def rationale(self) -> str: ...


class AnswerLike(Protocol):
    """What guards read of an answer: its text (for a not-applicable mark, the reason) and whether
    the question was marked not applicable instead of answered."""

    @property
    def text(self) -> str: ...
    @property
    def not_applicable(self) -> bool: ...


class ActionLike(Protocol):
    """What guards read of a plan action: its id, its status (``open``, ``done`` or
    ``cancelled``), its owner's person id and its due date (None when not set)."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def owner_id(self) -> int | None: ...
    @property
    def due(self) -> date | None: ...


class KpiLike(Protocol):
    """What guards read of a KPI: its id (the key of `FactsLike.kpi_latest`) and its name."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


class FactsLike(Protocol):
    """The facts about accounts that guards read (`kamflow.records.facts.Facts` loads them)."""

    def strategy(self, account_id: int) -> StrategyLike | None:
        """The account's strategy; None when none was ever set."""
        ...

    def roles(self, account_id: int) -> set[str]:
        """The roles someone holds on the account (empty when none)."""
        ...

    def answers(self, account_id: int) -> Mapping[str, AnswerLike]:
        """The account's answers and not-applicable marks, by question id."""
        ...

    def actions(self, account_id: int) -> Sequence[ActionLike]:
        """The account's plan actions, open, done and cancelled, in the order they were added."""
        ...

    def kpis(self, account_id: int) -> Sequence[KpiLike]:
        """The KPIs of the account's plan (not those removed from it), in the order they were
        added."""
        ...

    def kpi_latest(self, account_id: int) -> Mapping[int, datetime]:
        """When each KPI of the account last had a value recorded, by KPI id (a KPI never
        measured is not there)."""
        ...

    def review_times(self, account_id: int) -> Sequence[datetime]:
        """When each review conclusion of the account was written."""
        ...

    def entered(self, account_id: int, stage: str) -> datetime | None:
        """When the account last entered ``stage`` (created there, or moved there); None when it
        never did."""
        ...

    def latest_score(self, account_id: int) -> float | None:
        """The total (0 to 100) of the account's latest scoring; None when it was never scored."""
        ...


@dataclass(frozen=True)
class CapFacts:
    """Where the key-account cap stands for an account about to become a key account (or key
    accounts about to pass to another owner), counted by the engine (under a lock when it is
    about to write)."""

    #: Key accounts of the organisation, and of the (new) owner, leaving out those that join.
    everyone: int
    owned: int
    owner: str
    #: The lowest-scored key accounts, named (of one owner, or of everyone when None).
    ranked: Callable[[int | None], str]
    #: A leader's reason for going over the cap (the engine checked that the actor leads).
    override: str | None = None
    #: How many key accounts the move gives the owner (a change of owner may pass several).
    joining: int = 1
    #: Whether the move adds them to the organisation's key accounts (a change of owner does not).
    new_to_organisation: bool = True


@dataclass
class GuardContext:
    """What a guard may look at: the account as read, its workflow, the time, its facts."""

    account: AccountLike
    workflow: WorkflowLike
    now: datetime
    facts: FactsLike
    actor: str = ""
    #: The key-account cap, for the transitions that check it.
    cap: CapFacts | None = None

    @property
    def known(self) -> FactsLike:
        """The facts about the account and the rest of its batch (the same as ``facts``)."""
        return self.facts

    @property
    def id(self) -> int:
        """The account's id (0 for an account not yet written, which has no facts)."""
        return self.account.id or 0

    @property
    def typed(self) -> str:
        """The account's name as typed in a command that a message suggests."""
        return shell_quote(self.account.name)

    def entered_at(self, stage: str) -> datetime | None:
        """When the account last entered ``stage`` (its current one, or an earlier one)."""
        if stage == self.account.stage:
            return self.account.stage_entered_at
        return self.known.entered(self.id, stage)


CheckFn = Callable[[GuardContext, Any], tuple[bool, str]]


class Warn(tuple[bool, str]):
    """A met verdict that still deserves the user's attention."""

    def __new__(cls, message: str) -> Warn:
        return super().__new__(cls, (True, message))


class Overridden(Warn):
    """Met only because a leader overrode the key-account cap."""


@dataclass(frozen=True)
class Guard:
    """A guard's check, under the name workflow files give it."""

    name: str
    check: CheckFn

    @property
    def params(self) -> type[NoParams]:
        """The model of the parameters the guard takes (from the definitions)."""
        return SPECS[self.name].params

    @property
    def description(self) -> str:
        """What the guard checks, in a phrase (from the definitions)."""
        return SPECS[self.name].description

    def evaluate(self, context: GuardContext, params: NoParams) -> Verdict:
        """The guard's verdict on ``context`` with ``params``, marked as a warning or an override
        when the check says so."""
        return _verdict(self.name, self.check(context, params))


def _verdict(name: str, result: tuple[bool, str]) -> Verdict:
    """A check's result as the verdict of the guard ``name``, marked as a warning or an
    override when the check says so."""
    ok, message = result
    return Verdict(
        name,
        ok,
        message,
        warning=isinstance(result, Warn),
        overridden=isinstance(result, Overridden),
    )


REGISTRY: dict[str, Guard] = {}


def guard(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register the check of the guard called ``name`` (one of the definitions' SPECS)."""
    if name not in SPECS:
        raise KeyError(f"no guard {name!r} in the definitions")

    def register(check: CheckFn) -> CheckFn:
        """Put ``check`` in the REGISTRY under ``name``."""
        REGISTRY[name] = Guard(name, check)
        return check

    return register


def _listing(items: list[str]) -> str:
    return ", ".join(items)


@guard("strategy_defined")
def strategy_defined(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    """Met when the strategy gives the objective, the stakeholders and the rationale, none of them
    blank."""
    strategy = context.known.strategy(context.id)
    parts = {
        ("the objective (what)", "--objective"): strategy.objective if strategy else "",
        ("the stakeholders and buying centres (with whom)", "--who"): strategy.stakeholders
        if strategy
        else "",
        ("the rationale (why)", "--why"): strategy.rationale if strategy else "",
    }
    missing = [part for part, value in parts.items() if not value.strip()]
    if missing:
        # Only the parts missing: `strategy set` keeps the parts it is not given.
        options = " ".join(f"{option} ..." for _, option in missing)
        return False, (
            f"the strategy lacks {_listing([label for label, _ in missing])}: "
            f"kamflow strategy set {context.typed} {options}"
        )
    return True, "the strategy says what, with whom and why"


@guard("roles_covered")
def roles_covered(context: GuardContext, params: RolesParams) -> tuple[bool, str]:
    """Met when each role in ``roles`` has at least one holder on the account."""
    held = context.known.roles(context.id)
    missing = [role for role in params.roles if role not in held]
    if missing:
        return False, (
            f"no one holds the role{'s' if len(missing) > 1 else ''} {_listing(missing)}: "
            f"kamflow role assign {context.typed} ROLE EMAIL"
        )
    if len(params.roles) == 1:
        return True, f"the role {params.roles[0]} is held"
    return True, f"all {len(params.roles)} roles are held"


def _answered_ids(context: GuardContext) -> Mapping[str, AnswerLike]:
    return context.known.answers(context.id)


@guard("research_done")
def research_done(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    """Met when every category of the workflow's question bank has an answer or a not-applicable
    mark for at least one of its questions."""
    bank = context.workflow.questions
    answered = _answered_ids(context)
    covered = {q.category for q in bank.questions if q.id in answered}
    missing = [c for c in bank.categories if c.id not in covered]
    if missing:
        names = _listing([f"{c.id} ({c.title})" for c in missing])
        return False, (
            f"{len(missing)} question "
            f"categor{'ies have' if len(missing) > 1 else 'y has'} no answer yet: {names}"
        )
    if len(bank.categories) == 1:
        return True, "the question category has answers"
    return True, f"all {len(bank.categories)} question categories have answers"


@guard("plan_complete")
def plan_complete(context: GuardContext, _: RequiredParams) -> tuple[bool, str]:
    """Met when every question the workflow requires is answered (a not-applicable mark does not
    count), the plan has at least one action that is not cancelled, and every open action has an
    owner and a due date."""
    answered = _answered_ids(context)
    problems = []
    unanswered = [
        qid
        for qid in context.workflow.required_questions
        if qid not in answered or answered[qid].not_applicable or not answered[qid].text
    ]
    if unanswered:
        problems.append(
            f"{len(unanswered)} required question{'s are' if len(unanswered) > 1 else ' is'} "
            f"unanswered ({_listing(unanswered)})"
        )
    # A cancelled action is no longer part of the plan.
    every = context.known.actions(context.id)
    actions = [a for a in every if a.status != CANCELLED]
    if not actions:
        problems.append(
            f"the plan has no action {'left (all are cancelled)' if every else 'yet'} "
            f"(kamflow action add {context.typed} TITLE --owner EMAIL --due YYYY-MM-DD)"
        )
    loose = [
        f"#{a.id}" for a in actions if a.status == OPEN and (a.owner_id is None or a.due is None)
    ]
    if loose:
        problems.append(f"open actions without an owner or a due date: {_listing(loose)}")
    if problems:
        return False, "the account plan is not complete: " + "; ".join(problems)
    return True, (
        f"the plan answers every required question and has {plural(len(actions), 'action')}"
    )


@guard("kpis_defined")
def kpis_defined(context: GuardContext, params: CountParams) -> tuple[bool, str]:
    """Met when the account has at least ``at_least`` KPIs."""
    count = len(context.known.kpis(context.id))
    if count < params.at_least:
        return False, (
            f"{plural(count, 'KPI')} defined, {params.at_least} needed "
            f"(kamflow kpi add {context.typed} KPI --target NUMBER)"
        )
    return True, f"{plural(count, 'KPI')} with targets"


def _kpis_without_recent_value(context: GuardContext, since: datetime | None) -> list[str] | None:
    """Names of KPIs with no value since ``since``; None when the account has no KPI."""
    kpis = context.known.kpis(context.id)
    if not kpis:
        return None
    latest = context.known.kpi_latest(context.id)
    missing = []
    for kpi in kpis:
        when = latest.get(kpi.id)
        if when is None or (since is not None and when < since):
            missing.append(kpi.name)
    return missing


def _since(context: GuardContext, params: SinceParams) -> tuple[str, datetime | None]:
    stage = params.since or context.account.stage
    return stage, context.entered_at(stage)


@guard("kpis_recorded")
def kpis_recorded(context: GuardContext, params: SinceParams) -> tuple[bool, str]:
    """Met when every KPI has a value recorded since the account last entered ``since`` (its current
    stage by default; any value counts if it never entered that stage); unmet when the account has
    no KPI."""
    stage, since = _since(context, params)
    missing = _kpis_without_recent_value(context, since)
    title = context.workflow.title_of(stage)
    if missing is None:
        return False, "the account has no KPI to record"
    if missing:
        return False, (
            f"no value recorded since entering {title} for: {_listing(missing)} "
            f"(kamflow kpi record {context.typed} KPI VALUE)"
        )
    return True, f"every KPI has a value recorded since entering {title}"


@guard("kpis_reviewed")
def kpis_reviewed(context: GuardContext, params: SinceParams) -> tuple[bool, str]:
    """Met when every KPI has a value recorded since the account last entered ``since`` (its current
    stage by default) and a review conclusion was written since it entered its current stage; unmet
    when the account has no KPI."""
    problems = []
    stage, since = _since(context, params)
    missing = _kpis_without_recent_value(context, since)
    if missing is None:
        problems.append("the account has no KPI to review")
    elif missing:
        title = context.workflow.title_of(stage)
        problems.append(f"no value recorded since entering {title} for: {_listing(missing)}")
    entered = context.account.stage_entered_at
    written = sum(at >= entered for at in context.known.review_times(context.id))
    if not written:
        problems.append(
            "no review conclusion written yet in this stage "
            f"(kamflow kpi review {context.typed} --conclusion TEXT)"
        )
    if problems:
        return False, "the KPIs are not reviewed: " + "; ".join(problems)
    return True, "the KPIs are measured and the review's conclusion is written"


@guard("score_at_least")
def score_at_least(context: GuardContext, params: ThresholdParams) -> tuple[bool, str]:
    """Met when the account's latest selection score reaches ``threshold`` (portfolio.yaml's by
    default); unmet when it was never scored."""
    threshold = params.threshold
    if threshold is None:
        threshold = portfolio_config().selection.threshold
    total = context.known.latest_score(context.id)
    if total is None:
        return False, (
            f"{context.account.name} has no selection score yet: kamflow account score "
            f"{context.typed} --revenue N --growth N --renewal N --win-now N --effort N "
            "--relationship N --fit N --logo N"
        )
    if total < threshold:
        return False, f"scored {total:g}, below the promotion threshold of {threshold:g}"
    return True, f"scored {total:g}, at least the threshold of {threshold:g}"


@guard(WITHIN_CAP)
def within_cap(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    """Met when one more key account keeps the organisation and the owner within the cap of
    portfolio.yaml, with a warning once the owner reaches ``warn_per_owner``; over the cap, met
    only by a leader's override (marked as such); unmet when the engine did not count."""
    if context.cap is None:  # the engine counts for every transition that names this guard
        return False, "the key-account cap was not counted"
    return _judge_cap(context.cap, context.account.owner_id, context.actor)


def cap_verdict(cap: CapFacts, *, owner_id: int, actor: str) -> Verdict:
    """The within_cap verdict on what ``cap`` counted, outside a transition (key accounts
    passing to the owner ``owner_id``, say)."""
    return _verdict(WITHIN_CAP, _judge_cap(cap, owner_id, actor))


def _judge_cap(cap: CapFacts, owner_id: int, actor: str) -> tuple[bool, str]:
    limits = portfolio_config().cap
    over = []
    if cap.new_to_organisation and cap.everyone >= limits.organisation:
        over.append(
            f"the organisation already has {plural(cap.everyone, 'key account')}, the cap is "
            f"{limits.organisation}: {cap.ranked(None)}"
        )
    after = cap.owned + cap.joining
    if after > limits.per_owner:
        more = f" and would get {cap.joining} more" if cap.joining != 1 else ""
        over.append(
            f"{cap.owner} already owns {plural(cap.owned, 'key account')}{more}, the cap is "
            f"{limits.per_owner}: {cap.ranked(owner_id)}"
        )
    if over:
        if cap.override is None:
            return False, "; ".join(over) + (
                " (swap one out with kamflow account swap OUT IN, or a leader may override "
                "with --override --reason TEXT)"
            )
        return Overridden(
            f"over the cap by leader override ({actor}: {cap.override}): " + "; ".join(over)
        )
    if after >= limits.warn_per_owner:
        return Warn(
            f"{cap.owner} will own {plural(after, 'key account')} "
            f"(the cap is {limits.per_owner}; kamflow warns from {limits.warn_per_owner})"
        )
    everyone = cap.everyone + (cap.joining if cap.new_to_organisation else 0)
    return True, (
        f"{everyone} of {limits.organisation} key accounts, "
        f"{after} of {limits.per_owner} for {cap.owner}"
    )
