"""Listings printed while their rows are read look as they did when printed whole.

The tables the portfolio commands print used to come from tabulate ("simple" format, numbers not
re-parsed) and their --json from one json.dumps of the whole list; a short listing must print the
very same text, and a long one stay aligned without holding its rows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tabulate import tabulate

from kamflow.reports.streaming import Column, json_array, table_lines

HEADERS = ["#", "ACCOUNT", "KIND", "SCORE", "ABOVE THRESHOLD", "OWNER"]
ROWS: list[tuple[Any, ...]] = [
    (1, "Acme Corp", "key account", "87.5", "yes", "owner@example.com"),
    (2, "A&B <Co>", "candidate", "-", "", "engineer@example.com"),
    (10, "Blue Harbor Foods", "key account", "1,800,000", None, "o@example.com"),
    (11, "Ünïcode Gesellschaft mbH", "candidate", "62.5", "", "lead@example.com"),
]


def printed(lines: list[list[str]]) -> str:
    return "\n".join(line for batch in lines for line in batch)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_a_short_table_is_the_one_tabulate_printed(count: int) -> None:
    rows = ROWS[:count]
    expected = tabulate(rows, headers=HEADERS, tablefmt="simple", disable_numparse=True)
    columns = [Column(header) for header in HEADERS]

    assert printed(list(table_lines(columns, rows))) == expected


def test_a_table_with_wide_characters_is_the_one_tabulate_printed_with_wcwidth() -> None:
    rows = [*ROWS, (12, "株式会社サンプル", "key account", "70", "yes", "山田@example.com")]
    expected = tabulate(rows, headers=HEADERS, tablefmt="simple", disable_numparse=True)
    columns = [Column(header) for header in HEADERS]

    assert printed(list(table_lines(columns, rows))) == expected


def test_a_cell_wider_than_the_limit_is_cut_with_an_ellipsis_but_in_the_last_column() -> None:
    rows = [("株式会社サンプル商事株式会社", "Acme " * 5, "a note that is longer than ten")]
    columns = [Column("ACCOUNT"), Column("OTHER"), Column("NOTE")]

    lines = printed(list(table_lines(columns, rows, max_width=10))).splitlines()

    assert lines == [
        "ACCOUNT     OTHER       NOTE",
        "----------  ----------  ----------",
        "株式会社…   Acme Acme…  a note that is longer than ten",  # 株 takes two columns
    ]


def test_a_table_longer_than_a_batch_stays_aligned_on_the_widths_given() -> None:
    columns = [Column("#", 3), Column("ACCOUNT", 30), Column("OWNER", 25)]
    rows = [(i, f"Account {i}" + "x" * (i % 7), f"owner{i}@example.com") for i in range(1, 120)]

    batches = list(table_lines(columns, rows, batch=10))

    assert len(batches) == 12  # header, rule and the first batch; then a batch at a time
    lines = printed(batches).splitlines()
    assert len(lines) == 2 + len(rows)
    starts = [0, 5, 5 + 30 + 2]
    assert lines[1] == "  ".join("-" * width for width in (3, 30, 25))
    for line, (i, name, owner) in zip(lines[2:], rows, strict=True):
        assert [line[start:].split("  ")[0] for start in starts] == [str(i), name, owner]


def test_no_row_prints_none() -> None:
    assert list(table_lines([Column("ACCOUNT")], [])) == [["(none)"]]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_json_array_printed_element_by_element_is_the_one_dumped_whole(count: int) -> None:
    items = [
        {"name": "Acme Corp", "score": 87.5, "roles": {"innovator": ["a@example.com"]}},
        {"name": "Ünïcode <&>", "score": None, "roles": {}, "gaps": []},
        {"name": 'Quote " and \\ backslash', "when": "2027-01-04T09:00:00+00:00"},
    ][:count]

    text = "".join(json_array(iter(items), batch=2))

    assert text == json.dumps(items, indent=2, ensure_ascii=False, default=str)
