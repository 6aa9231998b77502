"""Named guards: each checks one condition of a stage change and explains itself in a sentence."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session, col, func, select

from kamflow import defaults
from kamflow.models import (
    Account,
    ActionStatus,
    Person,
    Score,
)
from kamflow.records.facts import AnswerFact, Facts
from kamflow.text import plural, shell_quote

if TYPE_CHECKING:
    from kamflow.definitions.workflow import Workflow


@dataclass(frozen=True)
class Verdict:
    """One guard's answer: met or not, and a sentence saying why."""

    guard: str
    ok: bool
    message: str
    #: Met, but worth saying (e.g. an owner close to the cap).
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdicts_json(verdicts: list[Verdict]) -> str:
    return json.dumps([verdict.as_dict() for verdict in verdicts])


class AccountLike(Protocol):
    """What guards read of an account: a row of the table, or a plain copy of its columns."""

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


@dataclass
class GuardContext:
    """What a guard may look at: the account (as read in this transaction), its facts, the time.

    ``facts`` may be shared by the contexts of a whole batch of accounts (the stall step judges
    hundreds at once); by default it holds this account alone.
    """

    session: Session
    account: AccountLike
    workflow: Workflow
    now: datetime
    actor: str = ""
    #: The reason a leader gave to go over the key-account cap, if any.
    override: str | None = None
    facts: Facts | None = None

    def __post_init__(self) -> None:
        if self.facts is None:  # an account not yet written has no facts to load
            ids = [] if self.account.id is None else [self.account.id]
            self.facts = Facts(self.session, ids)

    @property
    def known(self) -> Facts:
        """The facts about this account (and its batch)."""
        assert self.facts is not None
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


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def stage_refs(self) -> list[tuple[str, str]]:
        """(parameter, stage name) pairs the workflow must know."""
        return []

    def question_refs(self) -> list[tuple[str, str]]:
        """(parameter, question id) pairs the question bank must know."""
        return []


CheckFn = Callable[[GuardContext, Any], tuple[bool, str]]


@dataclass(frozen=True)
class Guard:
    name: str
    description: str
    params: type[NoParams]
    check: CheckFn

    def evaluate(self, context: GuardContext, params: NoParams) -> Verdict:
        result = self.check(context, params)
        ok, message = result
        return Verdict(self.name, ok, message, warning=isinstance(result, Warn))


REGISTRY: dict[str, Guard] = {}


def guard(
    name: str, description: str, params: type[NoParams] = NoParams
) -> Callable[[CheckFn], CheckFn]:
    """Register a guard under ``name``; workflow files refer to it by that name."""

    def register(check: CheckFn) -> CheckFn:
        REGISTRY[name] = Guard(name, description, params, check)
        return check

    return register


class Warn(tuple[bool, str]):
    """A met verdict that still deserves the user's attention."""

    def __new__(cls, message: str) -> Warn:
        return super().__new__(cls, (True, message))


def _listing(items: list[str]) -> str:
    return ", ".join(items)


@guard("strategy_defined", "what, with whom and why are recorded")
def strategy_defined(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    strategy = context.known.strategy(context.id)
    parts = {
        "the objective (what)": strategy.objective if strategy else "",
        "the stakeholders and buying centres (with whom)": strategy.stakeholders
        if strategy
        else "",
        "the rationale (why)": strategy.rationale if strategy else "",
    }
    missing = [label for label, value in parts.items() if not value.strip()]
    if missing:
        return False, (
            f"the strategy lacks {_listing(missing)}: "
            f"kamflow strategy set {context.typed} --objective ... --who ... --why ..."
        )
    return True, "the strategy says what, with whom and why"


class RolesParams(NoParams):
    roles: list[str] = Field(default_factory=lambda: list(defaults.ROLES), min_length=1)

    @field_validator("roles")
    @classmethod
    def known_roles(cls, roles: list[str]) -> list[str]:
        unknown = [role for role in roles if role not in defaults.ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(defaults.ROLES)})")
        return roles


@guard("roles_covered", "each listed account-team role is held by a person", RolesParams)
def roles_covered(context: GuardContext, params: RolesParams) -> tuple[bool, str]:
    held = context.known.roles(context.id)
    missing = [role for role in params.roles if role not in held]
    if missing:
        return False, (
            f"no one holds the role{'s' if len(missing) > 1 else ''} {_listing(missing)}: "
            f"kamflow role assign {context.typed} ROLE EMAIL"
        )
    return True, f"all {len(params.roles)} roles are held"


