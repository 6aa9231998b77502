"""Small text rules shared by every part of kamflow."""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

from kamflow import defaults
from kamflow.errors import InvalidInput

#: The longest one-line text kamflow stores (names, titles, reasons stay well below it).
MAX_LINE = 2000
#: Limits the database enforces on some fields (PostgreSQL checks them; SQLite would not).
MAX_NAME = 200
MAX_EMAIL = 320
MAX_TITLE = 500
MAX_LABEL = 50
#: How much of a value an error message repeats (a setting can hold thousands of characters).
MAX_ECHO = 60


def one_line(text: str) -> str:
    """Blanks, tabs and line breaks folded into single spaces, none at the ends."""
    return " ".join(text.split())


def clean_text(text: str, what: str, *, required: bool = True, max_length: int = MAX_LINE) -> str:
    """One line of text; refused when required and empty, or longer than ``max_length``."""
    cleaned = one_line(text)
    if any(not ch.isprintable() for ch in cleaned):
        raise InvalidInput(f"{what} contains a control character")
    if required and not cleaned:
        raise InvalidInput(f"{what} must not be empty")
    if len(cleaned) > max_length:
        raise InvalidInput(f"{what} is too long ({len(cleaned)} characters, at most {max_length})")
    return cleaned


def quoted(value: str) -> str:
    """A value a user gave, quoted as an error message repeats it: whole when short, else its
    first MAX_ECHO characters, ``...`` and its length."""
    if len(value) <= MAX_ECHO:
        return repr(value)
    return f"{value[:MAX_ECHO]!r}... ({len(value)} characters)"


def shell_quote(word: str) -> str:
    """A word as it can be pasted into a shell command safely (an account name, say)."""
    return shlex.quote(word)


def first_line(error: BaseException) -> str:
    """An error as one line: its message's first line, or its type when it has no message."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def plural(count: int, noun: str, many: str | None = None, *, grouped: bool = False) -> str:
    """A count with its noun: ``1 day``, ``3 days``; ``many`` for a noun that does not just take
    an ``s`` (``plural(2, "category", "categories")``); ``grouped`` writes the count with
    thousands separators (``1,200 accounts``), as the HTML report shows counts."""
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {noun if count == 1 else many or noun + 's'}"


#: What ends a text cut short to fit a table's column.
ELLIPSIS = "\u2026"


def display_width(text: str) -> int:
    """How many terminal columns ``text`` takes: two for an East Asian wide character (株),
    none for a combining mark, as wcwidth counts them."""
    if text.isascii():
        return len(text)
    from wcwidth import width  # only output that is not plain ASCII pays for it

    return int(width(text))


def shorten(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` terminal columns, ending in an ellipsis when it was
    cut; a wide character or a letter with its accents is never split."""
    if display_width(text) <= columns:
        return text
    from wcwidth import iter_graphemes

    kept: list[str] = []
    used = 0
    for grapheme in iter_graphemes(text):
        used += display_width(grapheme)
        if used > columns - len(ELLIPSIS):
            break
        kept.append(grapheme)
    return "".join(kept).rstrip() + ELLIPSIS


def days_text(days: int, limit: int | None, business: bool = False) -> str:
    """Days in a stage against its limit (``22/14``; ``3/5 bd`` for business days), or the days
    alone where there is none."""
    if not limit:
        return str(days)
    return f"{days}/{limit} bd" if business else f"{days}/{limit}"


def score_text(score: float | None) -> str:
    """A selection score as the tables show it (``62.5``), or ``-`` for none yet."""
    return "-" if score is None else f"{score:g}"


def format_number(value: float) -> str:
    """1800000.0 -> 1,800,000; 3.5 -> 3.5."""
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.10g}"


def folder_list(text: str | None) -> tuple[Path, ...]:
    """Folders listed as PATH lists them (``a:b`` on POSIX), in order; empty parts are dropped."""
    return tuple(Path(part) for part in (text or "").split(os.pathsep) if part)


def did_you_mean(wanted: str, known: Iterable[str]) -> str | None:
    """The names of ``known`` closest to ``wanted`` (in any case), as ``did you mean Revenue?``
    or ``did you mean A or B?``: the closest one, and any others nearly as close; None when none
    is close enough. Meant for the few hundred names at most that a lookup gathers."""
    key = one_line(wanted).lower()
    matcher = difflib.SequenceMatcher(b=key)
    scores: dict[str, float] = {}
    for name in known:
        matcher.set_seq1(name.lower())
        if name.lower() != key:
            scores[name] = matcher.ratio()
    ranked = sorted(
        (name for name, score in scores.items() if score >= defaults.SUGGESTION_CUTOFF),
        key=lambda name: (-scores[name], name),
    )
    if not ranked:
        return None
    best = scores[ranked[0]]
    names = [n for n in ranked if scores[n] >= best - defaults.SUGGESTION_MARGIN]
    names = names[: defaults.SUGGESTIONS]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"did you mean {listed}?"
