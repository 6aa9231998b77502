"""`kamflow demo`: a scripted walk-through, typed as a user would, on a database of its own.

The story plays over the last six months (each step sets KAMFLOW_NOW), so that the demo database
makes sense when explored afterwards with the real clock.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kamflow import defaults
from kamflow.files import private_file

OWNER = "kam@example.com"
LEADER = "cso@example.com"
ENGINEER = "engineer@example.com"
DELIVERY = "delivery@example.com"
ACCOUNT = "Acme Corp"

IMPORT_FILE = "kamflow-demo-accounts.csv"
REPORT_FILE = "kamflow-report.html"
PLAN_FILE = "kamflow-demo-plan.html"
CALENDAR_FILE = "kamflow-demo.ics"
#: Two more key accounts, as a spreadsheet would export them (with a byte-order mark).
IMPORT_CSV = (
    "\ufeffname,owner,kind,revenue,growth,renewal,win_now,effort,relationship,fit,logo\r\n"
    f"Blue Harbor Foods,{OWNER},existing,4,3,5,2,3,4,4,2\r\n"
    f"Larkspur Energy,{OWNER},new,2,4,3,3,4,2,3,3\r\n"
)

Step = tuple[int, str, list[str]]  # (day of the story, who acts, the command's arguments)


def _script() -> list[Step | str]:
    """The walk-through: strings are narration, tuples are commands."""
    a = ACCOUNT
    research_answers = [
        ("our-team.exec-sponsor", "Our chief sales officer meets their board twice a year."),
        ("their-team.decision-maker", "Their chief operating officer signs anything above 250k."),
        (
            "trends.industry-shifts",
            "Regulation pushes them to digitise their supply chain by 2028.",
        ),
        (
            "needs.top-business-needs",
            "Cut order-to-delivery time and report emissions per shipment.",
        ),
        ("insights.share-of-wallet", "We hold about 15% of their logistics software spend."),
        (
            "competitors.main-competitor",
            "A large suite vendor, strong at headquarters, weak in plants.",
        ),
        ("value.value-we-deliver", "Two days less lead time in the plants we already serve."),
        (
            "unknowns.critical-gaps",
            "Their budget cycle for next year and who owns the emissions report.",
        ),
    ]
    remaining_required = [
        ("our-team.revenue-goal", "Grow from 1.2M to 1.8M a year at a 35% gross margin."),
        ("their-team.champion", "The head of plant operations, who ran our pilot."),
        (
            "value.expansion-opportunities",
            "The four plants in the east, then the emissions module.",
        ),
    ]
    steps: list[Step | str] = [
        "People and accounts are created. The login running the demo creates the database and, "
        "adding itself first, becomes its admin, who then acts for each person in turn (--as).",
        (0, OWNER, ["init"]),
        (0, OWNER, ["person", "add", OWNER, "--name", "Key account manager"]),
        (0, OWNER, ["person", "add", LEADER, "--name", "Chief sales officer", "--leader"]),
        (0, OWNER, ["person", "add", ENGINEER, "--name", "Solutions engineer"]),
        (0, OWNER, ["person", "add", DELIVERY, "--name", "Delivery manager"]),
        (0, OWNER, ["account", "add", a, "--owner", OWNER]),
        (0, OWNER, ["account", "add", "Northwind Traders", "--owner", OWNER, "--kind", "new"]),
        (0, OWNER, ["account", "list"]),
        "Strategy: advancing without one is refused, with the reason.",
        (0, OWNER, ["advance", a]),
        (
            1,
            OWNER,
            [
                "strategy",
                "set",
                a,
                "--objective",
                "Become their standard for plant logistics software",
                "--who",
                "COO office, plant operations, IT procurement",
                "--why",
                "Largest growth potential in our portfolio and a marquee name",
            ],
        ),
        (1, OWNER, ["advance", a, "--note", "Strategy agreed with the sales leadership"]),
        "Research: the account team and the planning questions.",
        (8, OWNER, ["advance", a]),
        (8, OWNER, ["role", "assign", a, "relationship-lead", OWNER]),
        (8, OWNER, ["role", "assign", a, "result-driver", OWNER]),
        (8, OWNER, ["role", "assign", a, "technical-expert", ENGINEER]),
        (8, OWNER, ["role", "assign", a, "innovator", ENGINEER]),
        (8, OWNER, ["role", "assign", a, "collaborator", DELIVERY]),
        (8, OWNER, ["why", a]),
        (9, OWNER, ["role", "assign", a, "project-manager", DELIVERY]),
        *[(12, OWNER, ["plan", "answer", a, qid, text]) for qid, text in research_answers],
        (
            12,
            OWNER,
            [
                "plan",
                "na",
                a,
                "competitors.do-it-themselves",
                "--reason",
                "They have no software team of their own",
            ],
        ),
        (14, OWNER, ["advance", a]),
        "Action plan: required answers, actions with owners and dates, KPIs.",
        (20, OWNER, ["advance", a, "--dry-run"]),
        *[(21, OWNER, ["plan", "answer", a, qid, text]) for qid, text in remaining_required],
        (
            21,
            OWNER,
            [
                "action",
                "add",
                a,
                "Run a lead-time workshop in the eastern plants",
                "--owner",
                ENGINEER,
                "--due",
                _date(45),
                "--resources",
                "Two engineers, 3 days",
            ],
        ),
        (
            21,
            OWNER,
            [
                "action",
                "add",
                a,
                "Propose the emissions reporting pilot to the COO",
                "--owner",
                OWNER,
                "--due",
                _date(60),
            ],
        ),
        (22, OWNER, ["kpi", "add", a, "Annual revenue", "--target", "1800000", "--unit", "EUR"]),
        (
            22,
            OWNER,
            [
                "kpi",
                "add",
                a,
                "Order lead time",
                "--target",
                "3",
                "--unit",
                "days",
                "--lower-is-better",
            ],
        ),
        (23, OWNER, ["advance", a]),
        "A disqualification needs the owner or a leader: the engineer is not allowed.",
        (24, ENGINEER, ["disqualify", "Northwind Traders", "--reason", "Too small for now"]),
        (
            24,
            LEADER,
            ["disqualify", "Northwind Traders", "--reason", "The first talks showed no budget"],
        ),
        "Execution: the work is done and the KPIs measured.",
        (50, ENGINEER, ["action", "done", a, "1"]),
        (58, OWNER, ["action", "done", a, "2"]),
        (110, OWNER, ["kpi", "record", a, "Annual revenue", "1450000"]),
        (110, OWNER, ["kpi", "record", a, "Order lead time", "3.5"]),
        (112, OWNER, ["advance", a]),
        "Review: the quarterly business review, then round again.",
        (115, OWNER, ["advance", a]),
        (
            116,
            OWNER,
            [
                "kpi",
                "review",
                a,
                "--conclusion",
                "Revenue on track, lead time not yet: extend the workshops to all plants",
            ],
        ),
        (116, OWNER, ["advance", a, "--note", "Adjusting the plan"]),
        (
            117,
            OWNER,
            [
                "action",
                "add",
                a,
                "Lead-time workshops in the remaining plants",
                "--owner",
                ENGINEER,
                "--due",
                _date(140),
            ],
        ),
        (117, OWNER, ["advance", a]),
        "Nobody may stall silently: the daemon's steps remind the owner, then escalate.",
        (140, OWNER, ["account", "add", "Initech Systems", "--owner", OWNER, "--kind", "new"]),
        (150, OWNER, ["forecast", "--days", "14"]),
        (155, OWNER, ["tick"]),
        (156, OWNER, ["tick"]),
        (162, OWNER, ["tick"]),
        (162, OWNER, ["status"]),
        (
            163,
            OWNER,
            [
                "snooze",
                "Initech Systems",
                "--days",
                "14",
                "--reason",
                "Their buying centre reorganises until next month",
            ],
        ),
        (163, OWNER, ["outbox", "list"]),
        "Back to Acme Corp: the second round ends in a re-plan.",
        (175, OWNER, ["kpi", "record", a, "Annual revenue", "1820000"]),
        (175, OWNER, ["kpi", "record", a, "Order lead time", "2.8"]),
        (176, OWNER, ["advance", a]),
        (
            178,
            OWNER,
            [
                "kpi",
                "review",
                a,
                "--conclusion",
                "Targets met; a new strategy for the group-wide rollout is due",
            ],
        ),
        (178, OWNER, ["advance", a, "--to", "strategy", "--note", "Yearly re-plan"]),
        "Choosing key accounts: candidates are scored, promoted within the cap, or swapped in.",
        (179, OWNER, ["account", "add", "Meridian Health Group", "--owner", OWNER, "--candidate"]),
        (179, OWNER, ["account", "promote", "Meridian Health Group"]),
        (
            179,
            OWNER,
            ["account", "score", "Meridian Health Group", *_factors(5, 4, 4, 3, 2, 4, 5, 3)],
        ),
        (179, OWNER, ["account", "promote", "Meridian Health Group"]),
        (179, OWNER, ["account", "import", IMPORT_FILE]),
        (180, OWNER, ["account", "add", "Quarry Lane Logistics", "--owner", OWNER, "--candidate"]),
        (
            180,
            OWNER,
            ["account", "score", "Quarry Lane Logistics", *_factors(5, 5, 4, 4, 2, 3, 4, 4)],
        ),
        (180, OWNER, ["account", "promote", "Quarry Lane Logistics"]),
        (180, OWNER, ["account", "rank"]),
        (180, OWNER, ["account", "swap", "Larkspur Energy", "Quarry Lane Logistics"]),
        (180, OWNER, ["account", "set-workflow", "Blue Harbor Foods", "kam-lite"]),
        (180, OWNER, ["portfolio"]),
        (180, OWNER, ["coverage"]),
        (180, OWNER, ["kpis"]),
        "Where things stand, and what happened.",
        (180, OWNER, ["account", "show", a]),
        (180, OWNER, ["history", a]),
        (180, OWNER, ["report", "--html", REPORT_FILE]),
        "The account plan as a document, and the deadlines for a calendar.",
        (180, OWNER, ["plan", "export", a, "--output", PLAN_FILE]),
        (180, OWNER, ["calendar", "--owner", OWNER, "--output", CALENDAR_FILE]),
    ]
    return steps


_START = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=180)


def _factors(*values: int) -> list[str]:
    """The score options for revenue, growth, renewal, win-now, effort, relationship, fit, logo."""
    names = ("revenue", "growth", "renewal", "win-now", "effort", "relationship", "fit", "logo")
    return [
        part
        for name, value in zip(names, values, strict=True)
        for part in (f"--{name}", str(value))
    ]


def _date(day: int) -> str:
    return (_START + timedelta(days=day)).date().isoformat()


Invoke = Callable[[list[str]], int]
Say = Callable[[str, str], None]


def run(invoke: Invoke, say: Say) -> None:
    """Play the script against a fresh ./kamflow-demo.db; the user's own database is untouched.

    ``invoke`` runs one kamflow command line and returns its exit code; ``say`` prints a line in
    a style: "title", "command", "note" or "text" (the CLI decides how those look).
    """
    database = Path(defaults.DEMO_DATABASE_FILE)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{database}"
    with private_file(Path(IMPORT_FILE), newline="") as out:  # it names people
        out.write(IMPORT_CSV)
    saved = {name: os.environ.get(name) for name in (defaults.ENV_NOW, defaults.ENV_MAIL_TRANSPORT)}
    # The demo's mail goes to files in ./outbox/, never to a real server.
    os.environ[defaults.ENV_MAIL_TRANSPORT] = "file"
    try:
        for step in _script():
            if isinstance(step, str):
                say(f"\n== {step}", "title")
                continue
            day, actor, args = step
            at = _START + timedelta(days=day)
            os.environ[defaults.ENV_NOW] = at.isoformat()
            say(f"\n[{at.date().isoformat()}] $ kamflow --as {actor} {shlex.join(args)}", "command")
            code = invoke(["--db", url, "--as", actor, *args])
            if code:
                say(f"(exit code {code})", "note")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    outbox = os.environ.get(defaults.ENV_OUTBOX_DIR) or defaults.OUTBOX_DIR
    say(
        f"\nThe reminders, escalation and digests the daemon's steps sent are in ./{outbox}/ "
        "(one .eml file each; open them in a mail client or a text editor).",
        "text",
    )
    say(
        f"The portfolio report is ./{REPORT_FILE}: open it in a browser "
        f"(the accounts imported came from ./{IMPORT_FILE}).",
        "text",
    )
    say(
        f"The account plan of {ACCOUNT} is ./{PLAN_FILE} (print it from the browser); the "
        f"deadlines of {OWNER}'s accounts and actions are ./{CALENDAR_FILE}, for a calendar.",
        "text",
    )
    say(
        f"The demo's database is ./{database}. Explore it, for example:\n"
        f"  kamflow --db {url} account list\n"
        f'  kamflow --db {url} why "{ACCOUNT}"\n'
        f"  kamflow --db {url} workflow show kam",
        "text",
    )
