"""Settings from the command line and the environment, validated once at start-up.

One ``Settings`` object per run, built by the CLI's root group: the database, the actor, the
clock, the time zone and the workflow folders are checked at once; the daemon's schedule and the
mail settings are parsed from the same captured environment on first use, so that a bad mail or
schedule setting stops only the commands that send mail or schedule steps.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kamflow import defaults
from kamflow.clock import Clock, clock_from
from kamflow.definitions.businessdays import WorkCalendar, region
from kamflow.errors import ConfigError
from kamflow.text import folder_list, quoted

if TYPE_CHECKING:
    from kamflow.notify.transports import Transport


@dataclass(frozen=True)
class Settings:
    """Who is named as acting, on which database, at what time; where workflows are found; and,
    parsed on first use, when the daemon runs its steps (``schedule``) and how mail leaves
    (``mail``)."""

    database_url: str
    #: The person named by --as (or KAMFLOW_USER), if any: who acts is the person linked to the
    #: authenticated login (kamflow.records.identity), and only an admin may name someone else.
    actor: str | None
    clock: Clock
    timezone: ZoneInfo
    #: The KAMFLOW_WORKFLOWS folders, searched before the shipped workflows.
    workflow_folders: tuple[Path, ...] = ()
    #: KAMFLOW_DEBUG: show the traceback of an internal error.
    debug: bool = False
    #: The KAMFLOW_* variables as they were at start-up, for the parts parsed on first use.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        *,
        database: str | None = None,
        actor: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """--db, else $KAMFLOW_DB, else ./kamflow.db; --as, else $KAMFLOW_USER."""
        env = {
            name: value
            for name, value in (os.environ if environ is None else environ).items()
            if name.startswith(defaults.ENV_PREFIX)
        }
        url = database or env.get(defaults.ENV_DATABASE) or defaults.DATABASE_URL
        who = actor or env.get(defaults.ENV_USER)
        clock = clock_from(env.get(defaults.ENV_NOW), source=defaults.ENV_NOW)
        actor = " ".join(who.split()).lower() if who else None
        if actor is not None and len(actor) > 320:
            raise ConfigError(f"--as (or {defaults.ENV_USER}) is too long to be an email address")
        return cls(
            database_url=url,
            actor=actor,
            clock=clock,
            timezone=time_zone(env),
            workflow_folders=folder_list(env.get(defaults.ENV_WORKFLOWS)),
            debug=bool(env.get(defaults.ENV_DEBUG)),
            environ=env,
        )

    @functools.cached_property
    def schedule(self) -> Schedule:
        """When the daemon runs each step (a bad value is a ConfigError here, not at start-up)."""
        return Schedule.load(self.environ)

    @functools.cached_property
    def calendar(self) -> WorkCalendar:
        """The time zone and the public holidays (KAMFLOW_HOLIDAYS) that business days skip (an
        unknown country is a ConfigError here, for the commands that count days)."""
        return work_calendar(self.environ)

    @functools.cached_property
    def mail(self) -> MailSettings:
        """How messages leave (a bad value is a ConfigError here, not at start-up)."""
        return MailSettings.load(self.environ)


def time_zone(env: Mapping[str, str]) -> ZoneInfo:
    """The zone named by KAMFLOW_TIMEZONE (UTC by default), where "today" and the digest times
    are reckoned."""
    zone_name = _env(defaults.ENV_TIMEZONE, env) or defaults.TIMEZONE
    try:
        return ZoneInfo(zone_name)
    # OSError: with the tzdata package installed (icalendar needs it), a name too long for a
    # file name fails as the file it is looked up as.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"{defaults.ENV_TIMEZONE}={quoted(zone_name)} is not a time zone (e.g. Europe/Berlin)"
        ) from None


def work_calendar(env: Mapping[str, str]) -> WorkCalendar:
    """The calendar business days are counted in: KAMFLOW_TIMEZONE's, without the public
    holidays of KAMFLOW_HOLIDAYS (``DE``, ``DE-BY``, ``US-CA``; weekends only when unset).
    Raises ConfigError naming an unknown zone, country or subdivision."""
    zone = time_zone(env)
    holidays = _env(defaults.ENV_HOLIDAYS, env)
    return WorkCalendar(zone, *region(holidays)) if holidays else WorkCalendar(zone)


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    return value.strip() if value and value.strip() else None


def parse_seconds(text: str, *, source: str) -> int:
    """``90``, ``90s``, ``5m``, ``2h`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    cleaned = text.strip().lower()
    factor = units.get(cleaned[-1:])
    number = cleaned[:-1] if factor else cleaned
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise ConfigError(
            f"{source}={quoted(text)} is not a duration (e.g. 300, 90s, 5m, 1h)"
        ) from None
    if value <= 0:
        raise ConfigError(f"{source}={quoted(text)} must be more than zero")
    return max(1, round(value))


def parse_clock_time(
    text: str, *, source: str, with_day: bool = False
) -> tuple[str | None, int, int]:
    """``08:00`` (or ``mon 08:00`` with a day) -> (day, hour, minute)."""
    parts = text.strip().lower().split()
    day = None
    if with_day:
        if len(parts) != 2 or parts[0] not in DAYS:
            raise ConfigError(f"{source}={quoted(text)} must look like 'mon 08:00'")
        day, parts = parts[0], parts[1:]
    try:
        hour_text, minute_text = parts[0].split(":")
        hour, minute = int(hour_text), int(minute_text)
        if not (0 <= hour < 24 and 0 <= minute < 60) or len(parts) != 1:
            raise ValueError
    except (ValueError, IndexError):
        example = "'mon 08:00'" if with_day else "'08:00'"
        raise ConfigError(f"{source}={quoted(text)} must look like {example}") from None
    return day, hour, minute


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: The mail transports of KAMFLOW_MAIL_TRANSPORT; ``none`` sends no mail (chat only).
TRANSPORTS = ("smtp", "file", "console", "none")


@dataclass(frozen=True)
class MailSettings:
    """How messages leave: the mail transport and its settings, the sender, and the chat webhook
    (whose URL never shows in the repr)."""

    transport: str
    sender: str
    outbox_dir: Path
    smtp_url: str | None
    smtp_password: str | None = field(repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    webhook_format: str = defaults.WEBHOOK_FORMAT

    @classmethod
    def load(cls, env: Mapping[str, str]) -> MailSettings:
        """The mail settings from ``env`` (the environment the settings captured, or a mapping
        in tests), all checked now: the transport (KAMFLOW_MAIL_TRANSPORT; smtp when
        KAMFLOW_SMTP_URL is set, else file), the sender (KAMFLOW_MAIL_FROM), the outbox folder
        (KAMFLOW_OUTBOX_DIR), the SMTP URL and password, and the chat webhook
        (KAMFLOW_WEBHOOK_URL, KAMFLOW_WEBHOOK_FORMAT). Raises ConfigError for a value that
        cannot be used."""
        smtp_url = _env(defaults.ENV_SMTP_URL, env)
        transport = (
            _env(defaults.ENV_MAIL_TRANSPORT, env) or ("smtp" if smtp_url else "file")
        ).lower()
        if transport not in TRANSPORTS:
            raise ConfigError(
                f"{defaults.ENV_MAIL_TRANSPORT}={quoted(transport)} "
                f"must be one of {', '.join(TRANSPORTS)}"
            )
        if transport == "smtp" and not smtp_url:
            raise ConfigError(f"{defaults.ENV_MAIL_TRANSPORT}=smtp needs {defaults.ENV_SMTP_URL}")
        webhook_url = _env(defaults.ENV_WEBHOOK_URL, env)
        if transport == "none" and not webhook_url:
            raise ConfigError(
                f"{defaults.ENV_MAIL_TRANSPORT}=none needs {defaults.ENV_WEBHOOK_URL}: "
                "otherwise no message would ever leave"
            )
        sender = _env(defaults.ENV_MAIL_FROM, env) or defaults.MAIL_FROM
        if any(ch in sender for ch in "\r\n"):
            raise ConfigError(f"{defaults.ENV_MAIL_FROM}={quoted(sender)} is not an email address")
        from kamflow.notify.message import sender_address

        if not sender_address(sender).domain:
            raise ConfigError(f"{defaults.ENV_MAIL_FROM}={quoted(sender)} is not an email address")
        webhook_format = (_env(defaults.ENV_WEBHOOK_FORMAT, env) or defaults.WEBHOOK_FORMAT).lower()
        settings = cls(
            transport=transport,
            sender=sender,
            outbox_dir=Path(_env(defaults.ENV_OUTBOX_DIR, env) or defaults.OUTBOX_DIR),
            smtp_url=smtp_url,
            smtp_password=env.get(defaults.ENV_SMTP_PASSWORD),
            webhook_url=webhook_url,
            webhook_format=webhook_format,
        )
        settings.make_transports()  # validates the SMTP and webhook URLs now, not when sending
        return settings

    def make_transport(self) -> Transport:
        """A new mail transport for these settings: SMTP, ``.eml`` files in the outbox folder,
        or the console (with ``none``, the chat webhook)."""
        from kamflow.notify.transports import (
            ConsoleTransport,
            FileTransport,
            SmtpSettings,
            SmtpTransport,
        )

        if self.transport == "smtp":
            assert self.smtp_url is not None
            return SmtpTransport(SmtpSettings.parse(self.smtp_url, self.smtp_password))
        if self.transport == "console":
            return ConsoleTransport()
        if self.transport == "none":
            return self.make_transports()[0]
        return FileTransport(self.outbox_dir)

    def make_transports(self) -> list[Transport]:
        """New transports for every channel that is on: the mail transport unless it is
        ``none``, then the chat webhook when KAMFLOW_WEBHOOK_URL is set."""
        from kamflow.notify.webhook import WebhookSettings, WebhookTransport

        found: list[Transport] = []
        if self.transport != "none":
            found.append(self.make_transport())
        if self.webhook_url:
            found.append(
                WebhookTransport(WebhookSettings.parse(self.webhook_url, self.webhook_format))
            )
        return found

    def describe(self) -> str:
        """Where messages go, in words for the log: ``SMTP <url>``, ``files in <folder>/`` or
        ``the console``, and ``a Slack webhook at <host>`` (never the webhook's path)."""
        parts = []
        if self.transport == "smtp":
            assert self.smtp_url is not None
            parts.append(f"SMTP {self.smtp_url}")
        elif self.transport == "file":
            parts.append(f"files in {self.outbox_dir}/")
        elif self.transport == "console":
            parts.append("the console")
        if self.webhook_url:
            from kamflow.notify.webhook import WebhookSettings

            parts.append(WebhookSettings.parse(self.webhook_url, self.webhook_format).describe())
        return " and ".join(parts)


@dataclass(frozen=True)
class Schedule:
    """When the daemon runs each step."""

    timezone: ZoneInfo
    #: Business days: the time zone and the public holidays (KAMFLOW_HOLIDAYS) they skip.
    calendar: WorkCalendar
    #: Seconds between runs of the queuing steps (stalls, actions, digests), and of delivery.
    stall_seconds: int
    delivery_seconds: int
    #: How long a delivery run holds the messages it claimed (it stops sending well before).
    lease_seconds: int
    #: Days between the reminders of an open action past its due date.
    action_every_days: int
    #: When digests fall due, in ``timezone``: the owners' every day at (hour, minute), the
    #: leaders' every week at (day, hour, minute), the day being ``mon`` to ``sun``.
    owner_digest: tuple[int, int]
    leader_digest: tuple[str, int, int]

    @classmethod
    def load(cls, env: Mapping[str, str]) -> Schedule:
        """The daemon's schedule from ``env`` (the environment the settings captured, or a
        mapping in tests): the time zone, the intervals of the queuing steps and of delivery, the
        delivery lease, the days between reminders of an overdue action, the digests' times, and
        the public holidays that business days skip.
        Raises ConfigError for a value that cannot be used."""
        zone = time_zone(env)
        every = _env(defaults.ENV_ACTION_REMIND_EVERY_DAYS, env)
        try:
            action_days = int(every) if every else defaults.ACTION_REMIND_EVERY_DAYS
            if action_days < 1:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"{defaults.ENV_ACTION_REMIND_EVERY_DAYS}={quoted(every or '')} "
                "must be a whole number of days"
            ) from None
        _, owner_hour, owner_minute = parse_clock_time(
            _env(defaults.ENV_OWNER_DIGEST_AT, env) or defaults.OWNER_DIGEST_AT,
            source=defaults.ENV_OWNER_DIGEST_AT,
        )
        day, leader_hour, leader_minute = parse_clock_time(
            _env(defaults.ENV_LEADER_DIGEST_AT, env) or defaults.LEADER_DIGEST_AT,
            source=defaults.ENV_LEADER_DIGEST_AT,
            with_day=True,
        )
        return cls(
            timezone=zone,
            calendar=work_calendar(env),
            stall_seconds=parse_seconds(
                _env(defaults.ENV_STALL_INTERVAL, env) or str(defaults.STALL_INTERVAL_SECONDS),
                source=defaults.ENV_STALL_INTERVAL,
            ),
            delivery_seconds=parse_seconds(
                _env(defaults.ENV_DELIVERY_INTERVAL, env)
                or str(defaults.DELIVERY_INTERVAL_SECONDS),
                source=defaults.ENV_DELIVERY_INTERVAL,
            ),
            lease_seconds=parse_seconds(
                _env(defaults.ENV_DELIVERY_LEASE, env) or str(defaults.LEASE_SECONDS),
                source=defaults.ENV_DELIVERY_LEASE,
            ),
            action_every_days=action_days,
            owner_digest=(owner_hour, owner_minute),
            leader_digest=(day or "mon", leader_hour, leader_minute),
        )
