"""Output written while its rows are read: a text table and a JSON array, a batch at a time.

The table looks like tabulate's "simple" format (headers in capitals are the caller's, a rule of
dashes, cells left-aligned, two blanks between columns, no trailing blanks), which needs every
row to size its columns. Here the widths are known before the first row: a listing that fits in
one batch is measured, exactly as tabulate would; a longer one takes the widths its query found
with SQL aggregates (each at least as wide as any cell it will hold).

Widths are terminal columns, not characters (株 takes two), so that East Asian names line up. No
column is wider than ``defaults.TABLE_CELL_WIDTH``, and a longer cell is cut there with an
ellipsis (as is a cell wider than its column for any other reason, so the columns always line
up); the last column alone is printed whole, since nothing comes after it on its line (a
question, a note).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from kamflow import defaults
from kamflow.text import display_width, shorten

#: A column is never narrower than its header plus this (as tabulate's simple format).
HEADER_PADDING = 2
GAP = "  "


@dataclass(frozen=True)
class Column:
    """A column of a streamed table: its header and the widest cell the data can give it."""

    header: str
    width: int = 0


def table_lines(
    columns: Sequence[Column],
    cells: Iterable[Sequence[Any]],
    *,
    batch: int | None = None,
    max_width: int | None = None,
) -> Iterator[list[str]]:
    """The table's lines, a batch at a time (``defaults.LISTING_BATCH`` rows unless told);
    ``(none)`` when there is no row. No column is wider than ``max_width`` (by default
    ``defaults.TABLE_CELL_WIDTH``) or its header; a longer cell is cut with an ellipsis, except
    in the last column."""
    size = batch or defaults.LISTING_BATCH
    limit = max_width or defaults.TABLE_CELL_WIDTH
    rows = iter(cells)
    first = [_cleaned(row) for row in islice(rows, size + 1)]
    if not first:
        yield ["(none)"]
        return
    complete = len(first) <= size
    widths = []
    for index, column in enumerate(columns):
        measured = max(display_width(row[index]) for row in first)
        known = 0 if complete else column.width
        header = display_width(column.header) + HEADER_PADDING
        widths.append(max(header, min(limit, max(measured, known))))
    line = _line_of(widths)
    rule = GAP.join("-" * width for width in widths)
    yield [line([c.header for c in columns]), rule, *(line(r) for r in first)]
    while True:
        more = [line(_cleaned(row)) for row in islice(rows, size)]
        if not more:
            return
        yield more


def _line_of(widths: list[int]) -> Callable[[list[str]], str]:
    """A function writing one line of the table: each cell padded on the right to its column's
    width, or cut to it with an ellipsis (the last column's cell stays whole); no blanks at the
    end."""
    # Plain ASCII that fits, the usual row, takes one format; anything else is measured.
    plain = GAP.join(f"{{:<{width}}}" for width in widths).format
    *cut, _ = range(len(widths))

    def line(cells: list[str]) -> str:
        if all(cell.isascii() for cell in cells) and all(
            len(cells[index]) <= widths[index] for index in cut
        ):
            return plain(*cells).rstrip()
        fitted = [_fit(cells[index], widths[index]) for index in cut]
        return GAP.join([*fitted, cells[-1]]).rstrip()

    return line


def _fit(cell: str, width: int) -> str:
    """A cell cut to ``width`` terminal columns if it is wider, then padded to it."""
    cell = shorten(cell, width)
    return cell + " " * (width - display_width(cell))


def _cleaned(row: Sequence[Any]) -> list[str]:
    return ["" if cell is None else str(cell).strip() for cell in row]


def json_array(items: Iterable[Any], *, batch: int = defaults.LISTING_BATCH) -> Iterator[str]:
    """``json.dumps(list(items), indent=2, ensure_ascii=False, default=str)`` in pieces, one
    batch of elements each, without holding the list."""
    pieces: list[str] = []
    empty = True
    for item in items:
        text = json.dumps(item, indent=2, ensure_ascii=False, default=str)
        # A JSON text has no raw line break inside a string, so every line can be indented.
        pieces.append(("[\n" if empty else ",\n") + "  " + text.replace("\n", "\n  "))
        empty = False
        if len(pieces) >= batch:
            yield "".join(pieces)
            pieces = []
    pieces.append("[]" if empty else "\n]")
    yield "".join(pieces)
