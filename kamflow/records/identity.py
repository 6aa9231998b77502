"""Who is acting: the person linked to the login the database authenticated, not a name claimed.

On PostgreSQL the login is the session's role (``session_user``): the database's own
authentication (password, peer, certificate, LDAP ...) is the identity. On SQLite, which has no
logins, it is the operating-system user running the command. A login is linked to one person
(``person add --login``, ``person link``); the login that created the database acts as an admin
until it is linked, and the person it is first linked to becomes the first admin.

``--as EMAIL`` (or KAMFLOW_USER) names the person a change is made as: oneself, or, for an admin
only, someone else, on whose behalf the admin then acts (the history keeps both).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlmodel import Session, select

from kamflow.errors import NotAllowed
from kamflow.models import Person, Setting

#: The setting that names the login that created the database.
FOUNDER = "founder_login"
#: The longest login kamflow keeps (PostgreSQL's own limit is 63 bytes).
MAX_LOGIN = 128


class Actor(str):
    """The email of the person a change is made as, which the history's ``actor`` column keeps
    (or the bare login, for the login that created the database before it is linked), with the
    login that made the change and, on someone's behalf, who really acted."""

    login: str | None
    acted_by: str | None
    founder: bool

    def __new__(
        cls,
        name: str,
        *,
        login: str | None = None,
        acted_by: str | None = None,
        founder: bool = False,
    ) -> Actor:
        actor = super().__new__(cls, name)
        actor.login, actor.acted_by, actor.founder = login, acted_by, founder
        return actor


def login_name(session: Session) -> str:
    """The login the database authenticated: PostgreSQL's ``session_user``; on SQLite the
    operating-system user running this process (by its user id, not the environment)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return str(session.connection().execute(sa.text("SELECT session_user")).scalar())
    return os_login()


def os_login() -> str:
    """The operating-system user of this process, by user id (``$USER`` can say anything)."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):  # no pwd database (Windows, a bare container)
        import getpass

        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"


def founder_login(session: Session) -> str | None:
    """The login that created the database (None for one created before logins were kept)."""
    row = session.get(Setting, FOUNDER)
    return row.value if row is not None else None


def linked_person(session: Session, login: str) -> Person | None:
    """The person linked to ``login``, if any."""
    return session.exec(select(Person).where(Person.login == login)).first()


def resolve(session: Session, claimed: str | None) -> Actor:
    """Who acts in this transaction: the person linked to the authenticated login, or, with
    ``claimed`` (``--as``), that person on an admin's behalf. NotAllowed for a login linked to
    nobody (but the one that created the database), a deactivated person, and anyone but an
    admin naming someone else."""
    login = login_name(session)
    wanted = " ".join(claimed.split()).lower() if claimed else None
    me = linked_person(session, login)
    if me is None:
        if founder_login(session) != login:
            raise NotAllowed(
                f"your login {login} is not linked to a person, so it may not change anything "
                f"(an admin links it: kamflow person link EMAIL {login})"
            )
        if wanted is None:
            return Actor(login, login=login, founder=True)
        return Actor(wanted, login=login, acted_by=f"login {login}", founder=True)
    if not me.active:
        raise NotAllowed(f"{me.email} (login {login}) is deactivated and may not change anything")
    if wanted is None or wanted == me.email:
        return Actor(me.email, login=login)
    if not me.is_admin:
        raise NotAllowed(
            f"you are {me.email} (login {login}); only an admin may act as someone else "
            f"(--as {wanted})"
        )
    return Actor(wanted, login=login, acted_by=me.email)


def check_login(login: str) -> str:
    """A login as given to ``--login`` or ``person link``, checked: no blanks, not too long."""
    from kamflow.errors import InvalidInput

    cleaned = login.strip()
    if not cleaned or len(cleaned) > MAX_LOGIN or any(c.isspace() or ord(c) < 32 for c in cleaned):
        raise InvalidInput(f"{login!r} is not a login name")
    return cleaned


def viewer(session: Session, claimed: str | None) -> str:
    """Whom a command that only reads speaks of as "you" (``--mine``, what you may do): who
    would act, else the person named, else the login."""
    try:
        return resolve(session, claimed)
    except NotAllowed:
        return claimed or login_name(session)


def really(actor: str) -> str:
    """The person who really acts: ``actor`` itself, or, when an admin acts on someone's behalf,
    the admin (as an Actor of their own). Managing people is never done on someone's behalf."""
    acted_by = getattr(actor, "acted_by", None)
    if acted_by is None:
        return actor
    login = getattr(actor, "login", None)
    if getattr(actor, "founder", False):
        return Actor(login or acted_by, login=login, founder=True)
    return Actor(acted_by, login=login)
