"""Jinja2 templates shipped in the package: HTML autoescaped, undefined variables are errors."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamflow.text import format_number, plural

if TYPE_CHECKING:
    import jinja2

FOLDER = Path(__file__).resolve().parent.parent / "templates"

#: The colour of each status wherever kamflow draws one: the HTML report and the HTML mails.
STATUS_COLOURS = {
    "on_track": "#3a8f5c",
    "behind": "#d89a1c",
    "stuck": "#c0392b",
    "snoozed": "#6c5b9e",
    "candidate": "#7f8c8d",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the shipped templates (made once per process): HTML autoescaped,
    undefined variables are errors, numbers written by the ``number`` filter, counts with their
    noun by the ``plural`` filter (``{{ days | plural("day") }}``), and the status colours known
    to every template."""
    import jinja2  # here, so that the status colours cost no import of Jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(FOLDER),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # shipped templates: no need to look at the files again per message
    )
    env.filters["number"] = format_number
    env.globals["status_colours"] = STATUS_COLOURS
    env.filters["plural"] = plural
    return env


def render(name: str, **context: Any) -> tuple[str, str]:
    """The plain-text and HTML bodies of template ``name`` (``name.txt`` and ``name.html``)."""
    env = environment()
    return (
        env.get_template(f"{name}.txt").render(**context),
        env.get_template(f"{name}.html").render(**context),
    )