def _answered_ids(context: GuardContext) -> dict[str, AnswerFact]:
    return context.known.answers(context.id)


@guard("research_done", "every question category has an answer or a not-applicable mark")
def research_done(context: GuardContext, _: NoParams) -> tuple[bool, str]:
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
    return True, f"all {len(bank.categories)} question categories have answers"


class RequiredParams(NoParams):
    required: list[str] | None = Field(
        default=None,
        description="the question ids that must be answered (default: the bank's marks)",
    )

    def question_refs(self) -> list[tuple[str, str]]:
        return [("required", question) for question in self.required or []]


@guard(
    "plan_complete",
    "required questions answered, at least one action, every open action owned and dated",
    RequiredParams,
)
def plan_complete(context: GuardContext, _: RequiredParams) -> tuple[bool, str]:
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
    actions = context.known.actions(context.id)
    if not actions:
        problems.append(
            f"the plan has no action yet (kamflow action add {context.typed} TITLE "
            "--owner EMAIL --due YYYY-MM-DD)"
        )
    loose = [
        f"#{a.id}"
        for a in actions
        if a.status == ActionStatus.OPEN and (a.owner_id is None or a.due is None)
    ]
    if loose:
        problems.append(f"open actions without an owner or a due date: {_listing(loose)}")
    if problems:
        return False, "the account plan is not complete: " + "; ".join(problems)
    return True, f"the plan answers every required question and has {len(actions)} action(s)"


class CountParams(NoParams):
    at_least: int = Field(default=1, ge=1)


@guard("kpis_defined", "at least N KPIs with a target", CountParams)
def kpis_defined(context: GuardContext, params: CountParams) -> tuple[bool, str]:
    count = len(context.known.kpis(context.id))
    if count < params.at_least:
        return False, (
            f"{count} KPI{'s' if count != 1 else ''} defined, {params.at_least} needed "
            f"(kamflow kpi add {context.typed} KPI --target NUMBER)"
        )
    return True, f"{count} KPI{'s' if count != 1 else ''} with targets"


class SinceParams(NoParams):
    since: str | None = Field(
        default=None, description="the stage whose latest entry starts the period"
    )

    def stage_refs(self) -> list[tuple[str, str]]:
        return [("since", self.since)] if self.since else []


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


@guard(
    "kpis_recorded",
    "every KPI has a value recorded since the account entered the stage",
    SinceParams,
)
def kpis_recorded(context: GuardContext, params: SinceParams) -> tuple[bool, str]:
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


@guard(
    "kpis_reviewed",
    "a review conclusion written in this stage, and every KPI measured this cycle",
    SinceParams,
)
def kpis_reviewed(context: GuardContext, params: SinceParams) -> tuple[bool, str]:
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


# --- selection and the cap ---------------------------------------------------------------------


class ThresholdParams(NoParams):
    threshold: float | None = Field(
        default=None, ge=0, le=100, description="default: the threshold in portfolio.yaml"
    )


@guard("score_at_least", "the latest selection score reaches the threshold", ThresholdParams)
def score_at_least(context: GuardContext, params: ThresholdParams) -> tuple[bool, str]:
    from kamflow.definitions.selection import portfolio_config

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


def latest_score(account_id: Any) -> Any:
    """SQL: the most recent selection score of the account whose id is ``account_id`` (a
    column of the outer query), or NULL: one probe of the score index per account."""
    return (
        select(Score.total)
        .where(col(Score.account_id) == account_id)
        .order_by(col(Score.id).desc())
        .limit(1)
        .scalar_subquery()
    )


def _key_account_queries(
    session: Session, what: Any, *, owner_id: int | None, strict: bool
) -> list[Any]:
    """One query per workflow in use, for its accounts in a stage of the cycle."""
    from kamflow.definitions.workflow import workflows_in_use

    queries = []
    for definition in workflows_in_use(session, strict=strict):
        query = select(what).where(
            Account.workflow == definition.name, col(Account.stage).in_(definition.stage_names)
        )
        if owner_id is not None:
            query = query.where(Account.owner_id == owner_id)
        queries.append(query)
    return queries


def key_account_filter(session: Session, *, owner_id: int | None = None) -> Any:
    """SQL: the account is a key account (in a stage of the cycle of its workflow), of
    ``owner_id`` if given; a workflow that fails to load is an error, as for the counts."""
    from kamflow.definitions.workflow import workflows_in_use

    conditions = [
        sa.and_(
            col(Account.workflow) == definition.name, col(Account.stage).in_(definition.stage_names)
        )
        for definition in workflows_in_use(session, strict=True)
    ]
    found = sa.or_(sa.false(), *conditions)
    return found if owner_id is None else sa.and_(found, col(Account.owner_id) == owner_id)


