"""Output written while its rows are read: a text table and a JSON array, a batch at a time.

The table looks like tabulate's "simple" format (headers in capitals are the caller's, a rule of
dashes, cells left-aligned, two blanks between columns, no trailing blanks), which needs every
row to size its columns. Here the widths are known before the first row: a listing that fits in
one batch is measured, exactly as tabulate would; a longer one takes the widths its query found
with SQL aggregates (each at least as wide as any cell it will hold).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from kamflow import defaults

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
    batch: int = defaults.LISTING_BATCH,
) -> Iterator[list[str]]:
    """The table's lines, a batch at a time; ``(none)`` when there is no row."""
    rows = iter(cells)
    first = [_cleaned(row) for row in islice(rows, batch + 1)]
    if not first:
        yield ["(none)"]
        return
    complete = len(first) <= batch
    widths = []
    for index, column in enumerate(columns):
        measured = max(len(row[index]) for row in first)
        known = 0 if complete else column.width
        widths.append(max(len(column.header) + HEADER_PADDING, measured, known))
    # One format for every line: each cell padded on the right to its column's width.
    line = GAP.join(f"{{:<{width}}}" for width in widths).format
    rule = GAP.join("-" * width for width in widths)
    yield [line(*(c.header for c in columns)).rstrip(), rule, *(line(*r).rstrip() for r in first)]
    while True:
        more = [line(*_cleaned(row)).rstrip() for row in islice(rows, batch)]
        if not more:
            return
        yield more


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
