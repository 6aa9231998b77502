"""Reminders, escalations and the mail they send: snooze, unsnooze, tick, daemon, status,
forecast, outbox list/show/retry."""

from __future__ import annotations

import click

from kamflow import defaults
from kamflow.cli.base import (
    act_on,
    act_with,
    app,
    emit_json,
    emit_json_rows,
    fail,
    json_option,
    now,
    read,
    settings,
    stream_table,
    table,
)


def _whole_number(text: str, what: str) -> int:
    from kamflow.errors import InvalidInput

    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a whole number") from None


@app.command()
@click.argument("name")
@click.option(
    "--days",
    required=True,
    metavar="N",
    help=f"How long to pause (at most {defaults.MAX_SNOOZE_DAYS} days).",
)
@click.option("--reason", required=True, help="Why the account may wait.")
def snooze(name: str, days: str, reason: str) -> None:
    """Pause the reminders and escalations of an account (the owner or a leader)."""
    from kamflow.records.snoozes import snooze as snooze_account

    account, paused = act_on(
        snooze_account, name, days=_whole_number(days, "--days"), reason=reason
    )
    click.echo(f"Reminders for {account} paused until {paused.until.date().isoformat()}.")


@app.command()
@click.argument("name")
def unsnooze(name: str) -> None:
    """End an account's snooze now (the owner or a leader): its reminders resume from where the
    ladder stands."""
    from kamflow.records.snoozes import unsnooze as unsnooze_account

    account, ended = act_on(unsnooze_account, name)
    click.echo(
        f"Reminders for {account} resume now (it was snoozed until "
        f"{ended.until.date().isoformat()})."
    )


@app.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be queued; change nothing.")
@json_option
def tick(dry_run: bool, as_json: bool) -> None:
    """Run every step once: queue reminders, escalations and digests, then deliver the outbox."""
    from kamflow.db import existing_engine
    from kamflow.steps import tick as run_tick

    config = settings()
    schedule, mail = config.schedule, config.mail  # a bad setting stops the tick here
    engine = existing_engine(config.database_url)
    if as_json:
        report = run_tick(engine, config.clock.now(), schedule, mail, dry_run=dry_run)
        emit_json(
            {
                "dry_run": dry_run,
                "queued": [item for step in report.steps for item in step.queued],
                "delivery": None if report.delivery is None else vars(report.delivery),
            }
        )
    else:
        # Each message is printed as it is queued, each step's counts when it is done: a tick
        # that queues tens of thousands keeps none of them in memory.
        verb = "would queue" if dry_run else "queued"
        report = run_tick(
            engine,
            config.clock.now(),
            schedule,
            mail,
            dry_run=dry_run,
            on_queued=lambda item: click.echo(f"  {verb}: {item['subject']}"),
            on_step=lambda step: click.echo(step.summary()),
        )
        if report.delivery is not None:
            click.echo(report.delivery.summary())
            if report.delivery.sent and mail.transport == "file":
                click.echo(f"  the messages are in {mail.outbox_dir}/")
    if report.delivery is not None and report.delivery.stopped:
        fail([f"delivery stopped: {report.delivery.stopped}"], 1)


@app.command()
def daemon() -> None:
    """Run in the foreground: notice stalls, remind, escalate, deliver mail, send digests.

    Stops cleanly on SIGTERM or Ctrl-C (a second signal stops at once).
    """
    import logging

    from kamflow.clock import running
    from kamflow.daemon import Daemon
    from kamflow.db import existing_engine

    config = settings()
    schedule, mail = config.schedule, config.mail  # a bad setting stops the daemon here
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from kamflow.cli.notices import WarnOnce

    WarnOnce.remove()  # a broken workflow file is logged at each step, with the time
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not config.debug:
        # A database outage is one line per failed step (the daemon logs it); the connection
        # pool's own tracebacks about the same broken connections would bury it.
        logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    Daemon(existing_engine(config.database_url), running(config.clock), schedule, mail).run()