def count_key_accounts(session: Session, *, owner_id: int | None = None) -> int:
    """How many key accounts there are (counted in SQL; a workflow that fails to load is an
    error here, since leaving its accounts out would let the cap be passed)."""
    return sum(
        session.exec(query).one()
        for query in _key_account_queries(session, func.count(), owner_id=owner_id, strict=True)
    )


#: How a within_cap verdict begins when a leader's override took the account over the cap.
OVERRIDDEN = "over the cap by leader override"


def overridden(verdicts: list[Verdict]) -> bool:
    """Whether a leader's override was what let these verdicts pass."""
    return any(v.guard == "within_cap" and v.message.startswith(OVERRIDDEN) for v in verdicts)


@guard("within_cap", "the organisation and the owner stay within the key-account cap")
def within_cap(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    from kamflow.definitions.selection import portfolio_config
    from kamflow.records.people import find_person

    cap = portfolio_config().cap
    account = context.account
    if context.override is not None:
        actor = find_person(context.session, context.actor)
        if actor is None or not actor.is_leader:
            return False, f"only a leader may override the key-account cap; you are {context.actor}"
    if context.session.get_bind().dialect.name == "postgresql":
        # Two promotions at once must not both take the last place: count under a lock held
        # until commit (SQLite lets one writer in at a time anyway).
        context.session.execute(sa.text("SELECT pg_advisory_xact_lock(4242002)"))
    is_key = account.id is not None and account.stage in context.workflow.stage_names
    everyone = count_key_accounts(context.session) - is_key
    owned = count_key_accounts(context.session, owner_id=account.owner_id) - is_key
    owner = context.session.get(Person, account.owner_id)
    owner_name = owner.email if owner else "the owner"
    over = []
    if everyone >= cap.organisation:
        over.append(
            f"the organisation already has {plural(everyone, 'key account')}, the cap is "
            f"{cap.organisation}: {_ranked(context.session, None, account)}"
        )
    if owned >= cap.per_owner:
        over.append(
            f"{owner_name} already owns {plural(owned, 'key account')}, the cap is "
            f"{cap.per_owner}: {_ranked(context.session, account.owner_id, account)}"
        )
    if over:
        if context.override is None:
            return False, "; ".join(over) + (
                " (swap one out with kamflow account swap OUT IN, or a leader may override "
                "with --override --reason TEXT)"
            )
        return Warn(f"{OVERRIDDEN} ({context.actor}: {context.override}): " + "; ".join(over))
    if owned + 1 >= cap.warn_per_owner:
        return Warn(
            f"{owner_name} will own {plural(owned + 1, 'key account')} "
            f"(the cap is {cap.per_owner}; kamflow warns from {cap.warn_per_owner})"
        )
    return True, (
        f"{everyone + 1} of {cap.organisation} key accounts, "
        f"{owned + 1} of {cap.per_owner} for {owner_name}"
    )


#: How many of the lowest-scored key accounts a cap refusal names.
RANKED_SHOWN = 5


def _ranked(session: Session, owner_id: int | None, leaving_out: AccountLike) -> str:
    """The key accounts, lowest-scored first (the first few), naming the lowest-scored one."""
    which = key_account_filter(session, owner_id=owner_id)
    if leaving_out.id is not None:
        which = sa.and_(which, col(Account.id) != leaving_out.id)
    score = latest_score(Account.id).label("score")
    lowest = session.execute(
        select(col(Account.name), score)
        .where(which)
        # Unscored first, as the lowest of all; then by score, then by name in any case.
        .order_by(func.coalesce(score, -1.0), func.lower(col(Account.name)))
        .limit(RANKED_SHOWN)
    ).all()
    if not lowest:
        return ""
    total = session.execute(select(func.count()).select_from(Account).where(which)).scalar_one()

    def label(name: str, value: float | None) -> str:
        return f"{name} (not scored)" if value is None else f"{name} ({value:g})"

    listing = ", ".join(label(name, total) for name, total in lowest)
    if total > RANKED_SHOWN:
        listing += f" and {total - RANKED_SHOWN} more"
    return f"{listing}; the lowest-scored is {label(*lowest[0])}"
