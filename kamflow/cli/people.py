"""person add, list, edit, deactivate, activate: the people who own accounts, hold roles or lead."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kamflow.cli.base import (
    act_with,
    app,
    emit_json,
    json_option,
    now,
    override_options,
    print_warnings,
    read,
    table,
)

if TYPE_CHECKING:
    from sqlmodel import Session

    from kamflow.models import Person


@app.group()
def person() -> None:
    """Add, list and correct people (owners, team members, leaders, admins) and their logins."""


@person.command("add")
@click.argument("email")
@click.option("--name", default="", help="Full name.")
@click.option("--leader", is_flag=True, help="Part of leadership: receives escalations.")
@click.option("--admin", is_flag=True, help="Manages people and may act for others (--as).")
@click.option(
    "--login",
    metavar="NAME",
    help="The login they sign in with (PostgreSQL role; on SQLite the OS user).",
)
def person_add(email: str, name: str, leader: bool, admin: bool, login: str | None) -> None:
    """Add a person by email (admins only)."""
    from kamflow.records.people import add_person, normalise_email

    def add(session: Session, actor: str) -> Person:
        address = normalise_email(email)
        signs_in = login
        if signs_in is None and getattr(actor, "founder", False) and str(actor) == address:
            # The login that created the database names itself: it becomes this person.
            signs_in = getattr(actor, "login", None)
        return add_person(
            session, address, name=name, leader=leader, admin=admin, login=signs_in, now=now()
        )

    added = act_with("people", add)
    held = [word for word, yes in (("leader", added.is_leader), ("admin", added.is_admin)) if yes]
    what = f" ({', '.join(held)})" if held else ""
    signs_in = f", signs in as {added.login}" if added.login else ""
    click.echo(f"Added {added.email}{what}{signs_in}.")


@person.command("link")
@click.argument("email")
@click.argument("login")
def person_link(email: str, login: str) -> None:
    """Link a login to a person: whoever signs in as LOGIN acts as them (admins only)."""
    from kamflow.records.people import link

    linked, before = act_with("people", lambda session, _actor: link(session, email, login))
    was = f" (was {before})" if before else ""
    admin = " (admin)" if linked.is_admin else ""
    click.echo(f"{linked.email}{admin} signs in as {linked.login}{was}.")


@person.command("unlink")
@click.argument("email")
def person_unlink(email: str) -> None:
    """Unlink a person's login: it may not change anything any more (admins only)."""
    from kamflow.records.people import link

    unlinked, before = act_with("people", lambda session, _actor: link(session, email, None))
    click.echo(f"{unlinked.email} no longer signs in as {before}.")


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
                (
                    p["email"],
                    p["name"],
                    "yes" if p["leader"] else "",
                    "yes" if p["admin"] else "",
                    p["login"] or "",
                    "" if p["active"] else "no",
                )
                for p in people
            ],
            ["email", "name", "leader", "admin", "login", "active"],
        )


@person.command("edit")
@click.argument("email")
@click.option("--name", default=None, help="The corrected full name.")
@click.option(
    "--leader/--no-leader", default=None, help="Part of leadership (receives escalations) or not."
)
@click.option(
    "--admin/--no-admin", default=None, help="Manages people and may act for others, or not."
)
def person_edit(email: str, name: str | None, leader: bool | None, admin: bool | None) -> None:
    """Correct a person's name, whether they are a leader or an admin (admins only)."""
    from kamflow.records.people import edit_person

    edited, changes = act_with(
        "people",
        lambda session, _actor: edit_person(session, email, name=name, leader=leader, admin=admin),
    )
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

    done = act_with(
        "people",
        lambda session, actor: deactivate(
            session, email, reassign_to=successor, override=override, actor=actor, now=now()
        ),
    )
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

    back = act_with("people", lambda session, _actor: activate(session, email))
    click.echo(f"{back.email} is active again.")
