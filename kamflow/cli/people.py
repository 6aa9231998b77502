"""person add, person list: the people who own accounts, hold roles or lead."""

from __future__ import annotations

import click

from kamflow.cli.base import app, emit_json, json_option, now, read, table


@app.group()
def person() -> None:
    """Add and list people (owners, team members, leaders)."""


@person.command("add")
@click.argument("email")
@click.option("--name", default="", help="Full name.")
@click.option("--leader", is_flag=True, help="Part of leadership: receives escalations.")
def person_add(email: str, name: str, leader: bool) -> None:
    """Add a person by email."""
    from kamflow.records.people import add_person

    added = read(add_person, email, name=name, leader=leader, now=now())
    click.echo(f"Added {added.email}{' (leader)' if added.is_leader else ''}.")


@person.command("list")
@json_option
def person_list(as_json: bool) -> None:
    """List people."""
    from kamflow.records.people import list_people

    people = read(list_people)
    if as_json:
        emit_json(people)
    else:
        table(
            [(p["email"], p["name"], "yes" if p["leader"] else "") for p in people],
            ["email", "name", "leader"],
        )
