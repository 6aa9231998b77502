"""Choosing key accounts: the eight-factor score, the promotion threshold and the cap.

Weights, threshold and caps are configuration (``workflows/portfolio.yaml``), validated on load.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from kamflow.definitions import specfile
from kamflow.definitions.spec import Right, checked_rules
from kamflow.definitions.specfile import Problem, Spec
from kamflow.errors import InvalidInput, NotFound

#: The eight selection factors of KAM.md, in the order kamflow shows them.
FACTORS = ("revenue", "growth", "renewal", "win_now", "effort", "relationship", "fit", "logo")
FACTOR_TITLES = {
    "revenue": "current revenue",
    "growth": "growth potential",
    "renewal": "renewal likelihood",
    "win_now": "win now, grow later",
    "effort": "relative effort",
    "relationship": "relationship strength",
    "fit": "fit",
    "logo": "logo appeal",
}
CONFIG_FILE = "portfolio.yaml"


class SelectionSpec(Spec):
    """How candidates are scored (``selection`` in portfolio.yaml): the weight of each of the eight
    factors (they add up to 100), the factors that count in reverse (a high effort counts against),
    and the score a candidate needs to be promoted (0 to 100)."""

    weights: dict[str, float]
    inverted: list[str] = Field(default_factory=lambda: ["effort"])
    threshold: float = Field(default=60, ge=0, le=100)

    @model_validator(mode="after")
    def factors_known(self) -> SelectionSpec:
        """Refuse an unknown factor, a missing or negative weight, and weights that do not add up to
        100."""
        named = set(self.weights) | set(self.inverted)
        unknown = sorted(named - set(FACTORS))
        if unknown:
            raise ValueError(f"unknown factor {unknown[0]!r} (factors: {', '.join(FACTORS)})")
        missing = [f for f in FACTORS if f not in self.weights]
        if missing:
            raise ValueError(f"no weight for {', '.join(missing)}")
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError("weights must not be negative")
        if abs(sum(self.weights.values()) - 100) > 1e-9:
            raise ValueError(f"the weights add up to {sum(self.weights.values()):g}, not 100")
        return self


class CapSpec(Spec):
    """How many key accounts there may be (``cap`` in portfolio.yaml): in the organisation, per
    owner, and the number per owner from which a new one comes with a warning."""

    organisation: int = Field(default=20, ge=1)
    per_owner: int = Field(default=5, ge=1)
    warn_per_owner: int = Field(default=3, ge=1)


class PortfolioSpec(Spec):
    """portfolio.yaml: how candidates are scored, the key-account cap, and who may do what (over
    kamflow's defaults; a workflow's own rules go over these for its accounts)."""

    selection: SelectionSpec
    cap: CapSpec = Field(default_factory=CapSpec)
    permissions: dict[Right, list[str]] = Field(default_factory=dict)

    @field_validator("permissions", mode="before")
    @classmethod
    def known_rights(cls, value: Any) -> Any:
        """Every right, naming known subjects."""
        return checked_rules(value, tuple(Right))


def _check(spec: PortfolioSpec) -> list[Problem]:
    if spec.cap.warn_per_owner > spec.cap.per_owner:
        return [(("cap", "warn_per_owner"), "must not be more than per_owner")]
    return []


def _load(path: Path) -> PortfolioSpec:
    return _load_stamped(path, specfile.stamp(path))


@functools.lru_cache(maxsize=16)
def _load_stamped(path: Path, _stamp: tuple[tuple[str, int], ...]) -> PortfolioSpec:
    return specfile.load(path, PortfolioSpec, _check)


def portfolio_config() -> PortfolioSpec:
    """The first portfolio.yaml on the workflow search path (KAMFLOW_WORKFLOWS, then shipped)."""
    from kamflow.definitions.discovery import search_path

    for folder in search_path():
        path = folder / CONFIG_FILE
        if path.is_file():
            return _load(path)
    raise NotFound(f"no {CONFIG_FILE} found in the workflow folders")


@dataclass(frozen=True)
class Scoring:
    """One scoring of a candidate: the eight values (1-5) and the weighted score (0-100)."""

    values: dict[str, int]
    total: float


def parse_factor(name: str, value: Any) -> int:
    """A factor's value as a whole number from 1 to 5, or a clear error naming the factor."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number from 1 to 5, not {value!r}") from None
    if not 1 <= number <= 5:
        raise InvalidInput(f"{name} must be from 1 to 5, not {number}")
    return number


def score(values: dict[str, Any], config: SelectionSpec) -> Scoring:
    """Weight x (value - 1) / 4 per factor, the inverted ones reversed, summed: 0 to 100."""
    missing = [f for f in FACTORS if f not in values or values[f] is None]
    if missing:
        raise InvalidInput(f"a score needs all eight factors; missing: {', '.join(missing)}")
    parsed = {f: parse_factor(f.replace("_", "-"), values[f]) for f in FACTORS}
    total = 0.0
    for factor, value in parsed.items():
        share = (5 - value) / 4 if factor in config.inverted else (value - 1) / 4
        total += config.weights[factor] * share
    return Scoring(parsed, round(total, 6))  # no float noise, no rounding that moves a decision
