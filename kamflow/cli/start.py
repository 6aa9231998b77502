"""Getting started: init (create or upgrade the database) and demo (a scripted walk-through)."""

from __future__ import annotations

import sys
from typing import Any

import click

from kamflow.cli.base import app, settings


@app.command()
def init() -> None:
    """Create the database, or upgrade it to this version's schema."""
    from kamflow.db import initialise

    url, before, after = initialise(settings().database_url)
    if before == after:
        click.echo(f"Database {url} is up to date (schema {after}).")
    elif before is None:
        click.echo(f"Created database {url} (schema {after}).")
    else:
        click.echo(f"Upgraded database {url} from schema {before} to {after}.")
    if url.startswith("postgresql"):
        from kamflow.grants import ADMINS, USERS

        click.echo(
            f"Granted its tables to the roles {USERS} and {ADMINS} "
            f"(add a login: GRANT {USERS} TO name; then kamflow person link EMAIL name)."
        )


@app.command()
def demo() -> None:
    """A scripted walk-through on a fresh database of its own (./kamflow-demo.db)."""
    from kamflow.demo import run

    styles: dict[str, dict[str, Any]] = {
        "title": {"bold": True},
        "command": {"fg": "cyan"},
        "note": {"fg": "yellow"},
        "text": {},
    }

    def invoke(args: list[str]) -> int:
        sys.stdout.flush()
        try:
            app.main(args=args, prog_name="kamflow", standalone_mode=False)
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return 0

    run(invoke, lambda text, style: click.secho(text, **styles[style]))
