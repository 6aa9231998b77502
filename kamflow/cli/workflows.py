"""workflow list, show, validate: the process definitions, read from their files."""

from __future__ import annotations

import click

from kamflow.cli.base import app, emit_json, json_option, settings, table


@app.group()
def workflow() -> None:
    """The workflow definitions (the process as data)."""


@workflow.command("list")
@json_option
def workflow_list(as_json: bool) -> None:
    """List the available workflows."""
    from kamflow.definitions.discovery import catalogue

    rows = catalogue(settings().workflow_folders)
    if as_json:
        emit_json(rows)
    else:
        table(
            [(r["name"], r["title"], " -> ".join(r["stages"]), r["path"]) for r in rows],
            ["name", "title", "stages", "file"],
            widest={"stages": None},  # the whole process, however long
        )


@workflow.command("show")
@click.argument("name")
@click.option(
    "--format",
    "form",
    type=click.Choice(["text", "mermaid", "json"]),
    default="text",
    show_default=True,
    help="Plain text, a Mermaid state diagram, or JSON.",
)
@json_option
def workflow_show(name: str, form: str, as_json: bool) -> None:
    """Show a workflow's stages, limits and transitions with their guards."""
    from kamflow.definitions.discovery import get_workflow
    from kamflow.reports.render import render_workflow

    definition = get_workflow(name, settings().workflow_folders)
    if as_json or form == "json":
        emit_json(definition.spec.model_dump(by_alias=True))
    elif form == "mermaid":
        from kamflow.reports.diagram import mermaid

        click.echo(mermaid(definition))
    else:
        click.echo(render_workflow(definition))


@workflow.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def workflow_validate(file: str) -> None:
    """Check a workflow file (and its question bank); exit 1 naming every problem."""
    from pathlib import Path

    from kamflow.definitions.workflow import load_workflow
    from kamflow.text import plural

    definition = load_workflow(Path(file).resolve())
    calendar = settings().calendar  # a KAMFLOW_HOLIDAYS that names no known country fails here
    click.echo(
        f"{file} is valid: workflow {definition.name}, "
        f"{plural(len(definition.stage_names), 'stage')}, "
        f"{plural(len(definition.spec.transitions), 'transition')}, "
        f"{plural(len(definition.questions.questions), 'question')}."
    )
    if any(stage.business_days for stage in definition.spec.stages):
        skipped = (
            f"and the public holidays of {calendar.describe()}"
            if calendar.country
            else "only (KAMFLOW_HOLIDAYS names no country)"
        )
        click.echo(f"Its business days skip weekends {skipped}.")
