"""The question bank: the account plan's questions in eight categories, loaded from YAML."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from kamflow.definitions import specfile
from kamflow.definitions.specfile import Problem, Spec
from kamflow.errors import NotFound
from kamflow.text import did_you_mean

ID = r"^[a-z0-9][a-z0-9.-]*$"


class CategorySpec(Spec):
    """A category of the question bank: its id and its title."""

    id: str = Field(pattern=ID)
    title: str = Field(min_length=1)


class QuestionSpec(Spec):
    """A question of the account plan: its id, the id of its category, its text, a hint for whoever
    answers it, and whether the bank marks it required."""

    id: str = Field(pattern=ID)
    category: str
    text: str = Field(min_length=1)
    hint: str = ""
    required: bool = False


class QuestionBankSpec(Spec):
    """A question-bank file: the categories, and the questions, each in one of them."""

    categories: list[CategorySpec] = Field(min_length=1)
    questions: list[QuestionSpec] = Field(min_length=1)


def _check(spec: QuestionBankSpec) -> list[Problem]:
    problems: list[Problem] = []
    categories = {category.id for category in spec.categories}
    for index, count in _duplicates([c.id for c in spec.categories]):
        problems.append((("categories", index, "id"), f"id used {count} times"))
    for index, count in _duplicates([q.id for q in spec.questions]):
        problems.append((("questions", index, "id"), f"id used {count} times"))
    for index, question in enumerate(spec.questions):
        if question.category not in categories:
            problems.append(
                (
                    ("questions", index, "category"),
                    f"unknown category {question.category!r} "
                    f"(known: {', '.join(sorted(categories))})",
                )
            )
    used = {question.category for question in spec.questions}
    for index, category in enumerate(spec.categories):
        if category.id not in used:
            problems.append((("categories", index, "id"), "category has no questions"))
    return problems


def _duplicates(ids: Sequence[str]) -> list[tuple[int, int]]:
    counts = Counter(ids)
    seen: set[str] = set()
    found = []
    for index, value in enumerate(ids):
        if counts[value] > 1 and value in seen:
            found.append((index, counts[value]))
        seen.add(value)
    return found


@dataclass(frozen=True)
class QuestionBank:
    """The validated questions, in file order, with lookups by id and category."""

    path: Path
    categories: tuple[CategorySpec, ...]
    questions: tuple[QuestionSpec, ...]

    def question(self, question_id: str) -> QuestionSpec:
        """The question with the id ``question_id``; NotFound when the bank has none."""
        for question in self.questions:
            if question.id == question_id:
                return question
        suggestion = did_you_mean(question_id, (question.id for question in self.questions))
        if suggestion is None:
            raise NotFound(
                f"no question {question_id!r} in the plan "
                "(list them: kamflow plan questions ACCOUNT)"
            )
        raise NotFound(f"no question {question_id!r} in the plan; {suggestion}")

    def category_title(self, category_id: str) -> str:
        """The title of the category ``category_id`` (one of the bank's)."""
        return next(c.title for c in self.categories if c.id == category_id)

    @property
    def required(self) -> tuple[QuestionSpec, ...]:
        """The questions the bank marks required, in file order (a workflow may require others:
        `Workflow.required_questions`)."""
        return tuple(question for question in self.questions if question.required)


def load_bank(path: Path) -> QuestionBank:
    """Load and validate a question bank; raises InvalidWorkflow naming every problem."""
    return _load_bank(path, specfile.stamp(path))


@functools.lru_cache(maxsize=64)
def _load_bank(path: Path, _stamp: tuple[tuple[str, int], ...]) -> QuestionBank:
    spec = specfile.load(path, QuestionBankSpec, _check)
    return QuestionBank(path, tuple(spec.categories), tuple(spec.questions))
