"""The guards a workflow file may name: each one's description and the parameters it takes.

This is the vocabulary of the definitions, checked when a workflow is loaded; what each guard
does with an account lives in `kamflow.guards`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kamflow import defaults


class NoParams(BaseModel):
    """A guard that takes no parameters (and the base of those that do)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def stage_refs(self) -> list[tuple[str, str]]:
        """(parameter, stage name) pairs the workflow must know."""
        return []

    def question_refs(self) -> list[tuple[str, str]]:
        """(parameter, question id) pairs the question bank must know."""
        return []


class RolesParams(NoParams):
    """roles_covered: the roles that must be held (all six by default)."""

    roles: list[str] = Field(default_factory=lambda: list(defaults.ROLES), min_length=1)

    @field_validator("roles")
    @classmethod
    def known_roles(cls, roles: list[str]) -> list[str]:
        """Refuse a role that is not one of the six account-team roles."""
        unknown = [role for role in roles if role not in defaults.ROLES]
        if unknown:
            raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(defaults.ROLES)})")
        return roles


class RequiredParams(NoParams):
    """plan_complete: the questions that must be answered, if not the bank's required ones."""

    required: list[str] | None = Field(
        default=None,
        description="the question ids that must be answered (default: the bank's marks)",
    )

    def question_refs(self) -> list[tuple[str, str]]:
        """(``required``, question id) for each question ``required`` lists."""
        return [("required", question) for question in self.required or []]


class CountParams(NoParams):
    """kpis_defined: how many KPIs with a target there must be."""

    at_least: int = Field(default=1, ge=1)


class SinceParams(NoParams):
    """kpis_recorded, kpis_reviewed: the stage whose latest entry starts the period."""

    since: str | None = Field(
        default=None, description="the stage whose latest entry starts the period"
    )

    def stage_refs(self) -> list[tuple[str, str]]:
        """(``since``, stage name) when ``since`` names a stage."""
        return [("since", self.since)] if self.since else []


class ThresholdParams(NoParams):
    """score_at_least: the threshold, if not portfolio.yaml's."""

    threshold: float | None = Field(
        default=None, ge=0, le=100, description="default: the threshold in portfolio.yaml"
    )


@dataclass(frozen=True)
class KnownGuard:
    """A guard as the definitions know it: what it checks and the parameters it takes."""

    name: str
    description: str
    params: type[NoParams] = NoParams


#: Every guard a workflow may name, by name.
SPECS: dict[str, KnownGuard] = {
    spec.name: spec
    for spec in (
        KnownGuard("strategy_defined", "what, with whom and why are recorded"),
        KnownGuard(
            "roles_covered", "each listed account-team role is held by a person", RolesParams
        ),
        KnownGuard(
            "research_done", "every question category has an answer or a not-applicable mark"
        ),
        KnownGuard(
            "plan_complete",
            "required questions answered, at least one action, every open action owned and dated",
            RequiredParams,
        ),
        KnownGuard("kpis_defined", "at least N KPIs with a target", CountParams),
        KnownGuard(
            "kpis_recorded",
            "every KPI has a value recorded since the account entered the stage",
            SinceParams,
        ),
        KnownGuard(
            "kpis_reviewed",
            "a review conclusion written in this stage, and every KPI measured this cycle",
            SinceParams,
        ),
        KnownGuard(
            "score_at_least", "the latest selection score reaches the threshold", ThresholdParams
        ),
        KnownGuard("within_cap", "the organisation and the owner stay within the key-account cap"),
    )
}
#: The guard that counts key accounts: the engine locks and counts before it judges.
WITHIN_CAP = "within_cap"
#: The guard that reads the review's conclusion: a review counts only where a move has it.
KPIS_REVIEWED = "kpis_reviewed"
