"""person add, list, edit, deactivate, activate: the people who own accounts, hold roles or lead."""

from __future__ import annotations

import click

from kamflow.cli.base import (
    act,
    app,
    emit_json,
    json_option,
    now,
    override_options,
    print_warnings,
    read,
    table,
)


@app.group()
def person() -> None:
    """Add, list and correct people (owners, team members, leaders)."""


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
    """List people (a deactivated person shows as inactive)."""
    from kamflow.records.people import list_people

    people = read(list_people)
    if as_json:
        emit_json(people)
    else:
        table(
            [
                (p["email"], p["name"], "yes" if p["leader"] else "", "" if p["active"] else "no")
                for p in people
            ],
            ["email", "name", "leader", "active"],
        )


@person.command("edit")
@click.argument("email")
@click.option("--name", default=None, help="The corrected full name.")
@click.option(
    "--leader/--no-leader", default=None, help="Part of leadership (receives escalations) or not."
)
def person_edit(email: str, name: str | None, leader: bool | None) -> None:
    """Correct a person's name, or whether they are a leader (at least one change)."""
    from kamflow.records.people import edit_person

    edited, changes = read(edit_person, email, name=name, leader=leader)
    click.echo(f"{edited.email}: {'; '.join(changes)}.")


@person.command("deactivate")
@click.argument("email")
@click.option(
    "--reassign-to",
    "successor",
    metavar="EMAIL",
    help="Pass every account and open action they own to this active person first.",
)
@override_options
@json_option
def person_deactivate(
    email: str, successor: str | None, override: str | None, as_json: bool
) -> None:
    """Deactivate a person who left: they receive no more mail, and cannot be made owner or
    role holder. Without --reassign-to, what they still own is listed as a warning by
    `kamflow status` and `kamflow account show`."""
    from kamflow.records.people import deactivate
    from kamflow.text import plural

    done = act(deactivate, email, reassign_to=successor, override=override)
    if as_json:
        emit_json(done.as_dict())
    elif done.successor is None:
        click.echo(f"{done.email} is deactivated: they receive no more mail.")
    else:
        click.echo(
            f"{done.email} is deactivated; {plural(done.accounts_passed, 'account')} and "
            f"{plural(done.actions_passed, 'open action')} passed to {done.successor}."
        )
    print_warnings(done.verdicts)
    if done.accounts_kept or done.actions_kept:
        click.echo(
            f"Warning: {done.email} still owns {plural(done.accounts_kept, 'account')} and "
            f"{plural(done.actions_kept, 'open action')}, of which nobody is reminded "
            f"(pass them on: kamflow person deactivate {done.email} --reassign-to EMAIL)",
            err=True,
        )


@person.command("activate")
@click.argument("email")
def person_activate(email: str) -> None:
    """Make a deactivated person active again."""
    from kamflow.records.people import activate

    back = read(activate, email)
    click.echo(f"{back.email} is active again.")
