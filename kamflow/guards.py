"""Named guards: each checks one condition of a stage change and explains itself in a sentence."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session, col, func, select

from kamflow import defaults
from kamflow.models import (
    Account,
    Action,
    ActionStatus,
    Answer,
    HistoryEntry,
    HistoryKind,
    Kpi,
    KpiValue,
    Review,
    RoleAssignment,
    Strategy,
)

if TYPE_CHECKING:
    from kamflow.workflow import Workflow


@dataclass(frozen=True)
class Verdict:
    """One guard's answer: met or not, and a sentence saying why."""

    guard: str
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdicts_json(verdicts: list[Verdict]) -> str:
    return json.dumps([verdict.as_dict() for verdict in verdicts])


@dataclass
class GuardContext:
    """What a guard may look at: the account (as read in this transaction) and the time."""

    session: Session
    account: Account
    workflow: Workflow
    now: datetime

    def entered_at(self, stage: str) -> datetime | None:
        """When the account last entered ``stage`` (its current one, or an earlier one)."""
        if stage == self.account.stage:
            return self.account.stage_entered_at
        return self.session.exec(
            select(func.max(HistoryEntry.at)).where(
                HistoryEntry.account_id == self.account.id,
                HistoryEntry.to_stage == stage,
                col(HistoryEntry.kind).in_([HistoryKind.TRANSITION, HistoryKind.CREATED]),
            )
        ).one()


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def stage_refs(self) -> list[tuple[str, str]]:
        """(parameter, stage name) pairs the workflow must know."""
        return []


CheckFn = Callable[[GuardContext, Any], tuple[bool, str]]


@dataclass(frozen=True)
class Guard:
    name: str
    description: str
    params: type[NoParams]
    check: CheckFn

    def evaluate(self, context: GuardContext, params: NoParams) -> Verdict:
        ok, message = self.check(context, params)
        return Verdict(self.name, ok, message)


REGISTRY: dict[str, Guard] = {}


def guard(
    name: str, description: str, params: type[NoParams] = NoParams
) -> Callable[[CheckFn], CheckFn]:
    """Register a guard under ``name``; workflow files refer to it by that name."""

    def register(check: CheckFn) -> CheckFn:
        REGISTRY[name] = Guard(name, description, params, check)
        return check

    return register


def _listing(items: list[str]) -> str:
    return ", ".join(items)


@guard("strategy_defined", "what, with whom and why are recorded")
def strategy_defined(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    strategy = context.session.get(Strategy, context.account.id)
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
            f"kamflow strategy set {_quoted(context)} --objective ... --who ... --why ..."
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
    held = set(
        context.session.exec(
            select(RoleAssignment.role).where(RoleAssignment.account_id == context.account.id)
        ).all()
    )
    missing = [role for role in params.roles if role not in held]
    if missing:
        return False, (
            f"no one holds the role{'s' if len(missing) > 1 else ''} {_listing(missing)}: "
            f"kamflow role assign {_quoted(context)} ROLE EMAIL"
        )
    return True, f"all {len(params.roles)} roles are held"


def _answered_ids(context: GuardContext) -> dict[str, Answer]:
    answers = context.session.exec(
        select(Answer).where(Answer.account_id == context.account.id)
    ).all()
    return {answer.question_id: answer for answer in answers}


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


@guard(
    "plan_complete",
    "required questions answered, at least one action, every open action owned and dated",
)
def plan_complete(context: GuardContext, _: NoParams) -> tuple[bool, str]:
    bank = context.workflow.questions
    answered = _answered_ids(context)
    problems = []
    unanswered = [
        q.id
        for q in bank.required
        if q.id not in answered or answered[q.id].not_applicable or not answered[q.id].text
    ]
    if unanswered:
        problems.append(
            f"{len(unanswered)} required question{'s are' if len(unanswered) > 1 else ' is'} "
            f"unanswered ({_listing(unanswered)})"
        )
    actions = context.session.exec(
        select(Action).where(Action.account_id == context.account.id)
    ).all()
    if not actions:
        problems.append(
            f"the plan has no action yet (kamflow action add {_quoted(context)} TITLE "
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
    count = context.session.exec(
        select(func.count()).select_from(Kpi).where(Kpi.account_id == context.account.id)
    ).one()
    if count < params.at_least:
        return False, (
            f"{count} KPI{'s' if count != 1 else ''} defined, {params.at_least} needed "
            f"(kamflow kpi add {_quoted(context)} KPI --target NUMBER)"
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
    kpis = context.session.exec(select(Kpi).where(Kpi.account_id == context.account.id)).all()
    if not kpis:
        return None
    latest = dict(
        context.session.exec(
            select(KpiValue.kpi_id, func.max(KpiValue.recorded_at))
            .where(col(KpiValue.kpi_id).in_([k.id for k in kpis]))
            .group_by(col(KpiValue.kpi_id))
        ).all()
    )
    missing = []
    for kpi in kpis:
        when = latest.get(kpi.id) if kpi.id is not None else None
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
            f"(kamflow kpi record {_quoted(context)} KPI VALUE)"
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
    written = context.session.exec(
        select(func.count())
        .select_from(Review)
        .where(
            Review.account_id == context.account.id,
            Review.written_at >= context.account.stage_entered_at,
        )
    ).one()
    if not written:
        problems.append(
            "no review conclusion written yet in this stage "
            f"(kamflow kpi review {_quoted(context)} --conclusion TEXT)"
        )
    if problems:
        return False, "the KPIs are not reviewed: " + "; ".join(problems)
    return True, "the KPIs are measured and the review's conclusion is written"


def _quoted(context: GuardContext) -> str:
    name = context.account.name
    return name if name.replace("-", "").replace("_", "").isalnum() else f'"{name}"'