@app.command()
@json_option
def status(as_json: bool) -> None:
    """The daemon's last tick, the outbox, and how many accounts are behind or stuck."""
    from kamflow.steps.views import status as daemon_status

    report = read(daemon_status, now(), settings().calendar)
    if as_json:
        emit_json(report)
        return
    from kamflow.reports.render import render_status

    click.echo(render_status(report))


@app.command()
@click.option(
    "--days",
    default=str(defaults.FORECAST_DAYS),
    show_default=True,
    metavar="N",
    help=f"How far ahead (1 to {defaults.MAX_FORECAST_DAYS} days).",
)
@json_option
def forecast(days: str, as_json: bool) -> None:
    """Which reminders and escalations would fire in the next N days if nothing changed.

    Each at the moment the daemon would send it (UTC), with the daemon's repeat number (0 for
    the first message of its kind).
    """
    from kamflow.steps.views import forecast as make_forecast

    with read(make_forecast, now(), _whole_number(days, "--days"), settings().schedule) as rows:
        if as_json:
            emit_json_rows(rows)
            return
        stream_table(
            [
                ("at (utc)", len("YYYY-MM-DD HH:MM")),
                ("kind", rows.longest("kind")),
                ("account", rows.longest("account")),
                ("repeat", rows.longest("repeat")),
                # Last, so that an action's title is printed whole.
                ("stage or action", max(rows.longest("stage"), rows.longest("action"))),
            ],
            (
                (
                    # The JSON's moment to the minute: 2027-01-18T09:00:00+00:00 -> 2027-01-18 09:00
                    f"{r['at'][:10]} {r['at'][11:16]}",
                    r["kind"],
                    r["account"],
                    r["repeat"],
                    r.get("action") or r["stage"],
                )
                for r in rows
            ),
        )


@app.group()
def outbox() -> None:
    """The queued, sent and dead messages."""


@outbox.command("list")
@click.option("--status", "only", help="pending, sent, dead or obsolete.")
@json_option
def outbox_list(only: str | None, as_json: bool) -> None:
    """List the newest messages (100 at most)."""
    from kamflow.outbox import list_messages

    rows = read(list_messages, status=only)
    if as_json:
        emit_json(rows)
        return
    table(
        [
            (r["id"], r["status"], r["kind"], r["to"], r["subject"], r["attempts"], r["last_error"])
            for r in rows
        ],
        ["id", "status", "kind", "to", "subject", "tries", "last error"],
        widest={"subject": 2 * defaults.TABLE_CELL_WIDTH},
    )


@outbox.command("show")
@click.argument("message_id", metavar="ID")
@json_option
def outbox_show(message_id: str, as_json: bool) -> None:
    """One message in full, with its text as it is (or will be) sent."""
    from kamflow.outbox import show_message

    message = read(show_message, message_id)
    if as_json:
        emit_json(message)
        return
    fields = [
        ("kind", message["kind"]),
        ("account", message["account"] or "-"),
        ("to", message["to"]),
        ("cc", message["cc"] or "-"),
        ("status", message["status"]),
        ("attempts", message["attempts"]),
        ("queued", message["created_at"]),
        ("next attempt", message["next_attempt_at"]),
        ("sent", message["sent_at"] or "-"),
        ("delivered by", ", ".join(message["delivered"]) or "-"),
        ("last error", message["last_error"] or "-"),
        ("subject", message["subject"]),
    ]
    click.echo(f"Message {message['id']}")
    for label, value in fields:
        click.echo(f"  {label + ':':<14}{value}")
    click.echo()
    if message["body"] is None:
        click.echo(f"(the text cannot be rendered: {message['body_error']})")
    else:
        click.echo(message["body"].rstrip("\n"))


@outbox.command("retry")
@click.argument("message_id", metavar="ID")
def outbox_retry(message_id: str) -> None:
    """Queue a dead message again."""
    from kamflow.outbox import retry

    row = act_with("outbox", lambda session, _actor: retry(session, message_id, now=now()))
    click.echo(f"Message {row.id} is queued again: {row.subject}")
