"""Reading the text tables kamflow prints, by display column (a wide character takes two)."""

from __future__ import annotations

import re

from wcwidth import wcwidth


def placed(line: str) -> list[tuple[int, str]]:
    """Each character of ``line`` with the display column it starts at."""
    found = []
    column = 0
    for char in line:
        found.append((column, char))
        column += max(wcwidth(char), 0)
    return found


def spans(rule: str) -> list[tuple[int, int]]:
    """The (start, end) display columns of each column, from the table's rule of dashes."""
    return [(match.start(), match.end()) for match in re.finditer(r"-+", rule)]


def table_of(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """A table's column spans and its lines (the header first, then the rows, without the rule),
    up to the first blank line (a command may print a summary after its table)."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(line)
    return spans(lines[rule]), [lines[rule - 1], *rows]


def cells(text: str) -> list[list[str]]:
    """The header and rows of a table, each cut into its cells at the display columns of the
    rule's dashes."""
    columns, lines = table_of(text)
    ends = [end for _, end in columns[:-1]] + [10**6]
    return [
        [
            "".join(char for at, char in placed(line) if start <= at < end).strip()
            for (start, _), end in zip(columns, ends, strict=True)
        ]
        for line in lines
    ]


def misaligned(text: str) -> list[str]:
    """The lines of a table whose cells do not start where their column does: two blanks must
    come before each column and no character may straddle its start."""
    columns, lines = table_of(text)
    wrong = []
    for line in lines:
        starts = dict(placed(line))
        for start, _ in columns[1:]:
            before = [starts.get(start - 2), starts.get(start - 1)]
            if start < max(starts, default=0) and (before != [" ", " "] or start not in starts):
                wrong.append(line)
                break
    return wrong
